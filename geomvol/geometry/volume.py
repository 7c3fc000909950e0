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

The log volume comes from singular values of :math:`J` (or :math:`JV`), never
from the determinant of the squared matrix, whose condition number is the
square of :math:`J`'s. A zero singular value gives :math:`-\infty`.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch.func import jacfwd, jacrev, jvp, vmap

FeatureMap = Callable[[torch.Tensor], torch.Tensor]


def _flat(feature_map: FeatureMap, input_shape: torch.Size) -> Callable[[torch.Tensor], torch.Tensor]:
    """The feature map of one flat point: (d,) -> (n,)."""

    def single(x_flat: torch.Tensor) -> torch.Tensor:
        return feature_map(x_flat.reshape(1, *input_shape)).reshape(-1)

    return single


def _feature_dim(feature_map: FeatureMap, x: torch.Tensor) -> int:
    with torch.no_grad():
        return feature_map(x[:1]).reshape(-1).shape[0]


def jacobian(feature_map: FeatureMap, x: torch.Tensor) -> torch.Tensor:
    """Jacobians of the flattened feature map at each point.

    Parameters
    ----------
    feature_map : callable, (B, *input) -> (B, *features)
    x : tensor, shape=[B, *input]

    Returns
    -------
    jacobian_bnd : tensor, shape=[B, n, d]
        Reverse mode when n < d (n backward passes), forward mode otherwise
        (d JVPs), vectorised over points and directions with ``torch.func``.
    """
    batch, input_shape = x.shape[0], x.shape[1:]
    d = math.prod(input_shape)
    n = _feature_dim(feature_map, x)
    transform = jacrev if n < d else jacfwd
    return vmap(transform(_flat(feature_map, input_shape)))(x.reshape(batch, d))


def subspace_jacobian(feature_map: FeatureMap, x: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """Directional derivatives along the columns of ``basis``: J V.

    Parameters
    ----------
    x : tensor, shape=[B, *input]
    basis : tensor, shape=[d, m]

    Returns
    -------
    jacobian_bnm : tensor, shape=[B, n, m], from m forward-mode JVPs per point.
    """
    batch, input_shape = x.shape[0], x.shape[1:]
    single = _flat(feature_map, input_shape)

    def directional(x_flat: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
        return jvp(single, (x_flat,), (direction,))[1]

    along_basis = vmap(directional, in_dims=(None, 1), out_dims=1)
    return vmap(along_basis, in_dims=(0, None))(x.reshape(batch, -1), basis.to(x))


def _chunk_size(n: int, columns: int, itemsize: int, memory_budget_bytes: int | None, batch: int) -> int:
    """Points per chunk so that the Jacobians held at once (and an SVD copy) fit the budget."""
    if memory_budget_bytes is None:
        return batch
    per_point = 2 * n * columns * itemsize
    return max(1, min(batch, memory_budget_bytes // per_point))


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
        Bound on the bytes of Jacobians held at once; points are processed in
        chunks that fit (at least one point per chunk).

    Returns
    -------
    log_volume : tensor, shape=[B]
        :math:`\sum_{i\le k} \log s_i - (k/2) \log n`; ``-inf`` where a kept
        singular value is exactly zero.
    singular_values : tensor, shape=[B, k], descending.
    """
    if basis is not None and top_k is not None:
        raise ValueError("top_k applies to the full metric only; a basis fixes the subspace dimension")
    n = _feature_dim(feature_map, x)
    d = math.prod(x.shape[1:])
    columns = d if basis is None else basis.shape[1]
    k = min(n, columns) if top_k is None else top_k
    if not 1 <= k <= min(n, columns):
        raise ValueError(f"top_k={top_k} must be between 1 and min(n, d) = {min(n, columns)}")
    chunk = _chunk_size(n, columns, x.element_size(), memory_budget_bytes, x.shape[0])
    spectra = []
    for x_chunk in x.split(chunk):
        if basis is None:
            jac = jacobian(feature_map, x_chunk)
        else:
            jac = subspace_jacobian(feature_map, x_chunk, basis)
        spectra.append(torch.linalg.svdvals(jac)[:, :k])
    singular_values = torch.cat(spectra)
    log_volume = torch.log(singular_values).sum(dim=1) - 0.5 * k * math.log(n)
    return log_volume, singular_values


def log_volume(
    feature_map: FeatureMap,
    x: torch.Tensor,
    basis: torch.Tensor | None = None,
    top_k: int | None = None,
    memory_budget_bytes: int | None = None,
) -> torch.Tensor:
    r"""Natural log of the volume element :math:`\sqrt{\det g}`, shape [B].

    See :func:`log_volume_and_singular_values` for the parameters.
    """
    return log_volume_and_singular_values(feature_map, x, basis, top_k, memory_budget_bytes)[0]
