"""Image data through torchvision's classes, augmentation, and planes and lines through images."""

import hashlib
import json
import math
import pickle
import re

import numpy as np
import pytest
import torch
from torchvision.datasets import CIFAR10, MNIST

from geomvol.config import resolve_config
from geomvol.data.check import check_config_data
from geomvol.data.prepare import load_dataset, model_inputs
from geomvol.stages import prepare_dataset
from geomvol.data.images import (
    SYNTHETIC_MANIFEST, class_balanced_subset, load_split, synthetic_arrays, write_synthetic,
)
from geomvol.errors import ConfigError, DataError
from geomvol.geometry import log_volume
from geomvol.geometry.analytic import shallow_scalar_curvature_2d
from geomvol.models import feature_map
from geomvol.probe import probe_checkpoint
from geomvol.probe.core import load_probed_model
from geomvol.probe.planes import ANCHOR_UV, line_points, orthonormal_basis, plane_frame, plane_points
from geomvol.train.checkpoint import load_checkpoint
from geomvol.train.augment import augment
from geomvol.settings import ProbeSettings

from helpers import killed_and_resumed, train_with_metrics, training_run


def test_generated_mnist_reads_back_through_torchvision(mnist_root):
    images, labels = synthetic_arrays("MNIST", (60, 20), seed=0)[0]
    dataset = MNIST(mnist_root, train=True)  # torchvision's own class, no download
    assert torch.equal(dataset.data, torch.from_numpy(images[:, 0]))
    assert dataset.targets.tolist() == labels.tolist()
    x, y, classes = load_split("MNIST", mnist_root, train=True)
    assert x.shape == (60, 1, 28, 28) and x.dtype == torch.uint8 and classes[7] == "7 - seven"
    assert load_split("MNIST", mnist_root, train=False)[0].shape == (20, 1, 28, 28)


def test_generated_cifar10_passes_torchvisions_md5_check_against_its_own_digests(tmp_path):
    write_synthetic("CIFAR10", tmp_path, 30, 10, seed=1)
    images, labels = synthetic_arrays("CIFAR10", (30, 10), seed=1)[0]
    x, y, classes = load_split("CIFAR10", tmp_path, train=True)
    assert torch.equal(x, torch.from_numpy(images)) and y.tolist() == labels.tolist()
    assert classes[7] == "horse"
    folder = tmp_path / "cifar-10-batches-py"
    digests = json.loads((folder / SYNTHETIC_MANIFEST).read_text())["md5"]
    assert digests["data_batch_1"] == hashlib.md5((folder / "data_batch_1").read_bytes()).hexdigest()
    # torchvision's plain class checks the official archive's digests and refuses these files
    with pytest.raises(RuntimeError, match="not found or corrupted"):
        CIFAR10(tmp_path, train=True)
    # a changed batch fails the check against the digests written with it, and the error names the root
    batch = pickle.loads((folder / "data_batch_2").read_bytes())
    batch["labels"][0] = (batch["labels"][0] + 1) % 10
    (folder / "data_batch_2").write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(DataError, match=f"CIFAR10 data root {tmp_path} could not be read by torchvision"):
        load_split("CIFAR10", tmp_path, train=True)


@pytest.mark.parametrize("name", ["MNIST", "CIFAR10", "FashionMNIST", "CIFAR100", "STL10"])
def test_download_true_finds_a_complete_root_and_fetches_nothing(tmp_path, name, monkeypatch):
    from torchvision.datasets import cifar, mnist, stl10

    write_synthetic(name, tmp_path, 20, 10, seed=0)

    def no_network(*args, **kwargs):
        raise AssertionError("tried to download")

    for module in (mnist, cifar, stl10):
        monkeypatch.setattr(module, "download_and_extract_archive", no_network)
    x, y, _ = load_split(name, tmp_path, train=True, download=True)
    assert x.shape[0] == 20 and (tmp_path / ".geomvol-download.lock").exists()


def test_missing_root_names_the_directory_and_the_files(tmp_path):
    with pytest.raises(DataError) as info:
        load_split("MNIST", tmp_path / "nowhere", train=True)
    message = str(info.value)
    assert str(tmp_path / "nowhere") in message and "MNIST/raw/train-images-idx3-ubyte" in message
    assert "download: true" in message


