import pytest
import torch
import torch.nn.functional as F
from torch.func import jvp, vmap

from helpers import conv_batchnorm_net, flops
from geomvol.geometry import subspace_jacobian
from geomvol.geometry.tangents import constant_parameter_tangents
from geomvol.models import feature_map
from geomvol.models.resnet import CifarResNet34


def plain_jvps(fn, x, basis):
    """J V by torch.func without the constant-parameter rules."""
    return vmap(lambda direction: jvp(fn, (x,), (direction.reshape(x.shape[1:]).expand_as(x),))[1], in_dims=1, out_dims=-1)(basis)


def reference_jvps(fn, x, basis):
    """J V by the autograd.functional double-backward route, one direction at a time."""
    columns = [torch.autograd.functional.jvp(fn, x, basis[:, k].reshape(x.shape[1:]).expand_as(x))[1] for k in range(basis.shape[1])]
    return torch.stack(columns, dim=-1)


class FunctionalLayers(torch.nn.Module):
    """Calls the functional forms with keyword and positional options, 1-d, 2-d and 3-d."""

    def __init__(self):
        super().__init__()
        self.w1 = torch.nn.Parameter(torch.randn(4, 1, 3))
        self.w2 = torch.nn.Parameter(torch.randn(6, 2, 3, 3))
        self.b2 = torch.nn.Parameter(torch.randn(6))
        self.w3 = torch.nn.Parameter(torch.randn(2, 6, 1, 1, 1))
        self.linear = torch.nn.Linear(2 * 3 * 4 * 4, 5, bias=False)
        self.norm = torch.nn.BatchNorm1d(5, affine=False)

    def forward(self, x):  # (B, 2, 8, 8)
        rows = F.conv1d(x.flatten(2), self.w1, padding=1, groups=2).reshape(x.shape[0], 4, 8, 8)
        planes = F.conv2d(rows[:, :2], self.w2, self.b2, 2, 1, 1, 1)  # (B, 6, 4, 4)
        volume = F.conv3d(planes.reshape(x.shape[0], 6, 1, 4, 4).expand(-1, -1, 3, -1, -1), self.w3, bias=None)
        return self.norm(self.linear(torch.tanh(volume).flatten(1)))


def test_functional_layers_with_keyword_options_match_autograd():
    torch.manual_seed(0)
    net = FunctionalLayers().double()
    net.norm(torch.randn(16, 5, dtype=torch.float64))  # running statistics
    net.eval().requires_grad_(False)
    x = torch.randn(3, 2, 8, 8, dtype=torch.float64)
    basis = torch.randn(128, 2, dtype=torch.float64)
    expected = reference_jvps(net, x, basis)
    torch.testing.assert_close(subspace_jacobian(net, x, basis), expected.reshape(3, 5, 2), rtol=1e-12, atol=1e-12)


def test_rules_skip_the_parameter_tangents():
    """Conv, batch norm and linear layers: J V for m directions costs (1 + m) forward passes, not (2 + m)."""
    net = conv_batchnorm_net()
    x = torch.randn(4, 3, 16, 16, dtype=torch.float64)
    basis = torch.randn(768, 3, dtype=torch.float64)

    forward, _ = flops(lambda: net(x))
    with_rules, fast = flops(lambda: subspace_jacobian(net, x, basis))
    without_rules, plain = flops(lambda: plain_jvps(net, x, basis))
    assert with_rules == 4 * forward
    assert without_rules == 5 * forward
    torch.testing.assert_close(fast, plain.reshape(4, 10, 3), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", ["input-dependent weight", "batch-statistics batch norm"])
def test_layers_outside_the_rules_keep_their_own_tangents(case):
    torch.manual_seed(0)
    weight = torch.randn(5, 6, dtype=torch.float64)
    if case == "input-dependent weight":
        def fn(x):  # the weight carries a tangent: W' = W * mean(x)
            return F.linear(x, weight * x.mean(), torch.ones(5, dtype=torch.float64))
    else:
        norm = torch.nn.BatchNorm1d(6, track_running_stats=False).double()  # normalises by the batch

        def fn(x):
            return F.linear(norm(x), weight)
    x = torch.randn(4, 6, dtype=torch.float64)
    basis = torch.randn(6, 2, dtype=torch.float64)
    with constant_parameter_tangents():
        fast = plain_jvps(fn, x, basis)
    torch.testing.assert_close(fast, reference_jvps(fn, x, basis), rtol=1e-12, atol=1e-12)


def test_inside_an_outer_vmap_over_weights_and_constant_inputs():
    """An ensemble vmapped over its weights (wrapped parameters: no rule), and a constant input
    batched by the outer vmap but carrying no tangent (a rule with a zero tangent)."""
    torch.manual_seed(0)
    weights = torch.randn(3, 5, 4, dtype=torch.float64)
    shift_weight = torch.randn(5, 3, dtype=torch.float64)
    shifts = torch.randn(3, 3, dtype=torch.float64)
    x = torch.randn(2, 4, dtype=torch.float64)
    basis = torch.randn(4, 2, dtype=torch.float64)

    def member(weight, shift):
        return lambda points: torch.tanh(F.linear(points, weight) + F.linear(shift, shift_weight))

    ensemble = vmap(lambda weight, shift: subspace_jacobian(member(weight, shift), x, basis))(weights, shifts)
    expected = torch.stack([reference_jvps(member(w, s), x, basis) for w, s in zip(weights, shifts)])
    torch.testing.assert_close(ensemble, expected, rtol=1e-12, atol=1e-12)


def test_cifar_resnet_feature_maps_match_torch_func():
    """Every feature map of the ResNet34-GELU (BatchNorm with running statistics) under the rules."""
    torch.manual_seed(0)
    model = CifarResNet34()
    with torch.no_grad():
        model(torch.randn(8, 3, 32, 32))  # running statistics away from their initial values
    model = model.double().eval().requires_grad_(False)
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    basis = torch.randn(3072, 2, dtype=torch.float64)
    for name, width in [("block1", 64), ("block2", 128), ("block3", 256), ("block4", 512), ("pooled", 512)]:
        expected = plain_jvps(feature_map(model, name), x, basis)
        torch.testing.assert_close(subspace_jacobian(feature_map(model, name), x, basis), expected.reshape(2, width, 2), rtol=1e-12, atol=1e-12)
