"""Gaussian curvature of the induced metric on a plane, against independent answers: the closed-form scalar
curvature of the shallow net (R = 2K), a round sphere, a saddle, a flat map; coordinate invariance; ReLU
nets; dependent tangents."""

import math

import pytest
import torch

from geomvol.geometry.analytic import shallow_scalar_curvature_2d
from geomvol.geometry.curvature import (
    derivatives, gaussian_curvature, gaussian_curvature_of_parts, nested_derivatives, points_per_chunk,
)
from geomvol.geometry.jets import UnsupportedOperation, plane_jet_derivatives
from geomvol.models import build_model, feature_map
from geomvol.train.checkpoint import load_checkpoint

F64 = torch.float64
EYE2 = torch.eye(2, dtype=F64)


def sphere(radius: float):
    """The chart (u, v) -> radius (sin u cos v, sin u sin v, cos u) of a round sphere, on a batch (B, 2)."""
    def chart(x: torch.Tensor) -> torch.Tensor:
        u, v = x[:, 0], x[:, 1]
        return radius * torch.stack([u.sin() * v.cos(), u.sin() * v.sin(), u.cos()], dim=1)
    return chart


def test_a_round_sphere_has_curvature_one_over_r_squared():
    points = torch.tensor([[0.4, 0.1], [1.0, 2.0], [2.5, -1.0], [math.pi / 2, 0.0]], dtype=F64)
    for radius in (0.5, 1.0, 3.0):
        curvature = gaussian_curvature(sphere(radius), points, EYE2, normalise=False)
        torch.testing.assert_close(curvature.gaussian, torch.full((4,), 1 / radius**2, dtype=F64), rtol=1e-12, atol=0)
        # the area element of the chart: r^2 sin u
        torch.testing.assert_close(curvature.log10_area, torch.log10(radius**2 * points[:, 0].sin()), rtol=1e-12, atol=0)
        # normalised by the feature width n = 3, the metric G = G'/3 has K = 3 / r^2
        normalised = gaussian_curvature(sphere(radius), points, EYE2)
        torch.testing.assert_close(normalised.gaussian, torch.full((4,), 3 / radius**2, dtype=F64), rtol=1e-12, atol=0)


def test_a_saddle_has_negative_curvature_and_a_flat_map_none():
    saddle = gaussian_curvature(lambda x: torch.stack([x[:, 0], x[:, 1], x[:, 0] ** 2 - x[:, 1] ** 2], dim=1),
                                torch.zeros(1, 2, dtype=F64), EYE2, normalise=False)
    assert saddle.gaussian.item() == pytest.approx(-4.0, rel=1e-14)  # (z_uu z_vv - z_uv^2) / (1 + |grad z|^2)^2
    matrix = torch.randn(5, 3, dtype=F64, generator=torch.Generator().manual_seed(0))
    flat = gaussian_curvature(lambda x: x @ matrix.T, torch.randn(6, 3, dtype=F64),
                              torch.randn(3, 2, dtype=F64, generator=torch.Generator().manual_seed(1)))
    assert flat.gaussian.abs().max().item() < 1e-12


def test_the_sinusoid_net_has_half_its_closed_form_scalar_curvature(trained):
    """The sinusoid's plane is its whole input space: K at trained weights equals R / 2 of the closed form
    (itself checked against Brioschi's formula) to 1e-8."""
    state = load_checkpoint(trained["checkpoints"][-1])
    model = build_model(state["model_spec"]).double().eval().requires_grad_(False)
    model.load_state_dict(state["model"])
    weight, bias = model.hidden_layer.weight, model.hidden_layer.bias
    x = torch.cartesian_prod(*(torch.linspace(-1.5, 1.5, 9, dtype=F64),) * 2)
    curvature = gaussian_curvature(model.hidden, x, EYE2, memory_budget_bytes=30_000)  # chunks of a few points
    closed = shallow_scalar_curvature_2d(weight, bias, torch.sigmoid, x) / 2
    assert (curvature.gaussian - closed).abs().max().item() <= 1e-8 * closed.abs().max().item()
    assert closed.abs().max().item() > 1e-3  # a curved surface, not a trivially flat one