def test_class_balanced_subset():
    labels = torch.arange(100) % 10
    index = class_balanced_subset(labels, 23, 10, seed=0, what="test")
    assert index.tolist() == sorted(index.tolist()) and len(set(index.tolist())) == 23
    assert torch.bincount(labels[index]).tolist() == [3, 3, 3] + [2] * 7
    assert torch.equal(index, class_balanced_subset(labels, 23, 10, seed=0, what="test"))
    assert not torch.equal(index, class_balanced_subset(labels, 23, 10, seed=1, what="test"))
    with pytest.raises(DataError, match="class 0 has 10 images, fewer than the 11"):
        class_balanced_subset(labels, 110, 10, seed=0, what="test")


def test_prepared_images_record_their_raw_files(image_run, mnist_root):
    manifest = json.loads(image_run["manifest"].read_text())
    data = load_dataset(image_run["data"])
    assert data["x"].shape == (40, 1, 28, 28) and data["x_test"].shape == (20, 1, 28, 28)
    assert manifest["class_counts"] == [4] * 10 and manifest["n_test"] == 20
    raw = manifest["raw_files"]["sha256"]
    assert raw["MNIST/raw/t10k-images-idx3-ubyte"] == hashlib.sha256(
        (mnist_root / "MNIST" / "raw" / "t10k-images-idx3-ubyte").read_bytes()).hexdigest()
    assert torch.equal(data["x"], load_split("MNIST", mnist_root, True)[0][data["index"]])


def test_normalised_inputs():
    data = {"pixel_max": 255, "mean": torch.tensor([0.5, 0.25]), "std": torch.tensor([0.5, 0.25])}
    x = torch.tensor([0, 255], dtype=torch.uint8).reshape(1, 2, 1, 1).expand(1, 2, 2, 2)
    inputs = model_inputs(x, data, torch.float64)
    assert inputs[0, 0].unique().tolist() == [-1.0] and inputs[0, 1].unique().tolist() == [3.0]
    digits = {"pixel_max": 16, "mean": torch.tensor([0.0], dtype=torch.float64),
              "std": torch.tensor([0.0625], dtype=torch.float64)}  # the study's raw digits
    raw = torch.tensor([0, 3, 16], dtype=torch.uint8).reshape(1, 1, 1, 3)
    assert model_inputs(raw, digits, torch.float64).flatten().tolist() == [0.0, 3.0, 16.0]


def test_augmentation_crops_and_flips_each_image_alone():
    images = torch.arange(8 * 3 * 5 * 5, dtype=torch.int32).reshape(8, 3, 5, 5).to(torch.uint8)
    generator = torch.Generator().manual_seed(0)
    out = augment(images, {"crop_padding": 2, "horizontal_flip": True}, generator)
    assert out.shape == images.shape and out.dtype == torch.uint8
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2))
    seen = set()
    for b in range(8):
        windows = [(top, left, flip) for top in range(5) for left in range(5) for flip in (False, True)
                   if torch.equal(out[b], (lambda w: w.flip(-1) if flip else w)(padded[b, :, top:top + 5, left:left + 5]))]
        assert windows, f"image {b} is not a flipped or plain crop of its padded self"
        seen.add(windows[0])
    assert len(seen) > 1, "images of one batch get their own crops"
    same = augment(images, {"crop_padding": 0, "horizontal_flip": False}, generator)
    assert torch.equal(same, images)


def test_killed_image_training_with_augmentation_resumes_bit_identical(image_run, tmp_path, monkeypatch):
    resumed = killed_and_resumed(training_run(image_run["experiment"]), image_run["data"], tmp_path, monkeypatch)
    assert [p.read_bytes() for p in resumed] == [p.read_bytes() for p in image_run["checkpoints"]]
    assert (tmp_path / "m.tsv").read_bytes() == (image_run["root"] / "metrics.tsv").read_bytes()
    rows = (tmp_path / "m.tsv").read_text().splitlines()
    assert rows[0].split("\t") == ["epoch", "loss", "accuracy", "test_loss", "test_accuracy"] and len(rows) == 5


