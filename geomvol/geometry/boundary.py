"""The network's own decision boundary on a 2-D field of probed points (the sinusoid's input grid, a plane through
images): located to sub-cell accuracy on the model itself, and each point's distance to it.

A field is a regular grid of points x(a_j, b_i) (a along its columns, b along its rows) where the network's
leading class c(x) = argmax_k z_k(x) is known. The boundary between classes c and c' is where z_c = z_c'
and both lead. It crosses every grid edge whose two ends lead with different classes c != c': there
f(s) = z_c(x(s)) - z_c'(x(s)), x(s) = (1 - s) x_0 + s x_1, is >= 0 at s = 0 and < 0 at s = 1, and
:func:`edge_crossings` finds its root s* by the Illinois variant of regula falsi on the model's own logits
(every crossed edge of the field in one forward pass a step), not by interpolating the grid. A root where a
third class leads is no point of the c|c' boundary (the edge crosses two boundaries) and is left out.

:func:`boundary_segments` joins the crossings of each grid cell into segments (marching squares: two crossings,
one segment; four, the pairing with the shorter segments; three, a junction of three classes, each joined to
their centroid), and :func:`boundary_distance` measures each point's distance to the nearest segment in
input-space units, through the Gram matrix of the field's two axis vectors: on a plane whose axes are not
orthonormal the distance is still the one in the input space. It is signed for two classes (positive where
class 1 leads), unsigned for more. A line is a field of one row (:func:`line_boundary_distance`).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

# Crossing fraction s* of each grid edge: direction 0, the edge from point (i, j) to (i, j + 1) (along a);
# direction 1, from (i, j) to (i + 1, j) (along b); NaN where the leading class does not change (or the last
# column / row, which has no such edge).
EDGE_DIRECTIONS = ("a", "b")


def edge_crossings(classes: np.ndarray, logits_at: Callable[[torch.Tensor], torch.Tensor], a: np.ndarray,
                   b: np.ndarray, tolerance: float = 1e-9, max_steps: int = 60) -> np.ndarray:
    """Crossing fractions (2, B, A) of the boundary on each edge of the grid of field coordinates ``a`` (A,) and
    ``b`` (B,) whose points lead with ``classes`` (B, A): NaN where the edge's two ends lead with the same class
    or the root found has a third class leading. ``logits_at`` maps field coordinates (N, 2) (a, b) to the
    network's logits (N, C). The bracket [s_low, s_high] shrinks until it is narrower than ``tolerance`` (a
    fraction of the edge) or ``max_steps`` steps were taken."""
    crossings = np.full((2, len(b), len(a)), np.nan)
    starts, ends, pairs, where = [], [], [], []
    for direction, (rows, columns, step) in enumerate((
            (slice(None), slice(0, -1), (0, 1)), (slice(0, -1), slice(None), (1, 0)))):
        here = classes[rows, columns]
        there = classes[step[0]:, step[1]:][:here.shape[0], :here.shape[1]]
        for i, j in zip(*np.nonzero(here != there)):
            starts.append((a[j], b[i]))
            ends.append((a[j + step[1]], b[i + step[0]]))
            pairs.append((here[i, j], there[i, j]))
            where.append((direction, i, j))
    if not where:
        return crossings
    start, end = torch.tensor(starts, dtype=torch.float64), torch.tensor(ends, dtype=torch.float64)
    first, second = (torch.tensor(column, dtype=torch.int64) for column in zip(*pairs))
    rows = torch.arange(len(where))

    def gap(s: torch.Tensor) -> torch.Tensor:  # z_first - z_second along each edge: >= 0 at s = 0, < 0 at s = 1
        z = logits_at(start + s[:, None] * (end - start)).double()
        return z[rows, first] - z[rows, second]

    low, high = torch.zeros(len(where), dtype=torch.float64), torch.ones(len(where), dtype=torch.float64)
    f_low, f_high = gap(low), gap(high)
    side = torch.zeros(len(where), dtype=torch.int8)  # which end stayed last (Illinois: halve its value)
    for _ in range(max_steps):
        if bool((high - low < tolerance).all()):
            break
        s = (low * f_high - high * f_low) / (f_high - f_low)  # regula falsi
        s = torch.where(torch.isfinite(s) & (s > low) & (s < high), s, (low + high) / 2)
        f = gap(s)
        above = f >= 0
        low, f_low = torch.where(above, s, low), torch.where(above, f, f_low)
        high, f_high = torch.where(above, high, s), torch.where(above, f_high, f)
        kept = torch.where(above, torch.ones_like(side), -torch.ones_like(side))
        f_high = torch.where(above & (side == 1), f_high / 2, f_high)  # the high end kept twice: halve it
        f_low = torch.where(~above & (side == -1), f_low / 2, f_low)
        side = kept
    root = torch.where(f_low.abs() <= f_high.abs(), low, high)
    z = logits_at(start + root[:, None] * (end - start)).double()
    top_two = z.topk(2, dim=1).indices
    on_boundary = ((top_two == first[:, None]) | (top_two == second[:, None])).all(dim=1)
    for (direction, i, j), value, ok in zip(where, root.tolist(), on_boundary.tolist()):
        if ok:
            crossings[direction, i, j] = value
    return crossings


def crossing_classes(crossings: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """The pair of classes (2, B, A, 2) whose boundary crosses each edge of ``crossings`` (2, B, A): the leading
    classes of the edge's two ends, the smaller first; -1 where the edge holds no crossing."""
    pairs = np.full((*crossings.shape, 2), -1, dtype=np.int16)
    for direction, step in enumerate(((0, 1), (1, 0))):
        here = classes[: classes.shape[0] - step[0], : classes.shape[1] - step[1]]
        there = classes[step[0]:, step[1]:]
        crossed = np.isfinite(crossings[direction, : here.shape[0], : here.shape[1]])
        ends = np.sort(np.stack([here, there], axis=-1), axis=-1)
        pairs[direction, : here.shape[0], : here.shape[1]] = np.where(crossed[..., None], ends, -1)
    return pairs


