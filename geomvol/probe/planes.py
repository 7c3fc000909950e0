r"""Probe a checkpoint on planes through three images and lines through two.

The study's construction (points flattened to vectors of the model's input space):

.. math::
    c = (p_1 + p_2 + p_3) / 3, \quad e_u = p_2 - p_1, \quad e_v = 2\sqrt{3}\,((p_1 + p_2)/2 - c),
    \quad x(u, v) = c + u\, e_u + v\, e_v ,

so the anchors sit at :math:`(u, v) = (-1/2, 1/(2\sqrt3)), (1/2, 1/(2\sqrt3)), (0, -1/\sqrt3)`,
and a line is :math:`x(t) = p_1 + t\,(p_2 - p_1)`. The subspace metric uses an
orthonormal basis of the plane (or the unit direction of the line), so that
it measures area (length) in input space, independent of the anchors' spacing.
Anchor images come from the prepared training or test split, or both (each entry's ``split``).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import xarray as xr

from geomvol.config import canonical_json
from geomvol.data.prepare import load_dataset, model_inputs, split_tensors
from geomvol.data.anchors import resolve_anchors
from geomvol.settings import LineSettings, PlaneSettings, ProbeSettings
from geomvol.geometry.boundary import crossing_classes, line_boundary_distance
from geomvol.probe.core import (
    CLASS_PAIR_COORD, EIGENVALUE_COORD, ENTROPY_ATTRS, MARGIN_ATTRS, ProbedModel, attach_linear_probe, block_coords,
    boundary_attrs, boundary_crossings, checkpoint_coords, class_attrs, class_pair_attrs, curvature_attrs, curvatures,
    learned_boundary, load_probed_model, log10_volumes, margin_gradients, network_outputs, notebook_settings,
    predictive_entropy, probability_margin, probed_module, singular_values, stretch_attrs, stretch_fields, top_k_coord,
    volume_attrs, volumes_and_metrics,
)

SQRT3 = math.sqrt(3.0)
ANCHOR_UV = ((-0.5, 1 / (2 * SQRT3)), (0.5, 1 / (2 * SQRT3)), (0.0, -1 / SQRT3))


class PlaneFrame(NamedTuple):
    origin: torch.Tensor  # (d,) the anchors' centroid
    e_u: torch.Tensor  # (d,)
    e_v: torch.Tensor  # (d,)


def plane_frame(p1: torch.Tensor, p2: torch.Tensor, p3: torch.Tensor) -> PlaneFrame:
    """Origin and axes of the plane through three points (d,), as the study builds them."""
    centroid = (p1 + p2 + p3) / 3
    return PlaneFrame(centroid, p2 - p1, 2 * SQRT3 * ((p1 + p2) / 2 - centroid))


def plane_points(frame: PlaneFrame, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Points (V * U, d), row-major in (v, u): point [i * U + j] = origin + u[j] e_u + v[i] e_v."""
    vv, uu = torch.meshgrid(v, u, indexing="ij")
    return frame.origin + uu.reshape(-1, 1) * frame.e_u + vv.reshape(-1, 1) * frame.e_v