@pytest.mark.slow
def test_killed_resnet_training_resumes_bit_identical(tmp_path, monkeypatch):
    """BatchNorm statistics, SGD momentum and the augmentation's generator all come back from the checkpoint."""
    write_synthetic("CIFAR10", tmp_path / "raw", 20, 10, seed=0)
    config = {"experiments": {"c": {
        "dataset": {"name": "cifar10", "root": str(tmp_path / "raw")},
        "model": {"name": "resnet34"},
        "training": {"epochs": 3, "batch_size": 10, "save_epochs": {"every": 2}, "threads": 2,
                     "optimizer": {"name": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 1e-4},
                     "augmentation": {"crop_padding": 4, "horizontal_flip": True}},
        "probe": {"planes": [{"indices": [0, 1, 2]}]},
    }}}
    experiment = resolve_config(config)["experiments"]["c"]
    data = tmp_path / "dataset.pt"
    prepare_dataset(experiment["dataset"], data, tmp_path / "manifest.json")
    spec = training_run(experiment)
    reference = train_with_metrics(spec, data, tmp_path / "ref", tmp_path / "ref-state", tmp_path / "ref.tsv")
    resumed = killed_and_resumed(spec, data, tmp_path / "killed", monkeypatch)
    assert [p.read_bytes() for p in resumed] == [p.read_bytes() for p in reference]
    state = load_checkpoint(resumed[-1])
    assert state["model"]["net.bn1.num_batches_tracked"].item() == 6 and state["history"]["epoch"] == [1, 2, 3]


def test_plane_map_sends_each_anchor_coordinate_to_its_image():
    torch.manual_seed(0)
    p1, p2, p3 = torch.randn(3, 50, dtype=torch.float64)
    frame = plane_frame(p1, p2, p3)
    for (u, v), anchor in zip(ANCHOR_UV, (p1, p2, p3)):
        point = plane_points(frame, torch.tensor([u], dtype=torch.float64), torch.tensor([v], dtype=torch.float64))
        torch.testing.assert_close(point[0], anchor, rtol=0, atol=1e-12)
    torch.testing.assert_close(frame.origin, (p1 + p2 + p3) / 3)
    u, v = torch.tensor([0.0, 1.0]), torch.tensor([0.0, 0.5, 1.0])
    grid = plane_points(frame, u.double(), v.double())
    torch.testing.assert_close(grid[1 * 2 + 1], frame.origin + frame.e_u + 0.5 * frame.e_v)  # row-major (v, u)
    line = line_points(p1, p2, torch.tensor([0.0, 0.25, 1.0], dtype=torch.float64))
    torch.testing.assert_close(line[[0, 2]], torch.stack([p1, p2]))
    torch.testing.assert_close(line[1], 0.75 * p1 + 0.25 * p2)
    basis = orthonormal_basis(frame.e_u, frame.e_v)
    torch.testing.assert_close(basis.T @ basis, torch.eye(2, dtype=torch.float64))


@pytest.mark.parametrize("metric", ["full", "subspace"])
def test_line_probe_at_its_anchors_equals_a_direct_probe_of_the_images(image_run, metric):
    probe = {**image_run["experiment"]["probe"], "metric": metric, "line": {"points": 2, "low": 0.0, "high": 1.0,
                                                                           "endpoint": True}}
    checkpoint = image_run["checkpoints"][-1]
    ds = probe_checkpoint(checkpoint, image_run["data"], ProbeSettings.from_section(probe))
    assert ds["line_log10_volume"].dims == ("seed", "epoch", "block", "line", "t")
    assert ds["t"].values.tolist() == [0.0, 1.0]
    data = load_dataset(image_run["data"])
    index = ds["line_anchor_index"].values[0]
    assert data["y"][index].tolist() == [7, 6]
    probed = load_probed_model(checkpoint, ProbeSettings.from_section(probe))
    images = model_inputs(data["x"][index], data, torch.float64)
    direction = (images[1] - images[0]).reshape(-1, 1)
    basis = direction / direction.norm() if metric == "subspace" else None
    direct = log_volume(feature_map(probed.model, "hidden"), images, basis=basis) / math.log(10)
    np.testing.assert_allclose(ds["line_log10_volume"].values[0, 0, 0, 0], direct.numpy(), rtol=1e-10)
    probabilities = torch.softmax(probed.model(images), dim=1)
    np.testing.assert_allclose(ds["line_anchor_probability"].values[0, 0, 0, [0, 1], [0, 1]],
                               probabilities[[0, 1], [7, 6]].numpy(), rtol=1e-10)
    assert np.array_equal(ds["line_anchor_image"].values[0], data["x"][index].numpy())
    spectra = ds["line_anchor_singular_values"].values[0, 0, 0, 0]
    assert spectra.shape == (2, 8) and np.all(np.diff(spectra, axis=1) <= 0)
    if metric == "full":  # the full volume element is the product of the kept singular values, / n^(k/2)
        np.testing.assert_allclose(np.log10(spectra).sum(axis=1) - 4 * math.log10(8), direct.numpy(), rtol=1e-10)


