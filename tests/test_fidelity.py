"""The definitions docs/fidelity.md claims the study has, each written here independently of geomvol's code:
the study's anchor sampler, scikit-learn's digits and their 75/25 split, the line's points, the input
normalisation that reaches the stores."""

import hashlib
import json
import math

import numpy as np
import pytest
import torch

from geomvol.config import resolve_config
from geomvol.data.prepare import load_dataset, split_tensors
from geomvol.stages import prepare_dataset
from geomvol.data.digits import DIGITS_FILE, load_digits
from geomvol.data.images import synthetic_arrays
from geomvol.data.anchors import resolve_anchors
from geomvol.probe.planes import line_parameters
from geomvol.settings import AnchorChoice, ProbeSettings


def study_random_samples_by_targets(labels: torch.Tensor, targets: list[int], seed: int) -> list[int]:
    """The study's sampler as DESIGN.md states it: torch.manual_seed(seed), then per target class in order
    torch.randint(len(dataset), (1,)) until an image of that class comes up (torch's global generator)."""
    torch.manual_seed(seed)
    picked = []
    for target in targets:
        while True:
            index = torch.randint(len(labels), (1,)).item()
            if labels[index].item() == target:
                picked.append(index)
                break
    return picked


@pytest.mark.parametrize("seed", [0, 1, 7, 1234])
def test_rejection_sampler_picks_the_studys_images(seed):
    labels = torch.from_numpy(synthetic_arrays("CIFAR10", (200, 60), seed=3)[1][1])  # a generated test split
    for targets in ([7, 6, 1], [1, 5], [9, 9, 0]):
        entry = {"classes": targets, "seed": seed, "split": "test", "sampler": "rejection"}
        ours = resolve_anchors([AnchorChoice.from_entry(entry)], {"test": labels}, [str(c) for c in range(10)], "probe.planes")[0]
        assert ours == study_random_samples_by_targets(labels, targets, seed)
        assert [int(labels[i]) for i in ours] == targets


def test_rejection_sampler_leaves_torchs_global_generator_alone():
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    resolve_anchors([AnchorChoice(split="train", classes=(1, 2), seed=0, sampler="rejection")],
                    {"train": torch.arange(10) % 3}, ["a", "b", "c"], "k")
    assert torch.equal(torch.rand(3), expected)


def test_digits_are_scikit_learns_load_digits():
    """The shipped file is scikit-learn's digits.csv.gz (1797 rows: 64 pixels 0..16, then the label)."""
    assert hashlib.sha256(DIGITS_FILE.read_bytes()).hexdigest() == (
        "09f66e6debdee2cd2b5ae59e0d6abbb73fc2b0e0185d2e1957e9ebb51e23aa22")
    images, labels = load_digits()
    assert images.shape == (1797, 1, 8, 8) and images.dtype == torch.uint8
    assert int(images.min()) == 0 and int(images.max()) == 16
    assert torch.bincount(labels).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    assert labels[:10].tolist() == list(range(10))  # load_digits' first rows are 0, 1, ..., 9
    # the first image, as scikit-learn prints load_digits().images[0]
    assert images[0, 0, 1].tolist() == [0, 0, 13, 15, 10, 15, 5, 0]


def study_train_test_split(n: int, seed: int, test_size: float = 0.25):
    """The study's src/utils/train_test_split.py, as it reads: torch.manual_seed(seed), randperm(n), the last
    int(n * test_size) indices for test (torch's global generator)."""
    torch.manual_seed(seed)
    num_tests = int(n * test_size)
    indices = torch.randperm(n)
    return indices[:-num_tests], indices[-num_tests:]


def study_mnist_plane_anchors(images: torch.Tensor, labels: torch.Tensor, targets: list[int], seed: int):
    """The anchors of the study's src/run_mnist_plane.py, as it reads: its split with the run's seed, then for
    each target in order X[Y == c][[torch.randperm(count)[0]]] over the whole data set (global generator)."""
    study_train_test_split(labels.shape[0], seed)
    samples = []
    for target in targets:
        subset = images[labels == target]
        samples.append(subset[int(torch.randperm(subset.shape[0])[0])][None])  # the study's subset[[randperm[0]]]
    return torch.cat(samples)


def digits_experiment(**dataset) -> dict:
    return resolve_config({"experiments": {"d": {"dataset": {"name": "digits", **dataset},
                                                 "probe": {"planes": [{"indices": [0, 1, 2]}]}}}})["experiments"]["d"]


@pytest.mark.parametrize("seed", [6, 42])
def test_digits_split_by_default_is_the_studys_own(tmp_path, seed):
    """The study's split of the 1797 digits: 449 test images, the permutation's last, in its order."""
    spec = digits_experiment(seed=seed)
    assert spec["dataset"]["split_rule"] == "randperm_last"
    record = prepare_dataset(spec["dataset"], tmp_path / "d.pt", tmp_path / "m.json")
    data = load_dataset(tmp_path / "d.pt")
    train, test = study_train_test_split(1797, seed)
    assert data["index"].tolist() == train.tolist() and data["index_test"].tolist() == test.tolist()
    assert record["n_points"] == 1348 and record["n_test"] == 449


