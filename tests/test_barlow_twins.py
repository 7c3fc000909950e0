"""Barlow Twins: the loss on hand-computed cases, the projector, the two views, training and resume."""

import math

import pytest
import torch

from geomvol.config import resolve_config
from geomvol.stages import prepare_dataset
from geomvol.data.images import write_synthetic
from geomvol.train.checkpoint import load_checkpoint
from geomvol.train.augment import ViewSpec, barlow_twins_views, random_view
from geomvol.train.objectives import barlow_twins_loss, projector
from geomvol.settings import ProbeSettings

from helpers import killed_and_resumed, train_with_metrics, training_run

# Two standardised, uncorrelated features of a batch of four (population mean 0, standard deviation 1).
Z = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]], dtype=torch.float64)


def test_identical_decorrelated_views_give_zero_loss():
    assert barlow_twins_loss(Z, Z.clone(), lambd=0.005).item() == pytest.approx(0.0, abs=1e-12)
    scaled = 3.0 * Z + 7.0  # standardisation removes scale and offset
    assert barlow_twins_loss(scaled, Z, lambd=0.005).item() == pytest.approx(0.0, abs=1e-12)


def test_known_cross_correlations():
    flipped = Z * torch.tensor([1.0, -1.0], dtype=torch.float64)  # C = diag(1, -1): (1 - 1)^2 + (-1 - 1)^2
    assert barlow_twins_loss(Z, flipped, lambd=0.5).item() == pytest.approx(4.0)
    swapped = Z[:, [1, 0]]  # C = [[0, 1], [1, 0]]: on-diagonal 1 + 1, off-diagonal 1 + 1
    assert barlow_twins_loss(Z, swapped, lambd=0.0).item() == pytest.approx(2.0)
    assert barlow_twins_loss(Z, swapped, lambd=0.25).item() == pytest.approx(2.0 + 0.25 * 2.0)


def test_lambda_scales_only_the_off_diagonal_term():
    torch.manual_seed(0)
    z1, z2 = torch.randn(16, 5, dtype=torch.float64), torch.randn(16, 5, dtype=torch.float64)
    on_diag = barlow_twins_loss(z1, z2, lambd=0.0)
    off_diag = barlow_twins_loss(z1, z2, lambd=1.0) - on_diag
    for lambd in (0.005, 0.1, 3.0):
        torch.testing.assert_close(barlow_twins_loss(z1, z2, lambd), on_diag + lambd * off_diag)
    c = ((z1 - z1.mean(0)) / z1.std(0, unbiased=False)).T @ ((z2 - z2.mean(0)) / z2.std(0, unbiased=False)) / 16
    torch.testing.assert_close(on_diag, ((c.diagonal() - 1) ** 2).sum())


def test_projector_is_the_studys_by_default():
    head = projector(512, [256])
    assert [type(m).__name__ for m in head] == ["Linear", "BatchNorm1d"]
    assert head[0].bias is None and head[0].weight.shape == (256, 512) and not head[1].affine
    deep = projector(512, [1024, 128])
    assert [type(m).__name__ for m in deep] == ["Linear", "BatchNorm1d", "ReLU", "Linear", "BatchNorm1d"]
    assert deep[1].affine and not deep[4].affine and deep(torch.randn(8, 512)).shape == (8, 128)


def test_views_keep_shape_dtype_and_range_and_differ():
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(16, 3, 32, 32, generator=generator)
    first, second = (random_view(images, view, generator) for view in barlow_twins_views())
    for view in (first, second):
        assert view.shape == images.shape and view.dtype == torch.float32
        assert view.min() >= 0 and view.max() <= 1
    assert (first - second).abs().mean() > 0.05
    per_image = (first - images).abs().flatten(1).mean(dim=1)
    assert per_image.min() > 0, "every image is changed"