def test_plane_probe_labels_anchors_and_orders_the_grid(image_run):
    probe = {**image_run["experiment"]["probe"], "lines": [], "planes": [{"indices": [0, 5, 9], "split": "train"}],
             "plane": {"resolution": 5, "extent": 1.0}, "spectra": False}
    ds = probe_checkpoint(image_run["checkpoints"][0], image_run["data"], ProbeSettings.from_section(probe))
    assert dict(ds["plane_log10_volume"].sizes) == {"seed": 1, "epoch": 1, "block": 1, "plane": 1, "v": 5, "u": 5}
    assert ds["plane_anchor_index"].values.tolist() == [[0, 5, 9]]
    np.testing.assert_allclose(ds["anchor_u"].values, [-0.5, 0.5, 0.0])
    assert "plane_anchor_singular_values" not in ds
    data = load_dataset(image_run["data"])
    probed = load_probed_model(image_run["checkpoints"][0], ProbeSettings.from_section(probe))
    anchors = model_inputs(data["x"][[0, 5, 9]], data, torch.float64).reshape(3, -1)
    frame = plane_frame(*anchors)
    corner = (frame.origin - frame.e_u + frame.e_v).reshape(1, 1, 28, 28)  # (u, v) = (-1, 1): last row, first column
    expected = torch.softmax(probed.model(corner), dim=1).argmax(dim=1).item()
    assert ds["plane_predicted_class"].values[0, 0, 0, 4, 0] == expected


def test_plane_curvature_is_the_closed_form_of_the_net_restricted_to_the_plane(image_run):
    """probe.curvature stores K on each plane (dims seed, epoch, block, plane, v, u). On the plane x = o + u e_u +
    v e_v the shallow net is a shallow net of (u, v) with weights W (e_u, e_v) and biases W o + b, whose scalar
    curvature the closed form gives: K = R / 2 at every grid point, in the study's skewed plane coordinates
    (K ignores them; the probe uses an orthonormal basis)."""
    probe = {**image_run["experiment"]["probe"], "lines": [], "planes": [{"indices": [0, 5, 9], "split": "train"}],
             "plane": {"resolution": 7, "extent": 1.0}, "spectra": False, "curvature": True}
    settings = ProbeSettings.from_section(probe)
    ds = probe_checkpoint(image_run["checkpoints"][-1], image_run["data"], settings)
    assert ds["plane_curvature"].dims == ("seed", "epoch", "block", "plane", "v", "u")
    assert ds["plane_curvature"].attrs["long_name"].startswith("Gaussian curvature")
    data = load_dataset(image_run["data"])
    layer = load_probed_model(image_run["checkpoints"][-1], settings).model.hidden_layer
    frame = plane_frame(*model_inputs(data["x"][[0, 5, 9]], data, torch.float64).reshape(3, -1))
    weight, bias = layer.weight @ torch.stack([frame.e_u, frame.e_v], dim=1), layer.weight @ frame.origin + layer.bias
    v, u = torch.meshgrid(torch.tensor(ds["v"].values), torch.tensor(ds["u"].values), indexing="ij")
    closed = shallow_scalar_curvature_2d(weight, bias, torch.sigmoid, torch.stack([u.ravel(), v.ravel()], dim=1)) / 2
    stored = ds["plane_curvature"].values[0, 0, 0, 0]
    np.testing.assert_allclose(stored, closed.reshape(7, 7).numpy(), rtol=1e-8)
    assert np.abs(stored).max() > 1e-3


