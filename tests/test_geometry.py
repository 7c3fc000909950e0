import math

import pytest
import torch

from geomvol.geometry import jacobian, log_volume, log_volume_and_singular_values, plan_chunks, subspace_jacobian
from geomvol.geometry.analytic import shallow_det_metric_minors
from geomvol.geometry.volume import ChunkPlan, measure_feature_map
from geomvol.models import build_model
from geomvol.models.registry import model_spec


def shallow(width, d, activation="sigmoid", seed=0):
    torch.manual_seed(seed)
    spec = model_spec({"name": "shallow", "width": width, "activation": activation}, input_shape=[d], n_classes=2)
    return build_model(spec).double().eval().requires_grad_(False)


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "erf"])
@pytest.mark.parametrize(("width", "d"), [(250, 2), (7, 3), (20, 4), (5, 5), (12, 5)])
def test_shallow_network_matches_closed_form(width, d, activation):
    """Engine vs seed eq. 3, det g = n^-d sum_S det(W_S)^2 prod_{j in S} phi'(z_j)^2, to 1e-10 relative.

    The sum of squared minors has no cancellation, so it stays exact where the
    determinant of W^T D^2 W (condition number squared) would not.
    """
    model = shallow(width, d, activation, seed=width + d)
    x = torch.randn(17, d, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    weight, bias = model.hidden_layer.weight, model.hidden_layer.bias
    expected = 0.5 * torch.log(shallow_det_metric_minors(weight, bias, model.phi, x))
    torch.testing.assert_close(log_volume(model.hidden, x), expected, rtol=1e-10, atol=0)


def test_full_and_subspace_agree_on_a_spanning_basis():
    model = shallow(30, 3)
    x = torch.randn(8, 3, dtype=torch.float64)
    rotation, _ = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64))
    torch.testing.assert_close(log_volume(model.hidden, x, basis=rotation), log_volume(model.hidden, x), rtol=1e-10, atol=1e-12)