def test_chunks_of_points_fit_the_memory_budget():
    """(9 streams x 100 activations + 5 x 10 features) x 8 bytes = 7600 bytes a point."""
    assert points_per_chunk(10, 100, 8, 76_000, batch=50) == 10
    assert points_per_chunk(10, 100, 8, 75_999, batch=50) == 9
    assert points_per_chunk(10, 100, 8, 1, batch=50) == 1
    assert points_per_chunk(10, 100, 8, 10**9, batch=50) == 50
    assert points_per_chunk(10, 100, 8, None, batch=50) == 50


def test_curvature_does_not_depend_on_the_coordinates_of_the_plane(trained):
    state = load_checkpoint(trained["checkpoints"][-1])
    model = build_model(state["model_spec"]).double().eval().requires_grad_(False)
    model.load_state_dict(state["model"])
    x = torch.randn(12, 2, dtype=F64, generator=torch.Generator().manual_seed(2))
    reference = gaussian_curvature(model.hidden, x, EYE2)
    angle = 0.7
    rotated = torch.tensor([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]], dtype=F64)
    skewed = torch.tensor([[2.0, 0.5], [-0.3, 0.25]], dtype=F64)  # not orthonormal: another chart of the plane
    for basis in (rotated, 3.0 * rotated, skewed):
        other = gaussian_curvature(model.hidden, x, basis)
        torch.testing.assert_close(other.gaussian, reference.gaussian, rtol=1e-9, atol=1e-12)
        # the area element scales with the chart: |det basis| per unit of u and v
        torch.testing.assert_close(other.log10_area - reference.log10_area,
                                   torch.full((12,), math.log10(abs(torch.linalg.det(basis).item())), dtype=F64),
                                   rtol=0, atol=1e-10)


def test_a_relu_net_is_flat_on_its_linear_regions():
    generator = torch.Generator().manual_seed(3)
    net = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 8), torch.nn.ReLU()).double()
    x = torch.randn(10, 4, dtype=F64, generator=generator)
    basis = torch.linalg.qr(torch.randn(4, 2, dtype=F64, generator=generator)).Q
    curvature = gaussian_curvature(net.requires_grad_(False), x, basis)
    finite = ~curvature.degenerate
    assert finite.sum() >= 8  # most points see two independent directions
    assert torch.all(curvature.gaussian[finite] == 0)


def test_dependent_tangents_give_nan_and_say_so():
    def collapses(x: torch.Tensor) -> torch.Tensor:  # forgets x2: f_v = 0
        return torch.stack([x[:, 0], x[:, 0] ** 2, x[:, 0] ** 3], dim=1)

    curvature = gaussian_curvature(collapses, torch.randn(3, 2, dtype=F64), EYE2)
    assert curvature.degenerate.all() and torch.isnan(curvature.gaussian).all()


def test_blocks_measured_together_have_each_their_own_curvature():
    """The ResNet's blocks side by side, from one nested pass, give each block the curvature it has alone."""
    torch.manual_seed(0)
    model = build_model({"name": "resnet34", "activation": "gelu", "input_shape": [3, 32, 32], "n_classes": 10})
    model = model.double().eval().requires_grad_(False)
    windows = {"block1": (16, 8), "block2": (8, 8), "block3": (8, 4), "block4": (4, 4)}
    names = ["block1", "block3"]
    x = torch.randn(2, 3, 32, 32, dtype=F64, generator=torch.Generator().manual_seed(0))
    basis = torch.linalg.qr(torch.randn(3 * 32 * 32, 2, dtype=F64, generator=torch.Generator().manual_seed(1))).Q
    parts = gaussian_curvature_of_parts(model.blocks_together(names, windows), x, basis, [512, 512])
    for name, part in zip(names, parts):
        alone = gaussian_curvature(feature_map(model, name, windows), x, basis)
        torch.testing.assert_close(part.gaussian, alone.gaussian, rtol=1e-9, atol=0)
        torch.testing.assert_close(part.log10_area, alone.log10_area, rtol=1e-12, atol=0)
    with pytest.raises(ValueError, match="do not add up"):
        gaussian_curvature_of_parts(model.blocks_together(names, windows), x, basis, [512, 100])


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "erf", "gelu", "softplus", "relu"])
def test_jets_give_the_nested_forward_derivatives_of_a_shallow_net(activation):
    model = build_model({"name": "shallow", "width": 40, "activation": activation, "weight_std": 1.0,
                         "scale_readout_bias": True, "input_shape": [1, 6, 6], "n_classes": 3})
    model = model.double().eval().requires_grad_(False)
    x = torch.rand(5, 1, 6, 6, dtype=F64, generator=torch.Generator().manual_seed(0))
    e1, e2 = torch.randn(2, 1, 1, 6, 6, dtype=F64, generator=torch.Generator().manual_seed(1)).expand(2, 5, 1, 6, 6)
    for jet, nested in zip(plane_jet_derivatives(model.hidden, x, e1, e2), nested_derivatives(model.hidden, x, e1, e2)):
        torch.testing.assert_close(jet, nested, rtol=1e-12, atol=1e-12)