# --- the notebook API: a model in memory, measured by the pipeline's own code ---------------------------------


def test_the_notebook_api_gives_the_pipelines_numbers(image_run):
    """geomvol.probe_plane and probe_line on a checkpoint's network, through the anchor images the pipeline drew
    (as the model reads them), give the probe store's variables bit for bit, with the same dims and attrs."""
    import geomvol

    probe = {**image_run["experiment"]["probe"], "metric": "subspace", "curvature": True,
             "planes": [{"classes": [7, 6, 1], "seed": 0, "split": "train", "sampler": "per_class_permutation"}],
             "plane": {"resolution": 5, "extent": 1.0}}
    settings = ProbeSettings.from_section(probe)
    checkpoint = image_run["checkpoints"][-1]
    stored = probe_checkpoint(checkpoint, image_run["data"], settings)
    data = load_dataset(image_run["data"])
    network = load_probed_model(checkpoint, settings).model.float().train()  # as a notebook holds it
    classes = data["classes"]
    for kind, probe_span, options in (("plane", geomvol.probe_plane, {"resolution": 5, "curvature": True}),
                                      ("line", geomvol.probe_line, {"points": 10})):
        images = data["x"][stored[f"{kind}_anchor_index"].values[0]]
        ds = probe_span(network, model_inputs(images, data, torch.float64), ["hidden"], classes=classes,
                        labels=stored[f"{kind}_anchor_class"].values[0], epoch=int(stored["epoch"][0]), **options)
        measured = [name for name in stored.data_vars if name.startswith(kind) and name in ds.data_vars]
        assert {f"{kind}_log10_volume", f"{kind}_predicted_class", f"{kind}_entropy", f"{kind}_probability_margin",
                f"{kind}_anchor_probability", f"{kind}_anchor_class"} <= set(measured)
        assert (f"{kind}_curvature" in measured) == (kind == "plane")
        for name in measured:
            assert ds[name].dims == stored[name].dims and ds[name].attrs == stored[name].attrs, name
            np.testing.assert_array_equal(ds[name].values, stored[name].values, err_msg=name)
        assert ds["feature_width"].values.tolist() == stored["feature_width"].values.tolist() == [8]
    assert next(network.parameters()).dtype == torch.float32 and network.training  # the model given, as it was


def test_the_notebook_grid_gives_the_pipelines_numbers(trained):
    import geomvol

    settings = ProbeSettings.from_section(trained["experiment"]["probe"])
    checkpoint = trained["checkpoints"][-1]
    stored = probe_checkpoint(checkpoint, trained["data"], settings)
    network = load_probed_model(checkpoint, settings).model
    grid = settings.grid
    ds = geomvol.probe_grid(network, ["hidden"], low=grid.low, high=grid.high, resolution=grid.resolution,
                            metric=settings.metric, epoch=int(stored["epoch"][0]))
    for name in ("log10_volume", "predicted_class", "entropy", "probability_margin"):
        assert ds[name].dims == stored[name].dims and ds[name].attrs == stored[name].attrs, name
        np.testing.assert_array_equal(ds[name].values, stored[name].values, err_msg=name)


def test_the_notebook_api_refuses_the_wrong_number_of_anchors():
    import geomvol

    with pytest.raises(ValueError, match=r"a plane goes through 3 anchors: give a tensor \(3, \*input\)"):
        geomvol.probe_plane(torch.nn.Linear(4, 2), torch.zeros(2, 4), ["weight"])