@pytest.mark.parametrize("seed", [6, 0, 1234])
def test_randperm_after_split_on_all_digits_picks_the_studys_images(tmp_path, seed):
    spec = digits_experiment(seed=seed)
    prepare_dataset(spec["dataset"], tmp_path / "d.pt", tmp_path / "m.json")
    data = load_dataset(tmp_path / "d.pt")
    images, labels = load_digits()
    for targets in ([7, 6, 1], [0, 8]):
        expected = study_mnist_plane_anchors(images.reshape(1797, -1), labels, targets, seed)
        entry = {"classes": targets, "seed": seed, "split": "all", "sampler": "randperm_after_split"}
        x, y, index = split_tensors(data, "all")
        assert index.tolist() == list(range(1797)) and torch.equal(x, images)  # load_digits' order
        ours = resolve_anchors([AnchorChoice.from_entry(entry)], {"all": y}, [str(c) for c in range(10)], "k")[0]
        assert torch.equal(x[ours].reshape(len(targets), -1), expected)
        assert y[ours].tolist() == targets


@pytest.mark.parametrize("seed", [0, 42])
def test_digits_split_can_be_scikit_learns_train_test_split(tmp_path, seed):
    """train_test_split(X, y, test_size=0.25, random_state=seed): ShuffleSplit's permutation of
    RandomState(seed), the first ceil(0.25 n) = 450 for test, the other 1347 for training, in that order."""
    spec = digits_experiment(seed=seed, split_rule="shuffle_split")
    record = prepare_dataset(spec["dataset"], tmp_path / "d.pt", tmp_path / "m.json")
    data = load_dataset(tmp_path / "d.pt")
    permutation = np.random.RandomState(seed).permutation(1797)
    assert data["index_test"].tolist() == permutation[:450].tolist()
    assert data["index"].tolist() == permutation[450:].tolist()
    images, labels = load_digits()
    assert torch.equal(data["x"], images[data["index"]]) and torch.equal(data["y_test"], labels[data["index_test"]])
    assert data["pixel_max"] == 16 and data["mean"].tolist() == [0.0] and data["std"].tolist() == [0.0625]
    assert record["n_points"] == 1347 and record["n_test"] == 450
    assert record["raw_files"]["sha256"] == {"digits.csv.gz": hashlib.sha256(DIGITS_FILE.read_bytes()).hexdigest()}
    assert record["sha256"] == hashlib.sha256((tmp_path / "d.pt").read_bytes()).hexdigest()


def test_line_points_reach_p2_or_stop_short_as_the_study():
    assert line_parameters(0.0, 1.0, 10, endpoint=False).tolist() == pytest.approx([i / 10 for i in range(10)])
    assert line_parameters(0.0, 1.0, 5, endpoint=True).tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert line_parameters(-1.0, 1.0, 4, endpoint=False).tolist() == [-1.0, -0.5, 0.0, 0.5]


def test_the_studys_mnist_plane_runs_at_full_scale_on_real_digits(tmp_path):
    """The default config's digits plane, one seed and two epochs: train, probe; the store says which
    split, sampler, normalisation and epoch convention it used, and the probe keeps the top 10 singular values."""
    import yaml

    from geomvol.data.prepare import model_inputs
    from geomvol.geometry import log_volume
    from geomvol.probe import probe_checkpoint
    from geomvol.probe.core import load_probed_model
    
    from helpers import ROOT, train_with_metrics, training_run

    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    experiment = config["experiments"]["digits-plane"]
    experiment["training"].update(epochs=21, save_epochs=[0, 1, 21])
    experiment["probe"].update(epochs=[0, 21], plane={"resolution": 6})
    resolved = resolve_config({"experiments": {"digits-plane": experiment}})["experiments"]["digits-plane"]
    data = tmp_path / "d.pt"
    prepare_dataset(resolved["dataset"], data, tmp_path / "manifest.json")
    checkpoints = train_with_metrics(training_run(resolved), data, tmp_path / "ck", tmp_path / "state", tmp_path / "m.tsv")
    state = torch.load(checkpoints[-1], weights_only=False)
    assert state["model"]["hidden_layer.weight"].dtype == torch.float64  # trained in float64
    ds = probe_checkpoint(checkpoints[-1], data, ProbeSettings.from_section(resolved["probe"]))
    images, labels = load_digits()
    expected = study_mnist_plane_anchors(images.reshape(1797, -1), labels, [7, 6, 1], seed=6)
    assert torch.equal(torch.from_numpy(ds["plane_anchor_image"].values[0]).reshape(3, -1), expected)
    assert ds["plane_anchor_split"].values.tolist() == ["all"]
    assert json.loads(ds["plane_anchor_choice"].values[0])["sampler"] == "randperm_after_split"
    assert ds["plane_anchor_index"].values.tolist() == ds["plane_anchor_source_index"].values.tolist()
    assert ds["plane_top_k"].values.tolist() == [10]
    assert ds["plane_anchor_image"].attrs["valid_range"] == [0, 16]
    assert ds["channel_std"].values.tolist() == [0.0625]
    assert np.isfinite(ds["plane_log10_volume"].values).all()
    # at each anchor, the volume element with k = 10 is the product of the 10 largest singular values of J / sqrt(n)
    spectra = ds["plane_anchor_singular_values"].values[0, 0, 0, 0]  # (anchor, k)
    assert spectra.shape == (3, 64) and np.all(np.diff(spectra, axis=1) <= 0)
    probed = load_probed_model(checkpoints[-1], ProbeSettings.from_section(resolved["probe"]))
    prepared = load_dataset(data)
    anchors = model_inputs(expected.reshape(3, 1, 8, 8), prepared, torch.float64)
    direct = log_volume(probed.feature_map("hidden"), anchors, top_k=10) / math.log(10)
    np.testing.assert_allclose(np.log10(spectra[:, :10] / math.sqrt(200)).sum(axis=1), direct.numpy(), rtol=1e-10)


