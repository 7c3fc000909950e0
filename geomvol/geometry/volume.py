r"""Log volume elements of the pullback metric of a feature map.

A feature map :math:`\Phi: \mathbb{R}^d \to \mathbb{R}^n` (inputs and features
flattened) pulls the flat metric of feature space back to input space,

.. math::  g = \frac{1}{n} J^\top J, \qquad J_{i\mu} = \partial \Phi_i / \partial x^\mu ,

and the volume element :math:`\sqrt{\det g}` says how much :math:`\Phi`
magnifies a small volume around :math:`x`. With the singular values
:math:`s_1 \ge s_2 \ge \dots` of :math:`J`,

.. math::  \log \sqrt{\det g} = \sum_{i \le k} \log s_i - \frac{k}{2} \log n .

* ``basis=None`` (metric "full"): the whole :math:`d \times d` metric; when
  :math:`n < d` it is singular and the pseudo-determinant over the top
  ``top_k`` singular values is used (default :math:`k = \min(n, d)`).
* ``basis`` :math:`V` of shape (d, m) (metric "subspace"): the metric induced
  on the span of :math:`V`, :math:`G = (J V)^\top (J V) / n`, from :math:`m`
  forward-mode JVPs per point; the full Jacobian is never formed.

Numerics: the log volume comes from :math:`J` (or :math:`JV`) itself, never
from the determinant of the squared matrix :math:`J^\top J`, whose condition
number is the square of :math:`J`'s. With all :math:`k = \min(n, m)` singular
values kept, :math:`\prod_i s_i = \prod_i |R_{ii}|` for the QR factorisation of
the tall one of :math:`J` and :math:`J^\top`, rows sorted by decreasing norm
(several times cheaper than the SVD, and accurate row by row, so saturated units
with :math:`\phi' \approx 0` keep their tiny singular values exact); with fewer,
or when the spectrum is asked for, the singular values are computed (norm-wise
accurate: singular values below :math:`\epsilon s_1` carry absolute, not
relative, error). A zero singular value gives :math:`-\infty`.

Memory: each point's Jacobian is built from its directions (cotangents or
tangents) in chunks, and points are processed in chunks, sized by
:func:`plan_chunks` so that the activations and Jacobians held at once stay
under ``memory_budget_bytes``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable

import torch
from torch.func import jvp, vjp, vmap

from geomvol.geometry.tangents import constant_parameter_tangents

FeatureMap = Callable[[torch.Tensor], torch.Tensor]

# Below this ratio of the smallest to the largest |R_ii|, a point's QR is redone with sorted rows.
GRADED_RATIO = 1e-3


def _feature_dim(feature_map: FeatureMap, x: torch.Tensor) -> int:
    with torch.no_grad():
        return feature_map(x[:1]).reshape(-1).shape[0]


@dataclass(frozen=True)
class ChunkPlan:
    """How many points, and how many Jacobian directions per point, are processed at once."""

    points: int
    directions: int | None  # None: all directions in one go


def measure_feature_map(feature_map: FeatureMap, x: torch.Tensor) -> tuple[int, int]:
    """(n, A): the flattened feature dimension, and the elements of the tensors a
    forward pass of one point saves for differentiation.

    Only saved tensors that depend on the input (that require grad) count, so
    the weights of a frozen model, which every point shares, do not; a model
    whose parameters require grad is over-counted, which only makes the
    chunks smaller.
    """
    saved = 0

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal saved
        if tensor.requires_grad:
            saved += tensor.numel()
        return tensor

    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        out = feature_map(x[:1].detach().clone().requires_grad_(True))
    return out[0].numel(), max(1, saved)


def plan_chunks(n: int, columns: int, activations: int, itemsize: int, budget: int | None, batch: int) -> ChunkPlan:
    r"""Chunk sizes that keep the memory of a Jacobian computation under ``budget`` bytes.

    Model of the memory (deliberately pessimistic): a point with ``c``
    directions in flight holds its saved activations once and a copy per
    direction, :math:`(1 + c) A` elements, plus its Jacobian and a working
    copy for the factorisation, :math:`2 n m` elements. All directions of as
    many points as fit are taken together; when one point with all its
    directions does not fit, points go one at a time with as many directions
    as fit (at least one).
    """
    if budget is None:
        return ChunkPlan(points=batch, directions=None)
    jacobian_bytes = 2 * n * columns * itemsize
    per_point = (1 + columns) * activations * itemsize + jacobian_bytes
    if per_point <= budget:
        return ChunkPlan(points=min(batch, budget // per_point), directions=None)
    directions = (budget - jacobian_bytes) // (activations * itemsize) - 1
    return ChunkPlan(points=1, directions=int(min(columns, max(1, directions))))


def jacobian(feature_map: FeatureMap, x: torch.Tensor, directions_per_chunk: int | None = None) -> torch.Tensor:
    """Jacobians of the flattened feature map at each point.

    Parameters
    ----------
    feature_map : callable, (B, *input) -> (B, *features), treating the points
        of a batch independently (a model in eval mode).
    x : tensor, shape=[B, *input]
    directions_per_chunk : int, optional
        Cotangents (reverse mode) or tangents (forward mode) vectorised at once.

    Returns
    -------
    jacobian_bnd : tensor, shape=[B, n, d]
        Reverse mode when n < d (n vector-Jacobian products sharing one
        forward pass of the batch), forward mode otherwise (d
        Jacobian-vector products), vectorised with ``torch.func.vmap``.
    """
    return _jacobian(feature_map, x, _feature_dim(feature_map, x), directions_per_chunk)


def _jacobian(feature_map: FeatureMap, x: torch.Tensor, n: int, directions_per_chunk: int | None) -> torch.Tensor:
    batch, d = x.shape[0], math.prod(x.shape[1:])
    if n >= d:
        return subspace_jacobian(feature_map, x, torch.eye(d, dtype=x.dtype, device=x.device), directions_per_chunk)
    _, pullback = vjp(lambda points: feature_map(points).reshape(batch, n), x)
    # cotangent i selects feature i of every point; points do not mix, so row i of each point's J comes back
    cotangents = torch.eye(n, dtype=x.dtype, device=x.device)[:, None, :].expand(n, batch, n)
    rows = vmap(pullback, chunk_size=directions_per_chunk)(cotangents)[0]  # (n, B, *input)
    return rows.reshape(n, batch, d).transpose(0, 1)


def subspace_jacobian(
    feature_map: FeatureMap, x: torch.Tensor, basis: torch.Tensor, directions_per_chunk: int | None = None
) -> torch.Tensor:
    """Directional derivatives along the columns of ``basis``: J V.

    Parameters
    ----------
    feature_map : callable, (B, *input) -> (B, *features), treating the points
        of a batch independently (a model in eval mode).
    x : tensor, shape=[B, *input]
    basis : tensor, shape=[d, m]

    Returns
    -------
    jacobian_bnm : tensor, shape=[B, n, m], from m forward-mode JVPs of the
        whole batch (the same direction at every point), vectorised over
        directions; linear, convolution and eval batch-norm layers use the
        rules of :mod:`geomvol.geometry.tangents` (no zero parameter tangents).
    """
    batch = x.shape[0]

    def along(direction: torch.Tensor) -> torch.Tensor:
        tangent = direction.reshape(x.shape[1:]).expand_as(x)
        with constant_parameter_tangents():
            return jvp(feature_map, (x,), (tangent,))[1].reshape(batch, -1)

    with warnings.catch_warnings():
        # the first forward-mode use loads torch's decompositions through the deprecated torch.jit.script
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)
        return vmap(along, in_dims=1, out_dims=2, chunk_size=directions_per_chunk)(basis.to(x))


def _r_factor(tall: torch.Tensor) -> torch.Tensor:
    """R (B, m, m) of the Householder QR factorisation of each (n, m) matrix, n >= m.

    Householder QR is accurate relative to the largest singular value: a
    diagonal entry below ``GRADED_RATIO`` times the largest may carry a large
    relative error when the rows of J differ by many orders of magnitude
    (saturated units, phi'(z) ~ 1e-30). Those points are factorised again
    with the rows sorted by decreasing norm, which makes Householder QR
    accurate row by row, so the tiny singular values keep their relative
    accuracy (a norm-wise stable SVD would lose it). Sorting the rows leaves
    :math:`R^\top R = J^\top J` as it is.
    """
    r = torch.linalg.qr(tall, mode="r").R
    diagonal = r.diagonal(dim1=-2, dim2=-1).abs()
    graded = diagonal.amin(dim=-1) < GRADED_RATIO * diagonal.amax(dim=-1)
    if graded.any():
        rows = tall[graded]
        order = rows.norm(dim=-1).argsort(dim=-1, descending=True)
        r[graded] = torch.linalg.qr(torch.take_along_dim(rows, order[..., None], dim=-2), mode="r").R
    return r


def _log_abs_det_r(jac: torch.Tensor) -> torch.Tensor:
    """sum_i log s_i over all min(n, m) singular values, as log prod |R_ii| of a QR factorisation of the tall
    one of J and J^T (:func:`_r_factor`)."""
    tall = (jac if jac.shape[-2] >= jac.shape[-1] else jac.mT).contiguous()
    return torch.log(_r_factor(tall).diagonal(dim1=-2, dim2=-1).abs()).sum(dim=-1)


def _setup(feature_map, x, basis, top_k, memory_budget_bytes) -> tuple[int, int, bool, ChunkPlan]:
    """(n, k, all_kept, plan): feature dimension, singular values kept, whether that is all
    min(n, m) of them, and the chunk sizes; from a forward of one point."""
    if memory_budget_bytes is None:
        n, activations = _feature_dim(feature_map, x), 0
    else:
        n, activations = measure_feature_map(feature_map, x)
    columns = math.prod(x.shape[1:]) if basis is None else basis.shape[1]
    if basis is not None and top_k is not None:
        raise ValueError("top_k applies to the full metric only; a basis fixes the subspace dimension")
    k = min(n, columns) if top_k is None else top_k
    if not 1 <= k <= min(n, columns):
        raise ValueError(f"top_k={top_k} must be between 1 and min(n, d) = {min(n, columns)}")
    plan = plan_chunks(n, columns, activations, x.element_size(), memory_budget_bytes, x.shape[0])
    return n, k, k == min(n, columns), plan


def _jacobians(feature_map, x, basis, n: int, plan: ChunkPlan):
    """The Jacobians (or J V) of ``x``, chunk by chunk as planned."""
    for x_chunk in x.split(plan.points):
        if basis is None:
            yield _jacobian(feature_map, x_chunk, n, plan.directions)
        else:
            yield subspace_jacobian(feature_map, x_chunk, basis, plan.directions)


def log_volume_and_singular_values(
    feature_map: FeatureMap,
    x: torch.Tensor,
    basis: torch.Tensor | None = None,
    top_k: int | None = None,
    memory_budget_bytes: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Natural log of the volume element :math:`\sqrt{\det g}` and the singular values of J.

    Parameters
    ----------
    feature_map : callable, (B, *input) -> (B, *features); a model in eval mode
        (BatchNorm uses its running statistics), on the device and dtype of ``x``.
    x : tensor, shape=[B, *input]
    basis : tensor, shape=[d, m], optional
        Probe the metric induced on span(basis) instead of the full metric.
    top_k : int, optional
        Singular values kept in the full pseudo-determinant; default min(n, d).
    memory_budget_bytes : int, optional
        Bound on the bytes held at once by the Jacobian computation (see
        :func:`plan_chunks`); default: everything in one go.

    Returns
    -------
    log_volume : tensor, shape=[B]
        :math:`\sum_{i\le k} \log s_i - (k/2) \log n`; ``-inf`` where a kept
        singular value is exactly zero.
    singular_values : tensor, shape=[B, k], descending.
    """
    n, k, _, plan = _setup(feature_map, x, basis, top_k, memory_budget_bytes)
    return _from_singular_values(feature_map, x, basis, n, k, plan)


def _from_singular_values(feature_map, x, basis, n: int, k: int, plan: ChunkPlan) -> tuple[torch.Tensor, torch.Tensor]:
    singular_values = torch.cat([torch.linalg.svdvals(jac)[:, :k] for jac in _jacobians(feature_map, x, basis, n, plan)])
    return torch.log(singular_values).sum(dim=1) - 0.5 * k * math.log(n), singular_values


def log_volume(
    feature_map: FeatureMap,
    x: torch.Tensor,
    basis: torch.Tensor | None = None,
    top_k: int | None = None,
    memory_budget_bytes: int | None = None,
) -> torch.Tensor:
    r"""Natural log of the volume element :math:`\sqrt{\det g}`, shape [B].

    See :func:`log_volume_and_singular_values` for the parameters. With all
    singular values kept (the default) it uses a QR factorisation of J instead
    of its SVD: the same value, several times faster.
    """
    n, k, all_kept, plan = _setup(feature_map, x, basis, top_k, memory_budget_bytes)
    if not all_kept:
        return _from_singular_values(feature_map, x, basis, n, k, plan)[0]
    log_det = torch.cat([_log_abs_det_r(jac) for jac in _jacobians(feature_map, x, basis, n, plan)])
    return log_det - 0.5 * k * math.log(n)


def log_volume_of_parts(
    feature_map: FeatureMap,
    x: torch.Tensor,
    widths: list[int],
    basis: torch.Tensor | None = None,
    memory_budget_bytes: int | None = None,
) -> torch.Tensor:
    r"""Natural log volume elements of several feature maps at once, shape [P, B].

    ``feature_map`` returns the features of P maps side by side, (B, n_1 + ... + n_P);
    part p's metric is :math:`g_p = J_p^\top J_p / n_p` with :math:`J_p` its rows of
    the Jacobian, all of whose min(n_p, d) (or min(n_p, m) with a ``basis``)
    singular values are kept. One Jacobian computation serves all parts: with a
    basis, m JVPs through a network whose blocks share their trunk cost what
    the deepest block alone costs. Parameters as :func:`log_volume`.
    """
    n, _, _, plan = _setup(feature_map, x, basis, None, memory_budget_bytes)
    if sum(widths) != n:
        raise ValueError(f"the parts' widths {widths} do not add up to the feature map's {n} features")
    columns = math.prod(x.shape[1:]) if basis is None else basis.shape[1]
    starts = [sum(widths[:p]) for p in range(len(widths))]
    chunks = []
    for jac in _jacobians(feature_map, x, basis, n, plan):
        chunks.append(torch.stack([
            _log_abs_det_r(jac[:, start:start + width]) - 0.5 * min(width, columns) * math.log(width)
            for start, width in zip(starts, widths)
        ]))
    return torch.cat(chunks, dim=1)


@dataclass(frozen=True)
class PlaneMetric:
    r"""The metric :math:`G = (J V)^\top (J V) / n` a feature map induces on a plane (orthonormal basis V (d, 2)),
    at each point: its log volume element, eigenvalues and the direction of its leading eigenvector.

    Shapes (..., B): a leading dimension P for the parts of :func:`plane_metric` with ``widths``.
    """

    log_volume: torch.Tensor  # (..., B) log sqrt(det G), as log_volume(basis=V) gives it
    log_eigenvalues: torch.Tensor  # (..., B, 2) natural log of lambda_1 >= lambda_2; -inf for 0
    angle: torch.Tensor  # (..., B) of G's leading eigenvector from V's first column toward its second, in
    # (-pi/2, pi/2] (an eigenvector's sign is arbitrary); NaN where lambda_1 = lambda_2 to rounding


def _metric_of_r(r: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(log volume, log eigenvalues (B, 2), angle) of G = R^T R / n from each upper-triangular R (B, 2, 2).

    In closed form on R scaled by its largest entry s (no under- or overflow): with R = s [[a, b], [0, c]],
    R^T R = s^2 [[p, q], [q, r]], p = a^2, q = ab, r = b^2 + c^2; lambda_1 = s^2 ((p + r)/2 + hypot((p - r)/2, q)),
    lambda_2 = s^2 (ac)^2 / lambda_1 (from the determinant, so it keeps its relative accuracy however small),
    and the leading eigenvector at angle atan2(2q, p - r) / 2.
    """
    scale = r.abs().amax(dim=(-2, -1))
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    a, b, c = (r[..., i, j] / safe for i, j in ((0, 0), (0, 1), (1, 1)))
    p, q, rr = a * a, a * b, b * b + c * c
    gap = torch.hypot((p - rr) / 2, q)
    first = (p + rr) / 2 + gap
    second = torch.where(first > 0, (a * c) ** 2 / torch.where(first > 0, first, torch.ones_like(first)), 0.0)
    offset = 2 * torch.log(safe) - math.log(n)
    log_eigenvalues = torch.stack([torch.log(first), torch.log(second)], dim=-1) + offset[..., None]
    log_eigenvalues = torch.where((scale > 0)[..., None], log_eigenvalues, -math.inf)
    isotropic = gap <= 8 * torch.finfo(r.dtype).eps * first
    angle = torch.where(isotropic, math.nan, torch.atan2(2 * q, p - rr) / 2)
    angle = torch.where(angle <= -math.pi / 2, angle + math.pi, angle)
    k = min(n, 2)  # the singular values kept: as log_volume keeps them
    log_volume = torch.log(r.diagonal(dim1=-2, dim2=-1).abs()[..., :k]).sum(dim=-1) - 0.5 * k * math.log(n)
    return log_volume, log_eigenvalues, angle


def plane_metric(
    feature_map: FeatureMap,
    x: torch.Tensor,
    basis: torch.Tensor,
    widths: list[int] | None = None,
    memory_budget_bytes: int | None = None,
) -> PlaneMetric:
    r"""The metric a feature map induces on the plane spanned by ``basis`` (d, 2), orthonormal, at each point of
    ``x`` (B, *input): its log volume element (the value :func:`log_volume` gives with this basis), eigenvalues
    and leading eigenvector (:class:`PlaneMetric`), from one QR factorisation of J V per point (:func:`_r_factor`).

    With ``widths``, ``feature_map`` returns P maps side by side, (B, n_1 + ... + n_P), as for
    :func:`log_volume_of_parts`, and each field has a leading dimension P: one set of 2 JVPs serves all parts.
    """
    if basis.shape[-1] != 2:
        raise ValueError(f"a plane's metric needs a basis of 2 directions, not {basis.shape[-1]}")
    n, _, _, plan = _setup(feature_map, x, basis, None, memory_budget_bytes)
    parts = [n] if widths is None else widths
    if sum(parts) != n:
        raise ValueError(f"the parts' widths {parts} do not add up to the feature map's {n} features")
    starts = [sum(parts[:p]) for p in range(len(parts))]
    chunks = []  # per chunk of points: per part, (log volume, log eigenvalues, angle)
    for jac in _jacobians(feature_map, x, basis, n, plan):
        chunk = []
        for start, width in zip(starts, parts):
            rows = jac[:, start:start + width]
            if width < 2:  # zero rows leave J^T J as it is
                rows = torch.nn.functional.pad(rows, (0, 0, 0, 2 - width))
            chunk.append(_metric_of_r(_r_factor(rows.contiguous()), width))
        chunks.append(chunk)
    fields = [torch.stack([torch.cat([chunk[part][i] for chunk in chunks]) for part in range(len(parts))])
              for i in range(3)]  # (P, B, ...) each
    return PlaneMetric(*(field if widths is not None else field[0] for field in fields))
