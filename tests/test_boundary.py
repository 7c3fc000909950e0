"""The learned decision boundary located on the model itself, and the distance to it, on maps whose boundary is
known in closed form: a linear classifier's straight line, a radial one's circle, three classes meeting."""

import numpy as np
import torch

from geomvol.geometry.boundary import (
    boundary_distance, boundary_segments, crossing_classes, crossing_points, edge_crossings,
)


def field(logits, a, b):
    """Leading classes (B, A) of ``logits`` ((N, 2) field coordinates -> (N, C)) on the grid a x b."""
    bb, aa = np.meshgrid(b, a, indexing="ij")
    points = torch.tensor(np.stack([aa.ravel(), bb.ravel()], axis=1))
    return logits(points).argmax(dim=1).numpy().reshape(len(b), len(a)), np.stack([aa, bb], axis=-1)


def test_a_linear_classifiers_boundary_is_its_line_and_the_distance_is_exact():
    """z = (0, w.x + c): every crossing found lies on the line w.x + c = 0 (to 1e-9), and the signed distance of
    every point whose foot on the line is inside the grid is (w.x + c) / |w|, positive on class 1's side."""
    w, c = np.array([1.0, 2.0]), 0.3
    logits = lambda x: torch.stack([torch.zeros(len(x), dtype=x.dtype), x @ torch.tensor(w) + c], dim=1)  # noqa: E731
    a = b = np.linspace(-1, 1, 21)
    classes, points = field(logits, a, b)
    crossings = edge_crossings(classes, logits, a, b)
    found = crossing_points(crossings, a, b)
    assert len(found) == int((classes[:, 1:] != classes[:, :-1]).sum() + (classes[1:] != classes[:-1]).sum())
    assert np.abs(found @ w + c).max() < 1e-9
    distance = boundary_distance(points, boundary_segments(crossings, a, b), np.eye(2), classes)
    exact = (points @ w + c) / np.linalg.norm(w)
    foot = points - exact[..., None] * w / np.linalg.norm(w)
    inside = (np.abs(foot) < 0.9).all(axis=-1)
    assert inside.sum() > 300 and np.abs(distance - exact)[inside].max() < 1e-9


def test_a_radial_classifiers_boundary_is_its_circle_in_input_space_units():
    """z = (R^2 - |x|^2, 0): the crossings lie on the circle |x| = R (to 1e-9); the distance is | |x| - R | but
    for the sagitta of the chords joining them, at most L^2 / (8 R) with L a grid cell's diagonal; and on a plane
    whose axes are not orthonormal (e_a = (1, 0), e_b = (0.6, 0.8) scaled by 2) it is measured in the input
    space."""
    radius = 0.6

    def logits(x):
        return torch.stack([radius ** 2 - (x ** 2).sum(dim=1), torch.zeros(len(x), dtype=x.dtype)], dim=1)

    a = b = np.linspace(-1, 1, 41)
    classes, points = field(logits, a, b)
    crossings = edge_crossings(classes, logits, a, b)
    assert np.abs(np.linalg.norm(crossing_points(crossings, a, b), axis=1) - radius).max() < 1e-9
    distance = boundary_distance(points, boundary_segments(crossings, a, b), np.eye(2), classes)
    exact = np.linalg.norm(points, axis=-1) - radius  # positive outside, where class 1 leads
    step = a[1] - a[0]
    assert np.abs(distance - exact).max() < 2 * step ** 2 / (8 * radius)

    axes = 2.0 * np.array([[1.0, 0.0], [0.6, 0.8]])  # input-space vectors of the field's a and b axes (rows)

    def skewed(x):  # the same circle in input space, seen through the skewed field coordinates
        return logits(x @ torch.tensor(axes))

    classes, points = field(skewed, a, b)
    crossings = edge_crossings(classes, skewed, a, b)
    distance = boundary_distance(points, boundary_segments(crossings, a, b), axes @ axes.T, classes)
    exact = np.linalg.norm(points @ axes, axis=-1) - radius
    diagonal = max(np.linalg.norm(step * (axes[0] + axes[1])), np.linalg.norm(step * (axes[0] - axes[1])))
    assert np.abs(distance - exact).max() < diagonal ** 2 / (8 * radius)


def test_three_classes_meet_and_each_crossing_is_on_a_boundary_of_the_two_leading():
    """z = (x1, x2, -x1 - x2): three half-planes meet at the origin; every crossing kept has its two end classes
    equal and leading there; an edge whose root a third class leads is left out; distances are unsigned."""
    def logits(x):
        return torch.stack([x[:, 0], x[:, 1], -x[:, 0] - x[:, 1]], dim=1)

    a = b = np.linspace(-1, 1, 16)
    classes, points = field(logits, a, b)
    crossings = edge_crossings(classes, logits, a, b)
    found = torch.tensor(crossing_points(crossings, a, b))
    z = logits(found)
    top = z.topk(2, dim=1).values
    assert len(found) > 20 and (top[:, 0] - top[:, 1]).abs().max() < 1e-9
    # each crossing's pair of classes: the two that lead there, the smaller first; -1 on edges without one
    pairs = crossing_classes(crossings, classes)
    crossed = np.isfinite(crossings)
    assert ((pairs >= 0).all(axis=-1) == crossed).all() and (pairs[crossed][:, 0] < pairs[crossed][:, 1]).all()
    np.testing.assert_array_equal(np.sort(z.topk(2, dim=1).indices.numpy(), axis=1),
                                  np.concatenate([pairs[0][crossed[0]], pairs[1][crossed[1]]]))
    assert {tuple(pair) for pair in pairs[crossed]} == {(0, 1), (0, 2), (1, 2)}
    distance = boundary_distance(points, boundary_segments(crossings, a, b), np.eye(2))
    assert (distance >= 0).all()
    # the boundary x1 = x2 (for x1 > 0): the distance of (0.8, 0.2) to it
    i, j = np.argmin(np.abs(b - 0.2)), np.argmin(np.abs(a - 0.8))
    assert abs(distance[i, j] - abs(a[j] - b[i]) / np.sqrt(2)) < 1e-9


