import math

import torch

from geomvol.geometry import log_volume
from geomvol.geometry.analytic import (
    infinite_width_log_volume_erf,
    infinite_width_metric_erf,
    pullback_metric,
    scalar_curvature,
    shallow_det_metric_minors,
    shallow_log_det_metric,
    shallow_metric,
    shallow_scalar_curvature_2d,
)

F64 = torch.float64


def network(n, d, seed):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=generator, dtype=F64), torch.randn(n, generator=generator, dtype=F64)


def test_cauchy_binet_sum_of_minors_equals_the_determinant():
    for n, d in [(5, 2), (7, 3), (6, 4)]:
        weight, bias = network(n, d, seed=n * d)
        x = 0.5 * torch.randn(4, d, dtype=F64)
        direct = torch.exp(shallow_log_det_metric(weight, bias, torch.tanh, x))
        torch.testing.assert_close(shallow_det_metric_minors(weight, bias, torch.tanh, x), direct, rtol=1e-10, atol=0)


def test_closed_form_metric_equals_autodiff_engine():
    weight, bias = network(40, 3, seed=3)
    x = 0.5 * torch.randn(6, 3, dtype=F64)
    hidden = lambda x: torch.erf(x @ weight.T + bias)  # noqa: E731
    expected = 0.5 * shallow_log_det_metric(weight, bias, torch.erf, x)
    torch.testing.assert_close(log_volume(hidden, x), expected, rtol=1e-10, atol=1e-12)
    jac = torch.func.vmap(torch.func.jacfwd(lambda p: torch.erf(weight @ p + bias)))(x)
    torch.testing.assert_close(shallow_metric(weight, bias, torch.erf, x), jac.mT @ jac / 40, rtol=1e-12, atol=1e-14)


def test_infinite_width_metric_and_volume_are_consistent():
    x = torch.tensor([[0.0, 0.0], [0.3, -0.5], [2.0, 1.0]], dtype=F64)
    for sigma_w, sigma_b in [(1.0, 1.0), (0.5, 2.0)]:
        from_metric = 0.5 * torch.logdet(infinite_width_metric_erf(x, sigma_w, sigma_b))
        torch.testing.assert_close(infinite_width_log_volume_erf(x, sigma_w, sigma_b), from_metric, rtol=1e-12, atol=1e-14)
    # at the origin g = (4 / pi) (1 + 4 sigma_b^2)^(-1/2) sigma_w^2 I
    torch.testing.assert_close(infinite_width_metric_erf(x[:1])[0], 4 / math.pi / math.sqrt(5) * torch.eye(2, dtype=F64))


def test_finite_width_approaches_infinite_width_as_one_over_sqrt_n():
    """Monte Carlo over 300 networks per width: the RMS error of log sqrt(det g) falls like n^(-1/2)."""
    generator = torch.Generator().manual_seed(0)
    x = torch.tensor([0.3, -0.5], dtype=F64)
    exact = infinite_width_log_volume_erf(x[None])[0]
    widths, rms = [100, 400, 1600, 6400], []
    for n in widths:
        weight = torch.randn(300, n, 2, generator=generator, dtype=F64)
        bias = torch.randn(300, n, generator=generator, dtype=F64)
        dphi2 = (4 / math.pi) * torch.exp(-2 * (weight @ x + bias) ** 2)  # erf'(z)^2
        metric = torch.einsum("rjm,rj,rjv->rmv", weight, dphi2, weight) / n
        rms.append((0.5 * torch.logdet(metric) - exact).pow(2).mean().sqrt().item())
    slope = (math.log(rms[-1]) - math.log(rms[0])) / (math.log(widths[-1]) - math.log(widths[0]))
    assert -0.6 < slope < -0.4, (rms, slope)
    assert rms[-1] < 0.03


def test_sphere_has_scalar_curvature_two_over_r_squared():
    for radius in (0.5, 2.0):
        def chart(p, r=radius):
            theta, phi = p[0], p[1]
            return r * torch.stack([torch.sin(theta) * torch.cos(phi), torch.sin(theta) * torch.sin(phi), torch.cos(theta)])

        points = torch.tensor([[1.0, 0.3], [0.5, 2.0], [2.2, -1.0]], dtype=F64)
        curvature = scalar_curvature(pullback_metric(chart, normalise=False), points)
        torch.testing.assert_close(curvature, torch.full((3,), 2 / radius**2, dtype=F64), rtol=1e-10, atol=0)
        # g / n scales the curvature by n = 3
        scaled = scalar_curvature(pullback_metric(chart, normalise=True), points)
        torch.testing.assert_close(scaled, torch.full((3,), 6 / radius**2, dtype=F64), rtol=1e-10, atol=0)


def test_linear_map_is_flat():
    matrix = torch.randn(5, 3, dtype=F64, generator=torch.Generator().manual_seed(1))
    curvature = scalar_curvature(pullback_metric(lambda p: matrix @ p), torch.randn(4, 3, dtype=F64))
    torch.testing.assert_close(curvature, torch.zeros(4, dtype=F64), rtol=0, atol=1e-10)


def test_shallow_curvature_closed_form_equals_autodiff():
    for n, phi in [(6, torch.sigmoid), (30, torch.erf), (200, torch.tanh)]:
        weight, bias = network(n, 2, seed=n)
        x = 0.7 * torch.randn(5, 2, dtype=F64, generator=torch.Generator().manual_seed(2))
        general = scalar_curvature(pullback_metric(lambda p: phi(weight @ p + bias)), x)
        closed = shallow_scalar_curvature_2d(weight, bias, phi, x)
        torch.testing.assert_close(closed, general, rtol=1e-9, atol=1e-12)