def test_view_steps_do_what_they_say():
    generator = torch.Generator().manual_seed(1)
    images = torch.rand(6, 3, 8, 8, generator=generator)
    still = ViewSpec(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_p=0.0, jitter_p=0.0, grayscale_p=0.0,
                     blur_p=0.0, solarize_p=0.0)
    torch.testing.assert_close(random_view(images, still, generator), images, rtol=0, atol=1e-6)
    mirrored = random_view(images, ViewSpec(**{**still.__dict__, "flip_p": 1.0}), generator)
    torch.testing.assert_close(mirrored, images.flip(-1), rtol=0, atol=1e-6)
    grey = random_view(images, ViewSpec(**{**still.__dict__, "grayscale_p": 1.0}), generator)
    assert torch.equal(grey[:, 0], grey[:, 1]) and torch.equal(grey[:, 1], grey[:, 2])
    solarized = random_view(images, ViewSpec(**{**still.__dict__, "solarize_p": 1.0}), generator)
    torch.testing.assert_close(solarized, torch.where(images >= 0.5, 1 - images, images), rtol=0, atol=1e-6)
    flat = torch.full((2, 3, 8, 8), 0.3)
    blurred = random_view(flat, ViewSpec(**{**still.__dict__, "blur_p": 1.0}), generator)
    torch.testing.assert_close(blurred, flat, rtol=0, atol=1e-6)  # a blur keeps a constant image


def test_blur_reaches_further_for_a_larger_sigma():
    """Without a fixed kernel size the blur is cut at ceil(3 sigma) pixels (as PIL's blur grows with its
    radius); its weights are the Gaussian's. A fixed 3 x 3 kernel stops at 1 pixel whatever sigma."""
    generator = torch.Generator().manual_seed(0)
    delta = torch.zeros(1, 1, 32, 32, dtype=torch.float64)
    delta[0, 0, 16, 16] = 1.0
    still = ViewSpec(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_p=0.0, jitter_p=0.0, grayscale_p=0.0,
                     blur_p=1.0, solarize_p=0.0)
    for sigma, radius, kernel in ((0.3, 1, None), (1.0, 3, None), (2.0, 6, None), (2.0, 1, 3)):
        view = ViewSpec(**{**still.__dict__, "blur_sigma": (sigma, sigma), "blur_kernel": kernel})
        blurred = random_view(delta, view, generator)[0, 0]
        row = blurred[16]
        reached = torch.nonzero(row > 1e-12).flatten() - 16
        assert reached.min() == -radius and reached.max() == radius, (sigma, kernel, reached)
        assert row[17] / row[16] == pytest.approx(math.exp(-1 / (2 * sigma**2)), rel=1e-5)  # sigma drawn in float32
        assert blurred.sum().item() == pytest.approx(1.0, abs=1e-12)  # a normalised kernel keeps the mass


def _barlow_experiment(root, model=None, features="hidden", **training):
    config = {"experiments": {"bt": {
        "dataset": {"name": "cifar10", "root": str(root)},
        "model": model or {"name": "shallow", "width": 16, "weight_std": 0.02},
        "training": {"epochs": 3, "batch_size": 10, "save_epochs": {"every": 2},
                     "optimizer": {"name": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 1e-4},
                     "objective": {"name": "barlow_twins", "projector": [32, 8], "features": features}, **training},
        "probe": {"planes": [{"indices": [0, 1, 2]}], **({"feature_maps": [features]} if model else {})},
    }}}
    return resolve_config(config)["experiments"]["bt"]