def test_subspace_metric_is_the_induced_metric():
    model = shallow(30, 4)
    x = torch.randn(6, 4, dtype=torch.float64)
    basis = torch.randn(4, 2, dtype=torch.float64)
    jac = jacobian(model.hidden, x)  # (B, n, d)
    induced = torch.einsum("dm,bnd,bne,ek->bmk", basis, jac, jac, basis) / 30
    torch.testing.assert_close(log_volume(model.hidden, x, basis=basis), 0.5 * torch.logdet(induced), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(subspace_jacobian(model.hidden, x, basis), jac @ basis)


def test_reverse_and_forward_mode_give_the_same_jacobian():
    # n < d takes reverse mode; check it against forward mode on the transposed problem's answer.
    weight = torch.randn(3, 10, dtype=torch.float64)
    x = torch.randn(4, 10, dtype=torch.float64)
    jac = jacobian(lambda x: torch.tanh(x @ weight.T), x)
    expected = (1 - torch.tanh(x @ weight.T) ** 2)[:, :, None] * weight[None]
    torch.testing.assert_close(jac, expected)


def test_pseudo_determinant_when_features_are_fewer_than_inputs():
    matrix = torch.randn(2, 5, dtype=torch.float64)
    x = torch.randn(3, 5, dtype=torch.float64)
    expected = 0.5 * torch.logdet(matrix @ matrix.T) - math.log(2)  # k = 2, n = 2: -(k/2) log n
    got, singular_values = log_volume_and_singular_values(lambda x: x @ matrix.T, x)
    torch.testing.assert_close(got, expected.expand(3))
    assert singular_values.shape == (3, 2)
    top1 = log_volume(lambda x: x @ matrix.T, x, top_k=1)
    torch.testing.assert_close(top1, (torch.log(torch.linalg.svdvals(matrix)[0]) - 0.5 * math.log(2)).expand(3))


def test_zero_singular_value_gives_minus_infinity():
    # The map ignores x2: J = [[1, 0], [2, 0], [cos x1, 0]] has an exactly zero singular value.
    x = torch.randn(4, 2, dtype=torch.float64)
    features = lambda x: torch.stack([x[:, 0], 2 * x[:, 0], torch.sin(x[:, 0])], dim=1)  # noqa: E731
    assert torch.all(torch.isneginf(log_volume(features, x)))
    assert torch.all(torch.isneginf(log_volume_and_singular_values(features, x)[0]))


def test_chunked_equals_unchunked():
    model = shallow(50, 2)
    x = torch.randn(37, 2, dtype=torch.float64)
    whole = log_volume(model.hidden, x)
    n, activations = measure_feature_map(model.hidden, x)
    assert n == 50
    assert activations == 50  # sigmoid saves its output; the linear layer saves only its (shared) weight
    plan = plan_chunks(50, 2, activations, 8, 20_000, 37)  # 2800 bytes a point: 7 points
    assert 1 < plan.points < 37 and plan.directions is None
    chunked = log_volume(model.hidden, x, memory_budget_bytes=20_000)
    torch.testing.assert_close(chunked, whole, rtol=1e-15, atol=0)


def test_direction_chunks_give_the_same_jacobian():
    weight = torch.randn(3, 10, dtype=torch.float64)
    x = torch.randn(4, 10, dtype=torch.float64)
    features = lambda x: torch.tanh(x @ weight.T)  # noqa: E731  (reverse mode: n = 3 < d = 10)
    torch.testing.assert_close(jacobian(features, x, directions_per_chunk=1), jacobian(features, x), rtol=0, atol=0)
    model = shallow(20, 6)  # forward mode
    torch.testing.assert_close(jacobian(model.hidden, x[:, :6], 4), jacobian(model.hidden, x[:, :6]), rtol=0, atol=0)


def test_plan_splits_directions_when_one_point_does_not_fit():
    # 512 features, 3072 inputs, 3e6 activation elements per point (a CIFAR ResNet34), float32, 1 GiB
    plan = plan_chunks(512, 3072, 3_000_000, 4, 2**30, 5)
    assert plan.points == 1
    assert plan.directions == (2**30 - 2 * 512 * 3072 * 4) // (3_000_000 * 4) - 1 == 87
    held = (1 + plan.directions) * 3_000_000 * 4 + 2 * 512 * 3072 * 4
    assert held <= 2**30
    # everything fits: all points, all directions
    assert plan_chunks(10, 2, 100, 8, 2**30, 7) == ChunkPlan(points=7, directions=None)
    # a tiny budget still makes progress, one direction at a time
    assert plan_chunks(512, 3072, 3_000_000, 4, 1, 5) == ChunkPlan(points=1, directions=1)


def test_qr_route_equals_singular_values_route():
    model = shallow(300, 4)
    x = torch.randn(9, 4, dtype=torch.float64)
    from_svd, singular_values = log_volume_and_singular_values(model.hidden, x)
    torch.testing.assert_close(log_volume(model.hidden, x), from_svd, rtol=1e-12, atol=1e-12)
    assert torch.all(singular_values[:, :-1] >= singular_values[:, 1:])


def test_eval_mode_batchnorm_network_under_vmap():
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.GELU(), torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten()
    )
    net(torch.randn(8, 3, 6, 6))  # give BatchNorm running statistics
    net = net.double().eval().requires_grad_(False)
    x = torch.randn(3, 3, 6, 6, dtype=torch.float64)
    basis = torch.randn(108, 2, dtype=torch.float64)
    expected = torch.stack([
        torch.stack([torch.autograd.functional.jvp(lambda p: net(p[None])[0], x[b], basis[:, k].reshape(3, 6, 6))[1] for k in range(2)], dim=1)
        for b in range(3)
    ])
    torch.testing.assert_close(subspace_jacobian(net, x, basis), expected)
    full = jacobian(net, x)  # n = 16 < d = 108: reverse mode
    assert full.shape == (3, 16, 108)
    torch.testing.assert_close(full @ basis, expected)


def test_float32_is_close_to_float64():
    model = shallow(250, 2)
    x = torch.rand(50, 2, dtype=torch.float64) * 3 - 1.5
    exact = log_volume(model.hidden, x)
    single = log_volume(model.float().hidden, x.float())
    assert single.dtype == torch.float32
    assert torch.max(torch.abs(single.double() - exact)) / math.log(10) < 1e-4


def test_top_k_and_basis_are_exclusive():
    with pytest.raises(ValueError, match="top_k"):
        log_volume(torch.sin, torch.randn(2, 3), basis=torch.eye(3)[:, :2], top_k=1)
    with pytest.raises(ValueError, match="top_k=4"):
        log_volume(torch.sin, torch.randn(2, 3), top_k=4)


