r"""Gaussian curvature of the metric a feature map induces on a plane through its inputs.

A plane :math:`x(u, v) = o + u\,e_1 + v\,e_2` is mapped to a surface :math:`f(u, v) = \Phi(x(u, v))`
in feature space :math:`\mathbb{R}^n`, whose induced metric is :math:`G' = T^\top T`,
:math:`T = (f_u, f_v)`, or, normalised as the pipeline's volume element is, :math:`G = G'/n`. By
Gauss's equation for a surface in a Euclidean space of any dimension, with :math:`P` the projection
onto the normal space (the orthogonal complement of :math:`\mathrm{span}(f_u, f_v)`),

.. math::  K' = \frac{\langle P f_{uu}, P f_{vv}\rangle - |P f_{uv}|^2}{\det G'}, \qquad K = n K'

(scaling a metric by :math:`1/n` scales its curvature by :math:`n`). With
:math:`\langle P a, P b\rangle = a \cdot b - (T^\top a)^\top G'^{-1} (T^\top b)` a point needs
the two first and three second directional derivatives of :math:`\Phi` along the plane, never the full
Jacobian: the plane's second-order jet pushed through the layers (:mod:`geomvol.geometry.jets`: the
value, two first- and three second-order streams, about 6 to 9 forward passes a point) where the jet
rules cover the network's operations, and otherwise nested forward-mode derivatives (a Jacobian-vector
product of a Jacobian-vector product, 9 streams, about twice that). :math:`K` is intrinsic: it does not
depend on the coordinates chosen on the plane (a rotation or rescaling of :math:`e_1, e_2`), and the scalar curvature of the
2-D metric is :math:`R = 2K`. Sign convention: a round sphere has :math:`K > 0`, a saddle
:math:`K < 0`.

Where :math:`f_u` and :math:`f_v` are (numerically) dependent, :math:`G'` is singular and :math:`K`
undefined: such points get NaN, and :attr:`Curvature.degenerate` says which. A piecewise-linear map
(ReLU) has second derivatives zero wherever it is differentiable, so its surface is flat on every
linear region (:math:`K = 0` almost everywhere); its curvature sits on the creases between regions,
a set of measure zero that sampled points do not hit, and the formula does not see it.
"""

from __future__ import annotations

import math
import sys
import warnings
from dataclasses import dataclass
from typing import Callable

import torch
from torch.func import jvp, vmap

from geomvol.geometry.jets import UnsupportedOperation, plane_jet_derivatives
from geomvol.geometry.volume import measure_feature_map

FeatureMap = Callable[[torch.Tensor], torch.Tensor]

# Tangents whose Gram determinant is below this fraction of |f_u|^2 |f_v|^2 (sin^2 of their angle) are dependent.
DEGENERATE_SIN2 = 1e-12
# Streams of a point in flight: the nested forward pass's primal, two first-order tangents (and their two
# copies differentiated again) and four second-order ones (the jets' 6 fit within them).
STREAMS = 9


@dataclass(frozen=True)
class Curvature:
    """Per point: the Gaussian curvature K of the induced metric (NaN where undefined), log10 of its area
    element sqrt(det G), and whether the plane's tangents are dependent there."""

    gaussian: torch.Tensor  # (B,)
    log10_area: torch.Tensor  # (B,)
    degenerate: torch.Tensor  # (B,) bool


def nested_derivatives(feature_map: FeatureMap, x: torch.Tensor, e1: torch.Tensor, e2: torch.Tensor):
    """f_u, f_v, f_uu, f_uv, f_vv at each point (B, n), in one nested forward-mode pass, for any feature map:
    the primal once, the two directions as first-order tangents, and the four second-order ones (uu, uv, vu,
    vv) vectorised (9 streams)."""
    batch = x.shape[0]
    directions = torch.stack([e1, e2])  # (2, B, *input)

    def flat(points: torch.Tensor) -> torch.Tensor:
        return feature_map(points).reshape(batch, -1)

    def firsts(points: torch.Tensor) -> torch.Tensor:  # (2, B, n): along e1 and e2
        return vmap(lambda direction: jvp(flat, (points,), (direction,))[1])(directions)

    with warnings.catch_warnings():
        # the first forward-mode use loads torch's decompositions through the deprecated torch.jit.script
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)
        first, second = vmap(lambda direction: jvp(firsts, (x,), (direction,)))(directions)
    # first[b, a] = f_a (the same for each b); second[b, a] = f_ab
    return first[0, 0], first[0, 1], second[0, 0], second[1, 0], second[1, 1]


# The reasons for a fallback to nested forward mode already said on stderr (each is said once a process).
_FALLBACKS_SAID: set[str] = set()


def derivatives(feature_map: FeatureMap, x: torch.Tensor, e1: torch.Tensor, e2: torch.Tensor):
    """f_u, f_v, f_uu, f_uv, f_vv at each point (B, n): from the plane's jet pushed through the layers
    (:mod:`geomvol.geometry.jets`, 6 streams) when the jet rules cover every operation of the feature map,
    else by :func:`nested_derivatives` (said once on stderr)."""
    try:
        return plane_jet_derivatives(feature_map, x, e1, e2)
    except UnsupportedOperation as error:
        if str(error) not in _FALLBACKS_SAID:
            _FALLBACKS_SAID.add(str(error))
            print(f"curvature: {error} is not covered by the jet rules; nested forward mode instead (about 2x "
                  f"the cost)", file=sys.stderr)
        return nested_derivatives(feature_map, x, e1, e2)