@pytest.fixture(scope="module")
def barlow_run(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("barlow")
    write_synthetic("CIFAR10", root / "raw", 20, 10, seed=0)
    experiment = _barlow_experiment(root / "raw")
    data = root / "dataset.pt"
    prepare_dataset(experiment["dataset"], data, root / "manifest.json")
    checkpoints = train_with_metrics(training_run(experiment), data, root / "ref", root / "ref-state", root / "ref.tsv")
    return {"root": root, "experiment": experiment, "data": data, "checkpoints": checkpoints}


def test_barlow_twins_trains_and_resumes_bit_identical(barlow_run, tmp_path, monkeypatch):
    experiment, data, reference = barlow_run["experiment"], barlow_run["data"], barlow_run["checkpoints"]
    assert experiment["training"]["objective"]["lambda"] == 0.005
    spec = training_run(experiment)
    rows = (barlow_run["root"] / "ref.tsv").read_text().splitlines()
    assert rows[0].split("\t") == ["epoch", "loss"] and len(rows) == 4
    assert all(math.isfinite(float(row.split("\t")[1])) for row in rows[1:])
    state = load_checkpoint(reference[-1])
    assert state["objective"]["projector.3.weight"].shape == (8, 32)
    first = load_checkpoint(reference[0])
    assert not torch.equal(first["objective"]["projector.0.weight"], state["objective"]["projector.0.weight"])
    resumed = killed_and_resumed(spec, data, tmp_path / "killed", monkeypatch)
    assert [p.read_bytes() for p in resumed] == [p.read_bytes() for p in reference]


def test_linear_probe_separates_separable_features():
    from geomvol.probe.linear import fit_linear_probe

    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(60) % 3
    centres = torch.tensor([[5.0, 0.0, 0.0, 1.0], [0.0, 5.0, 0.0, 1.0], [0.0, 0.0, 5.0, 1.0]])
    features = centres[labels] + 0.3 * torch.randn(60, 4, generator=generator)
    probe = fit_linear_probe(features, labels, 3)
    assert probe.accuracy(features, labels) == 1.0
    test = centres[labels] + 0.3 * torch.randn(60, 4, generator=generator)
    assert probe.accuracy(test, labels) == 1.0


def test_linear_probe_applies_the_training_standardisation_to_other_features():
    from geomvol.probe.linear import fit_linear_probe

    generator = torch.Generator().manual_seed(1)
    labels = torch.arange(40) % 2
    features = torch.stack([labels * 2.0 - 1.0, torch.zeros(40)], dim=1) + 0.2 * torch.randn(40, 2, generator=generator)
    probe = fit_linear_probe(features, labels, 2)
    torch.testing.assert_close(probe.mean, features.double().mean(0))
    shifted = features + torch.tensor([3.0, 0.0])  # every test feature moved towards class 1
    expected = ((shifted.double() - probe.mean) / probe.std) @ probe.weight.T + probe.bias
    torch.testing.assert_close(probe.logits(shifted.double()), expected)
    assert probe.accuracy(shifted, labels) == 0.5, "the shift shows: all predicted class 1, as the shared statistics say"
    own = (shifted - shifted.mean(0)) / shifted.std(0) * probe.std.float() + probe.mean.float()
    assert probe.accuracy(own, labels) == 1.0, "standardising test features by their own statistics would hide it"


def test_unstandardised_linear_probe_minimises_scikit_learns_objective():
    """standardize false, weight decay alpha: raw features, and at the fit the gradient of
    mean CE + alpha / 2 |W|^2 (bias unpenalised; scikit-learn's LogisticRegression(C) with alpha = 1 / (C N))
    vanishes."""
    from geomvol.probe.linear import fit_linear_probe

    generator = torch.Generator().manual_seed(2)
    labels = torch.arange(50) % 3
    features = torch.randn(50, 4, generator=generator, dtype=torch.float64) + labels[:, None]
    alpha = 1 / 50  # C = 1
    probe = fit_linear_probe(features, labels, 3, weight_decay=alpha, standardize=False)
    assert probe.mean.tolist() == [0.0] * 4 and probe.std.tolist() == [1.0] * 4
    weight = probe.weight.clone().requires_grad_(True)
    bias = probe.bias.clone().requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(features @ weight.T + bias, labels) + 0.5 * alpha * weight.pow(2).sum()
    loss.backward()
    assert weight.grad.abs().max() < 1e-6 and bias.grad.abs().max() < 1e-6


def test_planes_of_a_barlow_twins_checkpoint_are_labelled_by_its_linear_probe(barlow_run):
    from geomvol.data.prepare import load_dataset, model_inputs
    from geomvol.models import feature_map
    from geomvol.probe import probe_checkpoint
    from geomvol.probe.core import load_probed_model
    from geomvol.probe.linear import fit_linear_probe

    probe = {**barlow_run["experiment"]["probe"], "device": "cpu", "plane": {"resolution": 3, "extent": 1.0}}
    checkpoint = barlow_run["checkpoints"][-1]
    ds = probe_checkpoint(checkpoint, barlow_run["data"], ProbeSettings.from_section(probe))
    assert ds["linear_probe_train_accuracy"].dims == ("seed", "epoch")
    data = load_dataset(barlow_run["data"])
    model = load_probed_model(checkpoint, ProbeSettings.from_section(probe)).model
    features = feature_map(model, "hidden")
    train = features(model_inputs(data["x"], data, torch.float64))
    linear = fit_linear_probe(train, data["y"], 10)
    assert ds["linear_probe_train_accuracy"].item() == linear.accuracy(train, data["y"])
    test = features(model_inputs(data["x_test"], data, torch.float64))
    assert ds["linear_probe_test_accuracy"].item() == linear.accuracy(test, data["y_test"])
    anchors = model_inputs(data["x"][[0, 1, 2]], data, torch.float64)
    centroid = anchors.mean(dim=0, keepdim=True)  # the plane's (u, v) = (0, 0): the middle grid point
    expected = linear.logits(features(centroid)).argmax(dim=1).item()
    assert ds["plane_predicted_class"].values[0, 0, 0, 1, 1] == expected


def test_the_linear_probe_stops_at_max_iter():
    """L-BFGS counts its iterations in its state: a fit capped at 3 stops there, one capped at 500 goes on to
    convergence; max_iter below 1 is refused by the config schema, naming the key."""
    from geomvol.config import resolve_config
    from geomvol.errors import ConfigError
    from geomvol.probe import linear

    generator = torch.Generator().manual_seed(2)
    labels = torch.arange(60) % 3
    features = torch.randn(60, 5, generator=generator, dtype=torch.float64) + labels[:, None]
    iterations = []
    original = torch.optim.LBFGS.step

    def counted(self, closure):
        result = original(self, closure)
        iterations.append(self.state[self._params[0]]["n_iter"])
        return result

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch.optim.LBFGS, "step", counted)
        linear.fit_linear_probe(features, labels, 3, weight_decay=1 / 60, standardize=False, max_iter=3)
        linear.fit_linear_probe(features, labels, 3, weight_decay=1 / 60, standardize=False, max_iter=500)
    assert iterations[0] == 3 and 3 < iterations[1] < 500
    with pytest.raises(ConfigError, match=r"experiments\.b\.probe\.linear_probe\.max_iter"):
        resolve_config({"experiments": {"b": {"dataset": {"name": "digits"},
                                              "probe": {"planes": [{"indices": [0, 1, 2]}],
                                                        "linear_probe": {"max_iter": 0}}}}})


def test_barlow_twins_trains_a_graph_models_node(barlow_run, tmp_path):
    """Barlow Twins on a torchvision model's node (resnet18's avgpool, 512 values): the projector reads the node's
    width, the backbone's batch norms train on batch statistics (their running means move), and the loss is
    finite and the checkpoint probes that node."""
    experiment = _barlow_experiment(barlow_run["root"] / "raw", model={"name": "torchvision", "builder": "resnet18"},
                                    features="avgpool", epochs=1, save_epochs=[0, 1])
    checkpoints = train_with_metrics(training_run(experiment), barlow_run["data"], tmp_path / "ck", tmp_path / "state",
                                     tmp_path / "m.tsv")
    first, last = (load_checkpoint(path) for path in checkpoints)
    assert last["objective"]["projector.0.weight"].shape == (32, 512)
    assert not torch.equal(first["model"]["bn1.running_mean"], last["model"]["bn1.running_mean"])
    assert math.isfinite(last["history"]["loss"][-1])
