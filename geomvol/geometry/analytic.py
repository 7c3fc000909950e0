r"""Closed forms for the single-hidden-layer feature map, and curvature by autodiff.

The shallow feature map of the seed paper, with :math:`n` units,

.. math::  \Phi_j(x) = \frac{1}{\sqrt n}\,\phi(z_j), \qquad z_j = w_j \cdot x + b_j ,

has Jacobian :math:`\partial_\mu \Phi_j = \phi'(z_j) w_{j\mu} / \sqrt n`, so its
pullback metric is

.. math::  g_{\mu\nu}(x) = \frac{1}{n} \sum_j \phi'(z_j)^2\, w_{j\mu} w_{j\nu}
           = \frac{1}{n} \big(W^\top D^2 W\big)_{\mu\nu}, \qquad D = \mathrm{diag}(\phi'(z)),

the pipeline's :math:`g = J^\top J / n` for the 'hidden' map :math:`\phi(Wx + b)`.
By the Cauchy-Binet formula its determinant is a sum over the
:math:`d`-subsets :math:`S` of units of squared minors :math:`M_S = \det W_S`
(seed eq. 3, whose sum over ordered tuples carries the :math:`1/d!`):

.. math::  \det g = \frac{1}{n^d} \sum_{|S| = d} M_S^2 \prod_{j \in S} \phi'(z_j)^2 .

Shapes: ``weight`` (n, d), ``bias`` (n,), ``x`` (B, d); metrics (B, d, d).
Index convention of curvature: :math:`R^\rho{}_{\sigma\mu\nu} =
\partial_\mu \Gamma^\rho_{\nu\sigma} - \partial_\nu \Gamma^\rho_{\mu\sigma}
+ \Gamma^\rho_{\mu\lambda}\Gamma^\lambda_{\nu\sigma} - \Gamma^\rho_{\nu\lambda}\Gamma^\lambda_{\mu\sigma}`,
:math:`R_{\sigma\nu} = R^\rho{}_{\sigma\rho\nu}`, :math:`R = g^{\sigma\nu} R_{\sigma\nu}`;
a round sphere of radius :math:`r` has :math:`R = 2/r^2`.
"""

from __future__ import annotations

import itertools
import math
from typing import Callable

import torch
from torch.func import jacfwd, vmap

Activation = Callable[[torch.Tensor], torch.Tensor]


def _derivatives(phi: Activation, z: torch.Tensor, order: int) -> list[torch.Tensor]:
    """phi', phi'', ... up to ``order`` at z (elementwise), by nested autodiff of phi alone."""
    scalar = lambda t: phi(t)  # noqa: E731
    out = []
    for _ in range(order):
        scalar = jacfwd(scalar)
        out.append(vmap(scalar)(z.reshape(-1)).reshape(z.shape))
    return out


def shallow_metric(weight: torch.Tensor, bias: torch.Tensor, phi: Activation, x: torch.Tensor) -> torch.Tensor:
    r""":math:`g_{\mu\nu} = \frac1n \sum_j \phi'(z_j)^2 w_{j\mu} w_{j\nu}`, shape (B, d, d)."""
    (dphi,) = _derivatives(phi, x @ weight.T + bias, 1)  # (B, n)
    return torch.einsum("jm,bj,jv->bmv", weight, dphi**2, weight) / weight.shape[0]


def shallow_log_det_metric(weight: torch.Tensor, bias: torch.Tensor, phi: Activation, x: torch.Tensor) -> torch.Tensor:
    r""":math:`\log \det g` from the metric matrix (small d; squares J's condition number), shape (B,)."""
    return torch.logdet(shallow_metric(weight, bias, phi, x))


def shallow_det_metric_minors(weight: torch.Tensor, bias: torch.Tensor, phi: Activation, x: torch.Tensor) -> torch.Tensor:
    r""":math:`\det g = n^{-d} \sum_{|S|=d} (\det W_S)^2 \prod_{j\in S} \phi'(z_j)^2` (Cauchy-Binet), shape (B,).

    Sums over all :math:`\binom{n}{d}` subsets: for small networks only.
    """
    n, d = weight.shape
    (dphi,) = _derivatives(phi, x @ weight.T + bias, 1)  # (B, n)
    subsets = torch.tensor(list(itertools.combinations(range(n), d)), device=weight.device)  # (S, d)
    minors = torch.linalg.det(weight[subsets])  # (S,)
    return (minors**2 * (dphi[:, subsets] ** 2).prod(dim=-1)).sum(dim=-1) / n**d