def test_jets_give_the_nested_forward_derivatives_of_resnet_blocks():
    """Convolutions, eval-mode batch norm, GELU, residual sums, pooling and the blocks side by side."""
    torch.manual_seed(0)
    model = build_model({"name": "resnet34", "activation": "gelu", "input_shape": [3, 32, 32], "n_classes": 10})
    model = model.double().eval().requires_grad_(False)
    windows = {"block1": (16, 8), "block2": (8, 8), "block3": (8, 4), "block4": (4, 4)}
    together = model.blocks_together(["block1", "block2", "block3", "block4", "pooled"], windows)
    x = torch.randn(2, 3, 32, 32, dtype=F64, generator=torch.Generator().manual_seed(0))
    e1, e2 = torch.randn(2, 1, 3, 32, 32, dtype=F64, generator=torch.Generator().manual_seed(1)).expand(2, 2, 3, 32, 32)
    for jet, nested in zip(plane_jet_derivatives(together, x, e1, e2), nested_derivatives(together, x, e1, e2)):
        torch.testing.assert_close(jet, nested, rtol=1e-10, atol=1e-10 * nested.abs().max().item())


def test_an_operation_the_jets_do_not_cover_falls_back_to_nested_forward_mode(capsys):
    def squares(x):  # a product of two jets
        return torch.cat([x * x, torch.sin(x)], dim=1)

    x = torch.rand(4, 2, dtype=F64, generator=torch.Generator().manual_seed(0))
    e1, e2 = EYE2.T[:, None, :].expand(2, 4, 2)
    with pytest.raises(UnsupportedOperation):
        plane_jet_derivatives(squares, x, e1, e2)
    for got, nested in zip(derivatives(squares, x, e1, e2), nested_derivatives(squares, x, e1, e2)):
        torch.testing.assert_close(got, nested, rtol=0, atol=0)
    assert "nested forward mode instead" in capsys.readouterr().err
    training = build_model({"name": "resnet34", "activation": "gelu", "input_shape": [3, 32, 32], "n_classes": 10})
    with pytest.raises(UnsupportedOperation, match="batch statistics"):
        plane_jet_derivatives(feature_map(training.double().train(), "block1"), torch.randn(2, 3, 32, 32, dtype=F64),
                              *torch.randn(2, 2, 3, 32, 32, dtype=F64))


def test_the_jets_refuse_to_mix_the_rows_of_different_points():
    x = torch.rand(4, 3, dtype=F64)
    e1, e2 = torch.rand(2, 4, 3, dtype=F64)
    for mixing in (lambda t: t.mean(), lambda t: t.sum(dim=0, keepdim=True), lambda t: torch.flatten(t),
                   lambda t: t.reshape(2, -1), lambda t: torch.cat([t, t], dim=0), lambda t: t.T.sum(dim=1),
                   lambda t: t.data * 2):
        with pytest.raises(UnsupportedOperation):
            plane_jet_derivatives(mixing, x, e1, e2)