def line_points(p1: torch.Tensor, p2: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Points (T, d): p1 + t (p2 - p1)."""
    return p1 + t.reshape(-1, 1) * (p2 - p1)


def orthonormal_basis(*directions: torch.Tensor) -> torch.Tensor:
    """(d, m) orthonormal basis of the span of m directions (d,)."""
    return torch.linalg.qr(torch.stack(directions, dim=1)).Q


KINDS = {
    # kind: (config key, anchor dim, grid dims)
    "plane": ("planes", "anchor", ("v", "u")),
    "line": ("lines", "line_anchor", ("t",)),
}


def _axes(kind: str, settings: ProbeSettings, dtype) -> dict[str, torch.Tensor]:
    if kind == "plane":
        plane = settings.plane
        axis = torch.linspace(-plane.extent, plane.extent, plane.resolution, dtype=dtype)
        return {"v": axis, "u": axis}
    line = settings.line
    return {"t": line_parameters(line.low, line.high, line.points, line.endpoint, dtype)}


def line_parameters(low: float, high: float, points: int, endpoint: bool, dtype=torch.float64) -> torch.Tensor:
    """t of the points on a line: from low to high inclusive, or (``endpoint`` false, the study's)
    low + (high - low) i / N for i = 0..N-1, stopping one step short of high."""
    if endpoint:
        return torch.linspace(low, high, points, dtype=dtype)
    return low + (high - low) * torch.arange(points, dtype=dtype) / points


def _points_and_basis(kind: str, anchors: torch.Tensor, axes: dict) -> tuple[torch.Tensor, torch.Tensor]:
    if kind == "plane":
        frame = plane_frame(*anchors)
        return plane_points(frame, axes["u"], axes["v"]), orthonormal_basis(frame.e_u, frame.e_v)
    return line_points(anchors[0], anchors[1], axes["t"]), orthonormal_basis(anchors[1] - anchors[0])


def _probe_kind(probed: ProbedModel, data: dict, settings: ProbeSettings, kind: str) -> tuple[dict, dict]:
    """Data variables and coordinates of every plane (or line) of ``settings``, through anchor images drawn
    from the prepared data set: what :func:`measure_spans` measures, and where the anchors come from."""
    key, anchor_dim, grid_dims = KINDS[kind]
    choices = settings.anchors(kind)
    splits = {choice.split: split_tensors(data, choice.split) for choice in choices}  # split -> (x, y, index)
    anchors = resolve_anchors(choices, {split: y for split, (_, y, _) in splits.items()}, data["classes"],
                              f"probe.{key}")
    images, classes_of, sources = (
        torch.stack([splits[choice.split][part][indices] for choice, indices in zip(choices, anchors)])
        for part in range(3))  # (spans, anchors, ...) each
    inputs = torch.stack([model_inputs(span_images, data, probed.dtype) for span_images in images])
    for span, indices in enumerate(anchors):
        print(f"{kind} {span}: anchors {indices}", file=sys.stderr)
    variables, coords = measure_spans(probed, kind, inputs, classes_of, settings, data["classes"])
    spans = (kind, anchor_dim)
    variables.update({
        f"{kind}_anchor_index": (spans, torch.tensor(anchors).numpy(), {
            "long_name": f"index of the anchor image in its prepared split ({kind}_anchor_split)", "units": "1"}),
        f"{kind}_anchor_source_index": (spans, sources.numpy(), {
            "long_name": f"index of the anchor image in {data['index_source']}", "units": "1"}),
        f"{kind}_anchor_image": ((*spans, "channel", "height", "width"), images.numpy(), {
            "long_name": "anchor image pixels (before normalisation)", "units": "1",
            "valid_range": [0, int(data["pixel_max"])]}),
        f"{kind}_anchor_split": (kind, np.array([choice.split for choice in choices], dtype=object), {
            "long_name": f"prepared split the {kind}'s anchor images come from (train, test or all)"}),
        f"{kind}_anchor_choice": (kind, np.array([canonical_json(choice.as_entry()) for choice in choices], dtype=object), {
            "long_name": f"the probe.{key} entry that chose the anchors (split; indices, or classes, seed and "
                         f"sampler: per_class_permutation, rejection or randperm_after_split)"}),
    })
    return variables, coords


def measure_spans(probed: ProbedModel, kind: str, anchor_inputs: torch.Tensor, anchor_classes: torch.Tensor,
                  settings: ProbeSettings, classes: list[str] | None = None) -> tuple[dict, dict]:
    """Everything measured on planes (``kind`` plane, three anchors each) or lines (line, two) through
    ``anchor_inputs`` (spans, anchors, *input), as the model reads them: the volume element of every feature map
    (and the curvature on planes, the spectra at the anchors, as ``settings`` say), the predicted class,
    entropy, margin and the probability of each anchor's class (``anchor_classes`` (spans, anchors));
    ``classes`` names the classes. Data variables and coordinates, on (seed, epoch, ...) of length one."""
    key, anchor_dim, grid_dims = KINDS[kind]
    n_spans, n_anchors = anchor_inputs.shape[:2]
    input_shape = tuple(anchor_inputs.shape[2:])
    d = math.prod(input_shape)
    axes = _axes(kind, settings, probed.dtype)
    grid_shape = tuple(axes[dim].numel() for dim in grid_dims)
    names = settings.feature_maps
    k_max = max(min(probed.width(name), d) for name in names)

    volume = np.full((1, 1, len(names), n_spans, *grid_shape), np.nan)
    predicted = np.full((1, 1, n_spans, *grid_shape), -1, dtype=np.int16)
    entropy = np.full((1, 1, n_spans, *grid_shape), np.nan)
    margin = np.full((1, 1, n_spans, *grid_shape), np.nan)
    anchor_probability = np.full((1, 1, n_spans, n_anchors, *grid_shape), np.nan)
    spectra = np.full((1, 1, len(names), n_spans, n_anchors, k_max), np.nan)
    with_curvature = settings.curvature and kind == "plane"
    curvature = np.full((1, 1, len(names), n_spans, *grid_shape), np.nan)
    crossings = np.full((1, 1, n_spans, *((2,) if kind == "plane" else ()), *grid_shape), np.nan)
    eigenvalues = np.full((1, 1, len(names), n_spans, *grid_shape, 2), np.nan)  # planes only
    stretch = np.full((1, 1, len(names), n_spans, *grid_shape), np.nan)
    gradient = np.full((1, 1, n_spans, *grid_shape), np.nan)
    axes_in_frame = np.full((n_spans, 2, 2), np.nan)
    class_pairs = np.full((1, 1, n_spans, 2, *grid_shape, 2), -1, dtype=np.int16)  # planes only
    distance = np.full((1, 1, n_spans, *grid_shape), np.nan)
    n_classes = None
    for span in range(n_spans):
        span_inputs = anchor_inputs[span].to(device=probed.device, dtype=probed.dtype)
        points, basis = _points_and_basis(kind, span_inputs.reshape(n_anchors, d), axes)
        points = points.reshape(-1, *input_shape)
        print(f"{kind} {span}: {points.shape[0]} points", file=sys.stderr)
        probabilities = network_outputs(probed, points)
        if kind == "plane":
            volumes, metrics = volumes_and_metrics(probed, points, settings, basis)
            span_eigenvalues, span_stretch, span_gradient = stretch_fields(
                metrics, margin_gradients(probed, points, basis, probabilities.topk(2, dim=1).indices))
            eigenvalues[0, 0, :, span] = span_eigenvalues.reshape(len(names), *grid_shape, 2)
            stretch[0, 0, :, span] = span_stretch.reshape(len(names), *grid_shape)
            gradient[0, 0, span] = span_gradient.reshape(grid_shape)
            frame = plane_frame(*span_inputs.reshape(n_anchors, d))
            axes_in_frame[span] = (basis.T @ torch.stack([frame.e_u, frame.e_v], dim=1)).cpu().double().numpy()
        else:
            volumes = log10_volumes(probed, points, settings, basis)
        for b, values in enumerate(volumes.values()):
            volume[0, 0, b, span] = values.cpu().numpy().reshape(grid_shape)
        if with_curvature:
            for b, values in enumerate(curvatures(probed, points, settings, basis).values()):
                curvature[0, 0, b, span] = values.cpu().numpy().reshape(grid_shape)
        n_classes = probabilities.shape[1]
        predicted[0, 0, span] = probabilities.argmax(dim=1).cpu().numpy().reshape(grid_shape)
        entropy[0, 0, span] = predictive_entropy(probabilities).cpu().numpy().reshape(grid_shape)
        margin[0, 0, span] = probability_margin(probabilities).cpu().numpy().reshape(grid_shape)
        crossings[0, 0, span], distance[0, 0, span] = _span_boundary(
            probed, kind, span_inputs.reshape(n_anchors, d), input_shape, axes, predicted[0, 0, span], n_classes)
        if kind == "plane":
            class_pairs[0, 0, span] = crossing_classes(crossings[0, 0, span], predicted[0, 0, span])
        span_classes = anchor_classes[span].to(probed.device)
        anchor_probability[0, 0, span] = probabilities[:, span_classes].T.cpu().numpy().reshape(n_anchors, *grid_shape)
        if settings.spectra:
            for b, values in enumerate(singular_values(probed, span_inputs, settings).values()):
                spectra[0, 0, b, span, :, : values.shape[1]] = values.cpu().numpy()

    m = 2 if kind == "plane" else 1
    spans = (kind, anchor_dim)
    variables = {
        f"{kind}_log10_volume": (("seed", "epoch", "block", kind, *grid_dims), volume,
                                 volume_attrs(settings, d, f"the probed {kind}", f"{kind}_top_k")),
        f"{kind}_predicted_class": (("seed", "epoch", kind, *grid_dims), predicted, class_attrs(n_classes, classes)),
        f"{kind}_entropy": (("seed", "epoch", kind, *grid_dims), entropy, ENTROPY_ATTRS),
        f"{kind}_probability_margin": (("seed", "epoch", kind, *grid_dims), margin, MARGIN_ATTRS),
        f"{kind}_anchor_probability": (("seed", "epoch", kind, anchor_dim, *grid_dims), anchor_probability, {
            "long_name": "probability the network gives to each anchor image's class", "units": "1"}),
        f"{kind}_anchor_class": (spans, anchor_classes.cpu().numpy().astype(np.int16), {
            **class_attrs(n_classes, classes), "long_name": "class label of the anchor image"}),
    }
    crossing_attrs, distance_attrs = boundary_attrs(f"the probed {kind}", ("u", "v") if kind == "plane" else ("t", ""))
    if kind == "line":
        crossing_attrs["description"] = ("on the probed line: the root s of z_c - z_c' on the step from t_j to "
                                         "t_j+1 whose ends lead with classes c != c' (Illinois regula falsi on the "
                                         "model's logits, to 1e-9 of the step, 1e-5 in float32); NaN where the "
                                         "class does not change, where a third class leads at the root, and at the "
                                         "last t")
        distance_attrs["description"] = distance_attrs["description"].replace(
            "the nearest segment of the boundary through the edge crossings (marching squares)",
            "the nearest boundary crossing on the line")
    edge = ("edge",) if kind == "plane" else ()
    variables[f"{kind}_boundary_crossing"] = (("seed", "epoch", kind, *edge, *grid_dims), crossings, crossing_attrs)
    variables[f"{kind}_boundary_distance"] = (("seed", "epoch", kind, *grid_dims), distance, distance_attrs)
    if kind == "plane":
        attrs = stretch_attrs("the probed plane", "the plane's orthonormal frame (plane_axes_in_frame)")
        blocks = ("seed", "epoch", "block", kind, *grid_dims)
        variables["plane_log10_metric_eigenvalue"] = ((*blocks, "eigenvalue"), eigenvalues,
                                                      attrs["log10_metric_eigenvalue"])
        variables["plane_stretch_angle"] = (blocks, stretch, attrs["stretch_angle"])
        variables["plane_margin_gradient_angle"] = (("seed", "epoch", kind, *grid_dims), gradient,
                                                    attrs["margin_gradient_angle"])
        variables["plane_boundary_class_pair"] = (("seed", "epoch", kind, "edge", *grid_dims, "class_pair"),
                                                  class_pairs, class_pair_attrs("the probed plane"))
        variables["plane_axes_in_frame"] = (("plane", "frame_axis", "plane_axis"), axes_in_frame, {
            "long_name": "the plane's axes e_u and e_v in its orthonormal frame V",
            "units": "1",
            "description": ("R with (e_u e_v) = V R, V the orthonormal basis of the plane whose first axis runs along "
                            "e_u (or -e_u where R's first entry is negative; the frame of plane_stretch_angle and "
                            "plane_margin_gradient_angle): a direction at "
                            "angle a in the frame is (du, dv) = R^-1 (cos a, sin a) in the plane's coordinates"),
        })
    if with_curvature:
        variables[f"{kind}_curvature"] = (("seed", "epoch", "block", kind, *grid_dims), curvature,
                                          curvature_attrs(f"the probed {kind}"))
    if settings.spectra:
        variables[f"{kind}_anchor_singular_values"] = (("seed", "epoch", "block", kind, anchor_dim, "k"), spectra, {
            "long_name": "singular values of the full Jacobian J of the feature map at each anchor image "
                         "(descending; NaN past min(n, d))", "units": "1"})
    coords = {
        kind: (kind, np.arange(n_spans), {"long_name": f"{kind} number (order of probe.{key})", "units": "1"}),
        anchor_dim: (anchor_dim, np.arange(n_anchors), {"long_name": f"anchor image of the {kind}", "units": "1"}),
        f"{kind}_top_k": top_k_coord(probed, settings, d, m),
    }
    if settings.spectra:
        coords["k"] = ("k", np.arange(1, k_max + 1), {"long_name": "rank of the singular value (1 = largest)", "units": "1"})
    for dim, values in axes.items():
        coords[dim] = (dim, values.numpy(), AXIS_ATTRS[dim])
    if kind == "plane":
        coords["edge"] = ("edge", np.array(["u", "v"], dtype=object),
                          {"long_name": "the plane axis a boundary crossing's edge runs along"})
        coords["eigenvalue"] = EIGENVALUE_COORD
        coords["class_pair"] = CLASS_PAIR_COORD
        coords["frame_axis"] = ("frame_axis", [1, 2], {"long_name": "axis of the plane's orthonormal frame V",
                                                       "units": "1"})
        coords["plane_axis"] = ("plane_axis", np.array(["u", "v"], dtype=object),
                                {"long_name": "the plane's axis e_u or e_v"})
        uv = np.array(ANCHOR_UV)
        coords["anchor_u"] = ("anchor", uv[:, 0], {"long_name": "u coordinate of the anchor image", "units": "1"})
        coords["anchor_v"] = ("anchor", uv[:, 1], {"long_name": "v coordinate of the anchor image", "units": "1"})
    return variables, coords


def _span_boundary(probed: ProbedModel, kind: str, anchors: torch.Tensor, input_shape: tuple, axes: dict,
                   predicted: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """The network's decision boundary on one plane (crossings (2, V, U), distance (V, U):
    :func:`geomvol.probe.core.learned_boundary` in the plane's (u, v), through its frame) or line (crossings and
    distance (T,), along t)."""
    if kind == "plane":
        frame = plane_frame(*anchors)
        vectors = torch.stack([frame.e_u, frame.e_v])

        def to_points(uv: torch.Tensor) -> torch.Tensor:
            return (frame.origin + uv[:, :1] * frame.e_u + uv[:, 1:] * frame.e_v).reshape(-1, *input_shape)

        gram = (vectors @ vectors.T).cpu().double().numpy()
        return learned_boundary(probed, axes["u"], axes["v"], predicted, to_points, gram, n_classes)
    direction = anchors[1] - anchors[0]

    def along(tz: torch.Tensor) -> torch.Tensor:  # a line: a field of one row, (t, 0)
        return (anchors[0] + tz[:, :1] * direction).reshape(-1, *input_shape)

    t = axes["t"].cpu().double().numpy()
    crossings = boundary_crossings(probed, predicted[None], along, t, np.zeros(1))[0, 0]
    distance = line_boundary_distance(t, crossings, float(direction.norm()), predicted if n_classes == 2 else None)
    return crossings, distance


def _probe_in_memory(kind: str, model, anchors, settings: ProbeSettings, labels, classes, seed: int,
                     epoch: int) -> xr.Dataset:
    """The notebook API's planes or lines through ``anchors``: one span (anchors, *input), or a list of them."""
    count = 3 if kind == "plane" else 2
    spans = torch.stack([torch.as_tensor(span) for span in anchors]) if isinstance(anchors, (list, tuple)) \
        else torch.as_tensor(anchors)[None]
    if spans.dim() < 3 or spans.shape[1] != count:
        raise ValueError(f"a {kind} goes through {count} anchors: give a tensor ({count}, *input) or a list of them, "
                         f"not one of shape {list(spans.shape)}")
    probed = probed_module(model, spans.shape[2:], settings, seed, epoch)
    points = spans.flatten(0, 1).to(device=probed.device, dtype=probed.dtype)
    if labels is None:  # the class the model gives each anchor
        labels = network_outputs(probed, points).argmax(dim=1).reshape(spans.shape[:2])
    labels = torch.as_tensor(labels, dtype=torch.int64).reshape(spans.shape[:2])
    variables, coords = measure_spans(probed, kind, spans, labels, settings, classes)
    return xr.Dataset(variables, coords={**coords, **checkpoint_coords(probed), **block_coords(probed, settings)})


def probe_plane(model, anchors, feature_maps: list, *, resolution: int = 40, extent: float = 1.0, labels=None,
                classes: list[str] | None = None, metric: str = "subspace", top_k: int | None = None,
                curvature: bool = False, spectra: bool = False, dtype: str = "float64", device: str = "cpu",
                memory_budget_bytes: int = 1 << 30, seed: int = 0, epoch: int = 0) -> xr.Dataset:
    """The volume element of each feature map of ``model`` (any ``nn.Module`` whose forward gives logits) on the
    plane through three ``anchors`` (3, *input), as the model reads them (normalised; a list of such for
    several planes), in the study's frame (this module's docstring): ``resolution`` points per axis, u and v
    from -``extent`` to ``extent``; with its predicted class, entropy and margin, each anchor's class
    probability (``labels``: the anchors' classes; by default those the model gives them), the Gaussian
    curvature (``curvature``) and the spectra at the anchors (``spectra``). ``feature_maps`` as in a config:
    names, or ``{"node": ..., "pool": ...}`` for graph nodes; ``classes`` names the classes; ``seed`` and
    ``epoch`` label the result. The same variables, dims, units and attrs as the pipeline's stores (those of
    the data set and checkpoint aside); the model given is left as it is."""
    settings = notebook_settings(feature_maps, metric=metric, top_k=top_k, dtype=dtype, device=device,
                                 curvature=curvature, spectra=spectra, memory_budget_bytes=memory_budget_bytes,
                                 plane=PlaneSettings(extent, resolution))
    return _probe_in_memory("plane", model, anchors, settings, labels, classes, seed, epoch)


def probe_line(model, anchors, feature_maps: list, *, points: int = 10, low: float = 0.0, high: float = 1.0,
               endpoint: bool = True, labels=None, classes: list[str] | None = None, metric: str = "subspace",
               top_k: int | None = None, spectra: bool = False, dtype: str = "float64", device: str = "cpu",
               memory_budget_bytes: int = 1 << 30, seed: int = 0, epoch: int = 0) -> xr.Dataset:
    """As :func:`probe_plane`, on the line p1 + t (p2 - p1) through two ``anchors`` (2, *input): ``points``
    values of t from ``low`` to ``high`` (``endpoint`` false: high left out, the study's t = i / N)."""
    settings = notebook_settings(feature_maps, metric=metric, top_k=top_k, dtype=dtype, device=device,
                                 spectra=spectra, memory_budget_bytes=memory_budget_bytes,
                                 line=LineSettings(low, high, points, endpoint))
    return _probe_in_memory("line", model, anchors, settings, labels, classes, seed, epoch)


AXIS_ATTRS = {
    "u": {"long_name": "plane coordinate u along e_u = p2 - p1", "units": "1"},
    "v": {"long_name": "plane coordinate v along e_v = 2 sqrt(3) ((p1 + p2)/2 - centroid)", "units": "1"},
    "t": {"long_name": "line coordinate t in p1 + t (p2 - p1) (probe.line.endpoint false: t = i / N, p2 not reached)",
          "units": "1"},
}


def images_of_checkpoint(checkpoint_path: str | Path, data_path: str | Path, settings: ProbeSettings) -> xr.Dataset:
    """Volume element per feature map, predictions, entropy and anchor-class probabilities of one checkpoint
    on every plane and line of ``settings``; spectra at the anchors."""
    probed = load_probed_model(checkpoint_path, settings)
    data = load_dataset(data_path)
    print(f"probing {probed.path} (epoch {probed.epoch}), feature maps {list(settings.feature_maps)}, device {probed.device}",
          file=sys.stderr)
    variables, coords = {}, {**checkpoint_coords(probed)}
    if probed.objective["name"] != "cross_entropy":
        accuracy = attach_linear_probe(probed, data, settings.linear_probe)
        print(f"linear probe on frozen '{probed.objective['features']}' features: training accuracy "
              f"{accuracy['train']:.3f}, test accuracy {accuracy['test']:.3f}", file=sys.stderr)
        for split in ("train", "test"):
            variables[f"linear_probe_{split}_accuracy"] = (("seed", "epoch"), [[accuracy[split]]], {
                "long_name": f"{split} accuracy of the linear probe that gives the predicted classes "
                             f"(logistic regression on frozen, standardised features)", "units": "1"})
    for kind in KINDS:
        if settings.anchors(kind):
            kind_variables, kind_coords = _probe_kind(probed, data, settings, kind)
            variables.update(kind_variables)
            coords.update(kind_coords)
    coords.update(block_coords(probed, settings))
    ds = xr.Dataset(variables, coords=coords)
    ds["channel_mean"] = ("channel", data["mean"].numpy(), {
        "long_name": f"per-channel mean subtracted from pixels / {int(data['pixel_max'])}", "units": "1"})
    ds["channel_std"] = ("channel", data["std"].numpy(), {"long_name": "per-channel divisor after the mean", "units": "1"})
    return ds