def infinite_width_metric_erf(x: torch.Tensor, sigma_w: float = 1.0, sigma_b: float = 1.0) -> torch.Tensor:
    r"""The :math:`n \to \infty` metric for :math:`\phi = \mathrm{erf}`, :math:`w \sim N(0, \sigma_w^2 I_d)`, :math:`b \sim N(0, \sigma_b^2)`.

    Derivation. By the law of large numbers
    :math:`g_{\mu\nu} \to E[\phi'(z)^2 w_\mu w_\nu]` with
    :math:`\phi'(z)^2 = \frac{4}{\pi} e^{-2z^2}`. Write :math:`u = (w, b)`,
    Gaussian with covariance :math:`\Sigma = \mathrm{diag}(\sigma_w^2 I_d, \sigma_b^2)`,
    and :math:`a = (x, 1)`, so :math:`z = a \cdot u`. The factor
    :math:`e^{-2 (a\cdot u)^2}` turns the density of :math:`u` into an
    unnormalised Gaussian with :math:`\Sigma'^{-1} = \Sigma^{-1} + 4 a a^\top`,
    whose mass is :math:`\sqrt{\det\Sigma'/\det\Sigma} = (1 + 4s)^{-1/2}`,
    :math:`s = a^\top \Sigma a = \sigma_w^2 |x|^2 + \sigma_b^2` (determinant
    lemma), and whose covariance is, by Sherman-Morrison,
    :math:`\Sigma' = \Sigma - 4\Sigma a a^\top \Sigma / (1 + 4s)`. Its
    :math:`w`-block gives

    .. math::  g^\infty(x) = \frac{4}{\pi} (1 + 4s)^{-1/2}
               \Big(\sigma_w^2 I_d - \frac{4 \sigma_w^4\, x x^\top}{1 + 4s}\Big).

    Shape (B, d, d).
    """
    s = sigma_w**2 * (x**2).sum(dim=-1) + sigma_b**2  # (B,)
    eye = torch.eye(x.shape[-1], dtype=x.dtype, device=x.device)
    inner = sigma_w**2 * eye - 4 * sigma_w**4 * x[:, :, None] * x[:, None, :] / (1 + 4 * s)[:, None, None]
    return (4 / math.pi) * (1 + 4 * s)[:, None, None] ** -0.5 * inner


def infinite_width_log_volume_erf(x: torch.Tensor, sigma_w: float = 1.0, sigma_b: float = 1.0) -> torch.Tensor:
    r"""Natural log of :math:`\sqrt{\det g^\infty}`, shape (B,).

    From :func:`infinite_width_metric_erf`, with :math:`\det(I - c\,x x^\top) = 1 - c|x|^2`
    and :math:`1 + 4s - 4\sigma_w^2|x|^2 = 1 + 4\sigma_b^2`:

    .. math::  \det g^\infty = \Big(\frac{4\sigma_w^2}{\pi}\Big)^d
               \frac{1 + 4\sigma_b^2}{(1 + 4\sigma_w^2 |x|^2 + 4\sigma_b^2)^{d/2 + 1}} .

    The volume element depends on :math:`|x|` only and falls off as
    :math:`|x|^{-(d/2+1)}`: at infinite width the untrained map magnifies the
    origin most and has no structure tied to any data.
    """
    d = x.shape[-1]
    radius2 = (x**2).sum(dim=-1)
    log_det = (
        d * math.log(4 * sigma_w**2 / math.pi)
        + math.log(1 + 4 * sigma_b**2)
        - (d / 2 + 1) * torch.log(1 + 4 * sigma_w**2 * radius2 + 4 * sigma_b**2)
    )
    return 0.5 * log_det


def pullback_metric(feature_map: Callable[[torch.Tensor], torch.Tensor], normalise: bool = True):
    r"""The metric :math:`g(x) = J^\top J / n` (or :math:`J^\top J` with ``normalise=False``) as a function (d,) -> (d, d).

    ``feature_map`` maps a single point (d,) to (n,). Built by forward-mode
    autodiff, so it can be differentiated again (for curvature).
    """

    def metric(x: torch.Tensor) -> torch.Tensor:
        jac = jacfwd(feature_map)(x)  # (n, d)
        g = jac.T @ jac
        return g / jac.shape[0] if normalise else g

    return metric