def crossing_points(crossings: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Field coordinates (N, 2) (a, b) of every boundary crossing of ``crossings`` (2, B, A)."""
    points = []
    for direction in (0, 1):
        i, j = np.nonzero(np.isfinite(crossings[direction]))
        s = crossings[direction, i, j]
        if direction == 0:
            points.append(np.stack([a[j] + s * (a[np.minimum(j + 1, len(a) - 1)] - a[j]), b[i]], axis=1))
        else:
            points.append(np.stack([a[j], b[i] + s * (b[np.minimum(i + 1, len(b) - 1)] - b[i])], axis=1))
    return np.concatenate(points)


def boundary_segments(crossings: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Segments (S, 2, 2) (ends, then a and b) of the boundary through the crossings of each grid cell."""
    segments = []
    for i in range(len(b) - 1):
        for j in range(len(a) - 1):
            ends = []  # the cell's crossings: its bottom, top (along a), left and right (along b) edges
            for direction, row, column in ((0, i, j), (0, i + 1, j), (1, i, j), (1, i, j + 1)):
                s = crossings[direction, row, column]
                if np.isfinite(s):
                    ends.append((a[column] + s * (a[column + 1] - a[column]), b[row]) if direction == 0 else
                                (a[column], b[row] + s * (b[row + 1] - b[row])))
            ends = np.array(ends)
            if len(ends) == 2:
                segments.append(ends)
            elif len(ends) == 3:  # three classes meet in the cell
                centre = ends.mean(axis=0)
                segments.extend(np.stack([end, centre]) for end in ends)
            elif len(ends) == 4:  # a saddle cell: the pairing with the shorter segments
                pairings = ([(0, 2), (1, 3)], [(0, 3), (1, 2)])
                length = [sum(np.linalg.norm(ends[p] - ends[q]) for p, q in pairing) for pairing in pairings]
                segments.extend(ends[list(pair)] for pair in pairings[int(np.argmin(length))])
    return np.array(segments).reshape(-1, 2, 2)


def boundary_distance(points: np.ndarray, segments: np.ndarray, gram: np.ndarray,
                      classes: np.ndarray | None = None) -> np.ndarray:
    """Distance of each point (..., 2) of field coordinates to the nearest boundary segment, in input-space
    units: the field's coordinates are mapped to orthonormal ones through the Cholesky factor of ``gram``
    (2, 2), the Gram matrix of the input-space vectors of its two axes. With ``classes`` (...,) of a field of
    two classes, signed: positive where class 1 leads. NaN everywhere when there are no segments."""
    if len(segments) == 0:
        return np.full(points.shape[:-1], np.nan)
    frame = np.linalg.cholesky(gram).T  # |frame @ d| = sqrt(d^T gram d)
    start, end = segments[:, 0] @ frame.T, segments[:, 1] @ frame.T
    along = end - start
    length2 = np.maximum((along ** 2).sum(axis=1), 1e-300)
    flat = points.reshape(-1, 2) @ frame.T
    distance = np.empty(len(flat))
    for first in range(0, len(flat), 1024):  # (points, segments, 2) a block of points at a time
        p = flat[first:first + 1024, None, :]
        t = np.clip(((p - start[None]) * along[None]).sum(axis=2) / length2, 0.0, 1.0)
        distance[first:first + 1024] = np.sqrt(((p - (start[None] + t[..., None] * along[None])) ** 2).sum(axis=2)).min(axis=1)
    distance = distance.reshape(points.shape[:-1])
    if classes is not None:
        distance = np.where(classes == 1, distance, -distance)
    return distance


def line_boundary_distance(t: np.ndarray, crossings: np.ndarray, length: float,
                           classes: np.ndarray | None = None) -> np.ndarray:
    """Distance (T,) of each point p1 + t (p2 - p1) of a line to the nearest boundary crossing on it, in
    input-space units (``length`` = |p2 - p1|): ``crossings`` (T,) the fraction of each step t_j -> t_j+1 where
    the boundary crosses (NaN: none). Signed as :func:`boundary_distance` with ``classes``; NaN with no crossing."""
    j = np.nonzero(np.isfinite(crossings))[0]
    if len(j) == 0:
        return np.full(len(t), np.nan)
    roots = t[j] + crossings[j] * (t[j + 1] - t[j])
    distance = np.abs(t[:, None] - roots[None]).min(axis=1) * length
    return distance if classes is None else np.where(classes == 1, distance, -distance)