@pytest.mark.parametrize(("cls", "shape", "names"), [
    ("FashionMNIST", (1, 28, 28), ["T-shirt/top", "Trouser"]),
    ("KMNIST", (1, 28, 28), ["o", "ki"]),
    ("CIFAR100", (3, 32, 32), ["class_00", "class_01"]),
    ("STL10", (3, 96, 96), ["airplane", "bird"]),  # read with split="train" / "test", not train=True / False
    ("SVHN", (3, 32, 32), ["0", "1"]),  # its split argument too; MATLAB files read with scipy; the digits
])
def test_torchvision_classes_by_name_read_their_own_format(tmp_path, cls, shape, names):
    """A stand-in written in the on-disk layout of FashionMNIST, KMNIST, CIFAR-100, STL-10 or SVHN reads back,
    through that very torchvision class, as the images and labels written; the class names come from the data
    (the class itself, CIFAR-100's meta file, STL-10's class_names.txt; SVHN's labels are its digits); a root
    without the files is named with what torchvision needs there."""
    import torchvision.datasets

    from geomvol.catalogue import CLASS_COUNTS, expected_files

    files = write_synthetic(cls, tmp_path, 120, 40, seed=2)
    assert files == expected_files(cls) and all((tmp_path / file).is_file() for file in files)
    for train, (images, labels) in zip((True, False), synthetic_arrays(cls, (120, 40), seed=2)):
        x, y, classes = load_split(cls, tmp_path, train=train)
        assert x.shape[1:] == shape and x.dtype == torch.uint8
        assert torch.equal(x, torch.from_numpy(images)) and y.tolist() == labels.tolist()
        assert classes[:2] == names and len(classes) == CLASS_COUNTS.get(cls, 10)
    if cls in ("FashionMNIST", "KMNIST"):  # MNIST's format: torchvision's own class reads the files as they are
        assert torchvision.datasets.__dict__[cls](tmp_path, train=True).data.shape == (120, 28, 28)
    if cls == "SVHN":  # as the real files: X (32, 32, 3, N), y (N, 1) in 1..10, 10 the digit zero
        from scipy.io import loadmat

        raw = loadmat(tmp_path / "train_32x32.mat")
        assert raw["X"].shape == (32, 32, 3, 120) and raw["y"].shape == (120, 1)
        assert set(raw["y"].ravel().tolist()) == set(range(1, 11))
    with pytest.raises(DataError, match=rf"{cls} data root {tmp_path / 'nowhere'} is missing {len(files)} of the "
                                        rf"{len(files)} files torchvision reads there: {re.escape(files[0])}"):
        load_split(cls, tmp_path / "nowhere", train=True)


def test_svhn_without_scipy_is_refused_with_the_install_command(monkeypatch):
    """torchvision reads SVHN's MATLAB files with scipy, an optional extra: without it, the config check says so."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None if name == "scipy" else real(name, *args))
    config = {"experiments": {"svhn": {"dataset": {"name": "torchvision", "class": "SVHN", "synthetic": {
        "n_train": 20, "n_test": 10}}, "probe": {"lines": [{"classes": ["7", "1"]}]}}}}
    with pytest.raises(ConfigError, match=r"dataset\.class: torchvision reads SVHN's MATLAB files with scipy, which "
                                          r"is not installed: pip install 'geomvol\[svhn\]'"):
        resolve_config(config)


def test_a_torchvision_class_is_prepared_like_the_studys_data_sets(tmp_path):
    """dataset: {name: torchvision, class: FashionMNIST}: prepared from a root in its layout, with the data's own
    class names, every raw file's sha256 in the manifest, and a class-balanced subset."""
    from geomvol.catalogue import expected_files
    from geomvol.provenance import sha256_file

    write_synthetic("FashionMNIST", tmp_path / "root", 100, 40, seed=0)
    config = {"experiments": {"fashion": {
        "dataset": {"name": "torchvision", "class": "FashionMNIST", "root": str(tmp_path / "root"), "n_train": 50},
        "probe": {"lines": [{"classes": ["Sandal", "Bag"]}]}}}}
    experiment = check_config_data(resolve_config(config))["experiments"]["fashion"]
    assert experiment["dataset"]["normalize"] == "none" and experiment["dataset"]["split_rule"] == "torchvision"
    manifest = prepare_dataset(experiment["dataset"], tmp_path / "data.pt", tmp_path / "manifest.json")
    assert manifest["input_shape"] == [1, 28, 28] and manifest["class_counts"] == [5] * 10
    assert manifest["raw_files"]["sha256"] == {file: sha256_file(tmp_path / "root" / file)
                                               for file in expected_files("FashionMNIST")}
    data = load_dataset(tmp_path / "data.pt")
    assert data["classes"][5] == "Sandal" and data["pixel_max"] == 255
    assert data["index_source"] == "torchvision's FashionMNIST split"