def christoffel(metric: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    r""":math:`\Gamma^k_{ij} = \tfrac12 g^{kl}(\partial_i g_{jl} + \partial_j g_{il} - \partial_l g_{ij})` at one point, shape (d, d, d) [k, i, j]."""
    g_inv = torch.linalg.inv(metric(x))
    dg = jacfwd(metric)(x)  # [j, l, i] = d_i g_jl
    return 0.5 * (
        torch.einsum("kl,jli->kij", g_inv, dg)
        + torch.einsum("kl,ilj->kij", g_inv, dg)
        - torch.einsum("kl,ijl->kij", g_inv, dg)
    )


def scalar_curvature(metric: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    r"""Scalar curvature :math:`R` of ``metric`` (a function (d,) -> (d, d)) at points x (B, d), shape (B,).

    From the Christoffel symbols and their derivatives (see the module
    docstring for the index convention), all by forward-mode autodiff.
    """

    def at(point: torch.Tensor) -> torch.Tensor:
        gamma = christoffel(metric, point)  # [r, m, s]
        dgamma = jacfwd(lambda p: christoffel(metric, p))(point)  # [r, n, s, m] = d_m Gamma^r_ns
        riemann = (
            torch.einsum("rnsm->rsmn", dgamma)
            - torch.einsum("rmsn->rsmn", dgamma)
            + torch.einsum("rml,lns->rsmn", gamma, gamma)
            - torch.einsum("rnl,lms->rsmn", gamma, gamma)
        )  # [rho, sigma, mu, nu]
        ricci = torch.einsum("rsrn->sn", riemann)
        return torch.einsum("sn,sn->", torch.linalg.inv(metric(point)), ricci)

    return torch.stack([at(point) for point in x])


def shallow_scalar_curvature_2d(weight: torch.Tensor, bias: torch.Tensor, phi: Activation, x: torch.Tensor) -> torch.Tensor:
    r"""Closed-form scalar curvature of the shallow feature map for d = 2, shape (B,).

    The image of :math:`\Phi` is a surface in :math:`\mathbb{R}^n`; by Gauss's
    equation :math:`R = 2K` with

    .. math::  K \det g = \langle \Phi_{11}^\perp, \Phi_{22}^\perp \rangle - |\Phi_{12}^\perp|^2 ,
               \qquad \Phi_{\mu\nu}^\perp = \Phi_{\mu\nu} - \Phi_\alpha g^{\alpha\beta} \langle \Phi_\beta, \Phi_{\mu\nu} \rangle .

    For the shallow map :math:`\Phi_{j,\mu} = \phi'_j w_{j\mu}/\sqrt n` and
    :math:`\Phi_{j,\mu\nu} = \phi''_j w_{j\mu} w_{j\nu}/\sqrt n`. The
    second derivatives are rank one per unit, so
    :math:`\langle \Phi_{11}, \Phi_{22} \rangle = |\Phi_{12}|^2 = \frac1n \sum_j \phi''^2_j w_{j1}^2 w_{j2}^2`
    cancel, and only their tangential parts remain. With
    :math:`B_{\mu\nu\alpha} = \langle \Phi_{\mu\nu}, \Phi_\alpha \rangle
    = \frac1n \sum_j \phi'_j \phi''_j\, w_{j\mu} w_{j\nu} w_{j\alpha}`,

    .. math::  R = \frac{2}{\det g} \Big( B_{12\alpha}\, g^{\alpha\beta} B_{12\beta}
               - B_{11\alpha}\, g^{\alpha\beta} B_{22\beta} \Big).
    """
    n = weight.shape[0]
    dphi, ddphi = _derivatives(phi, x @ weight.T + bias, 2)  # (B, n) each
    g = torch.einsum("jm,bj,jv->bmv", weight, dphi**2, weight) / n
    g_inv = torch.linalg.inv(g)
    w1, w2 = weight[:, 0], weight[:, 1]

    def b(wm: torch.Tensor, wn: torch.Tensor) -> torch.Tensor:  # (B, 2)
        return torch.einsum("bj,j,ja->ba", dphi * ddphi, wm * wn, weight) / n

    b11, b22, b12 = b(w1, w1), b(w2, w2), b(w1, w2)
    tangential = torch.einsum("ba,bac,bc->b", b12, g_inv, b12) - torch.einsum("ba,bac,bc->b", b11, g_inv, b22)
    return 2 * tangential / torch.linalg.det(g)
