"""Barlow Twins: the loss on hand-computed cases, the projector, the two views, training and resume."""

import math

import pytest
import torch

from geomvol.config import resolve_config
from geomvol.data import prepare_dataset
from geomvol.data.images import write_synthetic
from geomvol.train import fit, load_checkpoint
from geomvol.train.augment import BARLOW_TWINS_VIEWS, ViewSpec, random_view
from geomvol.train.objectives import barlow_twins_loss, projector

from conftest import killed_and_resumed, train_spec

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
    first, second = (random_view(images, view, generator) for view in BARLOW_TWINS_VIEWS)
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


def _barlow_experiment(root, model=None, **training):
    config = {"experiments": {"bt": {
        "dataset": {"name": "cifar10", "root": str(root)},
        "model": model or {"name": "shallow", "width": 16, "weight_std": 0.02},
        "training": {"epochs": 3, "batch_size": 10, "save_epochs": {"every": 2},
                     "optimizer": {"name": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 1e-4},
                     "objective": {"name": "barlow_twins", "projector": [32, 8], "features": "hidden"}, **training},
        "probe": {"planes": [{"indices": [0, 1, 2]}]},
    }}}
    return resolve_config(config)["experiments"]["bt"]


def test_barlow_twins_trains_and_resumes_bit_identical(tmp_path, monkeypatch):
    write_synthetic("cifar10", tmp_path / "raw", 20, 10, seed=0)
    experiment = _barlow_experiment(tmp_path / "raw")
    assert experiment["training"]["objective"]["lambda"] == 0.005
    data = tmp_path / "dataset.pt"
    prepare_dataset(experiment["dataset"], data, tmp_path / "manifest.json")
    spec = train_spec(experiment)
    reference = fit(spec, data, tmp_path / "ref", tmp_path / "ref-state", tmp_path / "ref.tsv")
    rows = (tmp_path / "ref.tsv").read_text().splitlines()
    assert rows[0].split("\t") == ["epoch", "loss"] and len(rows) == 4
    assert all(math.isfinite(float(row.split("\t")[1])) for row in rows[1:])
    state = load_checkpoint(reference[-1])
    assert state["objective"]["projector.3.weight"].shape == (8, 32)
    first = load_checkpoint(reference[0])
    assert not torch.equal(first["objective"]["projector.0.weight"], state["objective"]["projector.0.weight"])
    resumed = killed_and_resumed(spec, data, tmp_path / "killed", monkeypatch)
    assert [p.read_bytes() for p in resumed] == [p.read_bytes() for p in reference]