@pytest.mark.parametrize("resolution", [60, 80, 7])
def test_the_triangle_region_is_the_studys_ternary_crop(resolution):
    """src/vis/digit_boundary.py with --ternary keeps (L, M) with M < 1/(2 sqrt 3), M > sqrt 3 L - 1/sqrt 3 and
    M > -sqrt 3 L - 1/sqrt 3 (L along u, M along v); the figure's mask on a store's grid and anchors is that."""
    import xarray as xr

    from geomvol.figures.images import anchor_triangle, in_region
    from geomvol.probe.planes import ANCHOR_UV

    axis = np.linspace(-1.0, 1.0, resolution)
    ds = xr.Dataset(coords={"u": axis, "v": axis, "anchor_u": ("anchor", [a[0] for a in ANCHOR_UV]),
                            "anchor_v": ("anchor", [a[1] for a in ANCHOR_UV])})
    L, M = np.meshgrid(axis, axis, indexing="xy")  # (v, u) arrays, as the stores' planes
    study = (M < 1 / (2 * 3**0.5)) & (M > 3**0.5 * L - 1 / 3**0.5) & (M > -(3**0.5) * L - 1 / 3**0.5)
    # the study's bounds are strict; a grid point on an edge (to rounding) may fall either way
    on_edge = (np.abs(M - 1 / (2 * 3**0.5)) < 1e-12) | (np.abs(M - 3**0.5 * L + 1 / 3**0.5) < 1e-12) | (
        np.abs(M + 3**0.5 * L + 1 / 3**0.5) < 1e-12)
    mask = anchor_triangle(ds)
    assert mask.shape == (resolution, resolution)
    assert np.array_equal(mask[~on_edge], study[~on_edge])
    values = np.arange(resolution * resolution, dtype=float).reshape(1, resolution, resolution)
    drawn = in_region(ds, values, "triangle")
    assert np.array_equal(np.isnan(drawn[0]), ~mask) and np.array_equal(drawn[0][mask], values[0][mask])
    assert np.array_equal(in_region(ds, values, "square"), values)


def test_mnist_split_by_the_studys_rule_splits_torchvisions_training_file(tmp_path, mnist_root):
    """The study's MNIST line (run_mnist.py) splits its 60000 training images by its own train_test_split and
    draws the line's 7 and 6 over all of them: split_rule randperm_last, split all, sampler randperm_after_split."""
    from geomvol.data.images import load_split

    entry = {"classes": [7, 6], "seed": 5, "split": "all", "sampler": "randperm_after_split"}
    spec = resolve_config({"experiments": {"m": {
        "dataset": {"name": "mnist", "root": str(mnist_root), "split_rule": "randperm_last", "seed": 5},
        "probe": {"lines": [entry]}}}})["experiments"]["m"]
    record = prepare_dataset(spec["dataset"], tmp_path / "d.pt", tmp_path / "m.json")
    data = load_dataset(tmp_path / "d.pt")
    images, labels, _ = load_split("MNIST", mnist_root, train=True)  # the training file, whole
    train, test = study_train_test_split(labels.shape[0], 5)
    assert data["index"].tolist() == train.tolist() and data["index_test"].tolist() == test.tolist()
    assert torch.equal(data["x_test"], images[test]) and record["n_test"] == int(0.25 * labels.shape[0])
    assert "training file" in data["index_source"]
    x, y, index = split_tensors(data, "all")
    assert index.tolist() == list(range(labels.shape[0])) and torch.equal(x, images)
    ours = resolve_anchors([AnchorChoice.from_entry(entry)], {"all": y}, [str(c) for c in range(10)], "k")[0]
    expected = study_mnist_plane_anchors(images.reshape(labels.shape[0], -1), labels, [7, 6], seed=5)
    assert torch.equal(x[ours].reshape(2, -1), expected)