def test_graded_jacobian_keeps_relative_accuracy():
    """Rows 1e-30 apart (a saturated unit): the tiny singular value stays exact to rounding."""
    weight = torch.randn(3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    scales = torch.tensor([1.0, 1e-30, 2.0], dtype=torch.float64)
    matrix = scales[:, None] * weight  # J = D W
    x = torch.randn(2, 3, dtype=torch.float64)
    expected = torch.log(scales).sum() + torch.linalg.slogdet(weight).logabsdet - 1.5 * math.log(3)
    torch.testing.assert_close(log_volume(lambda x: x @ matrix.T, x), expected.expand(2), rtol=1e-12, atol=0)


def test_parts_share_one_jacobian_and_equal_separate_volumes():
    from geomvol.geometry import log_volume_of_parts
    from geomvol.models.resnet import CifarResNet34

    torch.manual_seed(0)
    model = CifarResNet34().double().eval().requires_grad_(False)
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    basis = torch.linalg.qr(torch.randn(3 * 32 * 32, 2, dtype=torch.float64)).Q
    names = ["block1", "pooled", "block3"]
    together = log_volume_of_parts(model.blocks_together(names), x, [64, 512, 256], basis=basis)
    maps = model.feature_maps()
    for row, name in zip(together, names):
        torch.testing.assert_close(row, log_volume(maps[name], x, basis=basis), rtol=1e-10, atol=1e-10)
    with pytest.raises(ValueError, match="do not add up"):
        log_volume_of_parts(model.blocks_together(names), x, [64, 512], basis=basis)


def test_plane_metric_of_a_linear_map_is_its_eigendecomposition():
    """Phi(x) = A x on the plane of an orthonormal basis V: G = V^T A^T A V / n, whose eigenvalues and leading
    eigenvector plane_metric gives in closed form (eigh for reference); its log volume is log_volume's; the parts
    of a map side by side are each map's."""
    import math

    from geomvol.geometry import plane_metric

    torch.manual_seed(3)
    A, B = torch.randn(7, 5, dtype=torch.float64), torch.randn(4, 5, dtype=torch.float64)
    basis = torch.linalg.qr(torch.randn(5, 2, dtype=torch.float64)).Q
    x = torch.randn(6, 5, dtype=torch.float64)
    metric = plane_metric(lambda x: x @ A.T, x, basis)
    G = (A @ basis).T @ (A @ basis) / 7
    eigenvalues, vectors = torch.linalg.eigh(G)
    torch.testing.assert_close(metric.log_eigenvalues, eigenvalues.flip(0).log().expand(6, 2), rtol=1e-12, atol=0)
    leading = vectors[:, 1] * torch.sign(vectors[0, 1])  # the angle's half plane: first component >= 0
    torch.testing.assert_close(metric.angle, torch.atan2(leading[1], leading[0]).expand(6), rtol=0, atol=1e-12)
    torch.testing.assert_close(metric.log_volume, log_volume(lambda x: x @ A.T, x, basis=basis), rtol=1e-12, atol=1e-12)
    together = plane_metric(lambda x: torch.cat([x @ A.T, x @ B.T], dim=1), x, basis, widths=[7, 4])
    alone = plane_metric(lambda x: x @ B.T, x, basis)
    assert together.log_eigenvalues.shape == (2, 6, 2) and together.angle.shape == (2, 6)
    torch.testing.assert_close(together.log_eigenvalues[1], alone.log_eigenvalues, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(together.angle[0], metric.angle, rtol=0, atol=1e-12)
    # a map that stretches along the direction e at 2 radians 1e15 times more than across it (rows 1e15 e and
    # e's normal): lambda_2 keeps its relative accuracy (from det G / lambda_1); the angle is in (-pi/2, pi/2]
    e = torch.tensor([math.cos(2.0), math.sin(2.0)], dtype=torch.float64)
    stretch = torch.stack([1e15 * e, torch.stack([-e[1], e[0]])])
    graded = plane_metric(lambda x: x @ stretch.T, x[:, :2], torch.eye(2, dtype=torch.float64))
    torch.testing.assert_close(graded.log_eigenvalues[0], torch.tensor([math.log(1e30 / 2), math.log(0.5)],
                                                                     dtype=torch.float64), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(graded.angle, torch.full((6,), 2.0 - math.pi, dtype=torch.float64), rtol=0, atol=1e-12)
    # a map that stretches every direction alike has no leading direction; one of width 1, no second eigenvalue
    assert torch.isnan(plane_metric(lambda x: 3 * x, x[:, :2], torch.eye(2, dtype=torch.float64)).angle).all()
    line = plane_metric(lambda x: x[:, :1] + 2 * x[:, 1:2], x[:, :2], torch.eye(2, dtype=torch.float64))
    assert torch.isneginf(line.log_eigenvalues[:, 1]).all()
    torch.testing.assert_close(line.log_eigenvalues[:, 0], torch.full((6,), math.log(5.0), dtype=torch.float64))
    torch.testing.assert_close(line.angle, torch.full((6,), math.atan2(2, 1), dtype=torch.float64))