def points_per_chunk(n: int, activations: int, itemsize: int, budget: int | None, batch: int) -> int:
    """How many points to differentiate at once so that the streams in flight stay under ``budget`` bytes.

    Model of the memory (pessimistic, as :func:`geomvol.geometry.volume.plan_chunks`'s): a point holds
    its saved activations once per stream (``STREAMS`` of them), and its five derivatives of width ``n``.
    At least one point at a time.
    """
    if budget is None:
        return batch
    per_point = (STREAMS * activations + 5 * n) * itemsize
    return int(min(batch, max(1, budget // per_point)))


def gaussian_curvature(feature_map: FeatureMap, x: torch.Tensor, basis: torch.Tensor, normalise: bool = True,
                       memory_budget_bytes: int | None = None) -> Curvature:
    """Gaussian curvature of the metric ``feature_map`` induces on the plane spanned by ``basis`` at ``x``.

    Parameters
    ----------
    feature_map : callable, (B, *input) -> (B, *features), treating the points of a batch independently
        (a model in eval mode).
    x : tensor, shape=[B, *input], points of the plane.
    basis : tensor, shape=[d, 2], the plane's directions e1, e2 (any two independent ones: K does not
        depend on them; the area element is per unit of u and v).
    normalise : the metric G = T^T T / n (the pipeline's, n the feature width) rather than T^T T.
    memory_budget_bytes : points are differentiated in chunks whose streams fit in this many bytes
        (:func:`points_per_chunk`); default: all at once.

    Returns
    -------
    :class:`Curvature` with K (NaN where the tangents are dependent), log10 sqrt(det G) and the mask of
    dependent points. Computed in the dtype of ``x`` (float64 for exact answers).
    """
    (curvature,) = gaussian_curvature_of_parts(feature_map, x, basis, None, normalise, memory_budget_bytes)
    return curvature


def gaussian_curvature_of_parts(feature_map: FeatureMap, x: torch.Tensor, basis: torch.Tensor,
                                widths: list[int] | None, normalise: bool = True,
                                memory_budget_bytes: int | None = None) -> list[Curvature]:
    """The curvature of several feature maps at once: ``feature_map`` returns the features of P maps side by
    side, (B, n_1 + ... + n_P) (``widths``; None: one map), and part p's surface is its own, with its metric
    normalised by its own n_p. One pass of the derivatives serves all parts: through a network whose blocks
    share their trunk, what the deepest block alone costs. Other parameters as :func:`gaussian_curvature`."""
    n, activations = measure_feature_map(feature_map, x[:1])
    widths = [n] if widths is None else list(widths)
    if sum(widths) != n:
        raise ValueError(f"the parts' widths {widths} do not add up to the feature map's {n} features")
    chunk = points_per_chunk(n, activations, x.element_size(), memory_budget_bytes, x.shape[0])
    basis = basis.to(x)
    chunks = []
    for start in range(0, x.shape[0], chunk):
        points = x[start:start + chunk]
        e1, e2 = (basis[:, i].reshape(points.shape[1:]).expand_as(points) for i in range(2))
        point_derivatives = derivatives(feature_map, points, e1, e2)
        offset, parts = 0, []
        for width in widths:
            parts.append(_curvature(*(d[:, offset:offset + width] for d in point_derivatives), normalise=normalise))
            offset += width
        chunks.append(parts)
    return [Curvature(*(torch.cat([getattr(parts[p], name) for parts in chunks])
                        for name in ("gaussian", "log10_area", "degenerate")))
            for p in range(len(widths))]


def _curvature(f_u: torch.Tensor, f_v: torch.Tensor, f_uu: torch.Tensor, f_uv: torch.Tensor, f_vv: torch.Tensor,
               normalise: bool) -> Curvature:
    """K, the area element and the degenerate points from the derivatives (B, n) of one surface."""
    n = f_u.shape[1]

    def dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a * b).sum(dim=1)

    g11, g12, g22 = dot(f_u, f_u), dot(f_u, f_v), dot(f_v, f_v)
    det = g11 * g22 - g12 * g12
    degenerate = ~(det > DEGENERATE_SIN2 * g11 * g22)

    def normal_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """<P a, P b>: a . b minus the tangential parts, (T^T a)^T G'^-1 (T^T b)."""
        a1, a2, b1, b2 = dot(f_u, a), dot(f_v, a), dot(f_u, b), dot(f_v, b)
        return dot(a, b) - (g22 * a1 * b1 - g12 * (a1 * b2 + a2 * b1) + g11 * a2 * b2) / det

    gaussian = (normal_dot(f_uu, f_vv) - normal_dot(f_uv, f_uv)) / det
    if normalise:
        gaussian = gaussian * n
    gaussian = torch.where(degenerate, torch.full_like(gaussian, math.nan), gaussian)
    log10_area = 0.5 * torch.log10(det / (n * n if normalise else 1.0))
    return Curvature(gaussian, log10_area, degenerate)