def test_probes_store_the_boundary_of_a_linear_classifier_in_input_space_units():
    """The notebook API (the pipeline's measuring code): on the grid, a linear classifier's boundary_distance is
    (w.x + c) / |w|; on a plane through three images (whose u and v axes are not orthonormal), |w.x + c| / |P w|
    with P the projection onto the plane, the distance within the plane in the input space; on a line, |t - t*|
    |p2 - p1| for its one crossing t*."""
    import geomvol

    class Linear(torch.nn.Module):
        def __init__(self, w, c):
            super().__init__()
            self.w, self.c = torch.nn.Parameter(w), c
            self.hidden = torch.nn.Identity()

        def forward(self, x):
            score = self.hidden(x.flatten(1)) @ self.w + self.c
            return torch.stack([torch.zeros_like(score), score], dim=1)

    w, c = torch.tensor([1.0, -2.0], dtype=torch.float64), 0.25
    grid = geomvol.probe_grid(Linear(w, c), ["hidden"], resolution=15, low=-1.0, high=1.0)
    x = np.stack(np.meshgrid(grid["x1"].values, grid["x2"].values), axis=-1)
    exact = (x @ w.numpy() + c) / w.norm().item()
    foot = x - exact[..., None] * (w / w.norm()).numpy()
    inside = (np.abs(foot) < 0.85).all(axis=-1)  # the perpendicular's foot inside the grid, where the boundary is
    assert inside.sum() > 100 and np.abs(grid["boundary_distance"].values[0, 0] - exact)[inside].max() < 1e-9
    assert grid["boundary_distance"].attrs["long_name"] == "distance to the network's own decision boundary"

    torch.manual_seed(1)
    w = torch.randn(12, dtype=torch.float64)
    anchors = torch.randn(3, 3, 2, 2, dtype=torch.float64)
    c = -float((anchors.flatten(1) @ w).mean())  # the boundary passes near the anchors' centroid
    plane = geomvol.probe_plane(Linear(w, c), anchors, ["hidden"], resolution=21, extent=1.5)
    from geomvol.probe.planes import orthonormal_basis, plane_frame, plane_points

    frame = plane_frame(*anchors.flatten(1))
    points = plane_points(frame, torch.tensor(plane["u"].values), torch.tensor(plane["v"].values))
    basis = orthonormal_basis(frame.e_u, frame.e_v)
    score = (points @ w + c).numpy().reshape(21, 21)
    exact = score / float((basis.T @ w).norm())
    vectors = torch.stack([frame.e_u, frame.e_v])
    gram, gradient = (vectors @ vectors.T).numpy(), (vectors @ w).numpy()  # in (u, v): the score's gradient
    step = np.linalg.solve(gram, gradient) / (gradient @ np.linalg.solve(gram, gradient))
    uv = np.stack(np.meshgrid(plane["u"].values, plane["v"].values), axis=-1)
    inside = (np.abs(uv - score[..., None] * step) < 1.3).all(axis=-1)  # the foot on the boundary inside the plane
    measured = plane["plane_boundary_distance"].values[0, 0, 0]
    assert inside.sum() > 50 and np.abs(measured - exact)[inside].max() < 1e-8
    crossed = np.isfinite(plane["plane_boundary_crossing"].values[0, 0, 0])  # (edge, v, u): each between classes 0, 1
    pairs = plane["plane_boundary_class_pair"].values[0, 0, 0]
    assert crossed.sum() > 10 and (pairs[crossed] == [0, 1]).all() and (pairs[~crossed] == -1).all()

    line = geomvol.probe_line(Linear(w, c), anchors[:2], ["hidden"], points=11)
    p1, p2 = anchors[0].flatten(), anchors[1].flatten()
    t = line["t"].values
    score = ((p1 + torch.tensor(t)[:, None] * (p2 - p1)) @ w + c).numpy()
    if np.sign(score[0]) != np.sign(score[-1]):  # one crossing, where the score is zero
        root = -float(p1 @ w + c) / float((p2 - p1) @ w)
        expected = np.abs(t - root) * float((p2 - p1).norm()) * np.sign(score)
        assert np.abs(line["line_boundary_distance"].values[0, 0, 0] - expected).max() < 1e-9
    else:
        assert np.isnan(line["line_boundary_distance"].values).all()
