"""A user's own images, one folder per class (dataset: {name: image_folder}), read by torchvision's ImageFolder."""

from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from geomvol.config import resolve_config
from geomvol.data.check import check_config_data
from geomvol.data.folders import IMAGE_EXTENSIONS, find_classes, folder_files, image_files
from geomvol.data.images import folder_pixels, load_folder, prepared_splits, write_synthetic
from geomvol.data.prepare import load_dataset
from geomvol.errors import ConfigError, DataError
from geomvol.lineage import format_trace, trace
from geomvol.provenance import sha256_file
from geomvol.stages import prepare_dataset


def folder_config(dataset: dict, **probe) -> dict:
    probe = probe or {"lines": [{"classes": ["class_01", "class_02"]}]}
    return {"experiments": {"own": {"dataset": {"name": "image_folder", "image_size": [8, 8], **dataset},
                                    "probe": probe}}}


def write_image(path, pixels) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(pixels, dtype=np.uint8)).save(path)


def test_files_are_listed_as_torchvision_lists_them(tmp_path):
    """The torch-free listing (which the Snakefile's inputs and the manifest's sha256 use) is ImageFolder's own:
    its extensions, case-blind; class folders sorted; nested folders walked in sorted order; other files left
    out."""
    assert IMAGE_EXTENSIONS == torchvision.datasets.folder.IMG_EXTENSIONS
    for name in ("dog/b.png", "dog/A.JPG", "dog/nested/c.png", "cat/z.bmp", "cat/notes.txt", "ant/x.webp"):
        write_image(tmp_path / name, np.zeros((4, 4, 3))) if not name.endswith(".txt") else \
            (tmp_path / name).write_text("not an image")
    classes = find_classes(tmp_path)
    reference = torchvision.datasets.ImageFolder(str(tmp_path), loader=lambda path: path)
    assert classes == reference.classes == ["ant", "cat", "dog"]
    assert [(str(path), label) for path, label in image_files(tmp_path, classes)] == reference.samples
    assert len(reference.samples) == 5


def test_images_are_resized_and_read_in_the_channels_asked_for(tmp_path):
    """Each image is read as RGB or greyscale (PIL's L: (299 R + 587 G + 114 B) / 1000) and resized to image_size
    with antialiasing: a constant image stays that constant; a 40 x 30 image becomes [H, W]."""
    write_image(tmp_path / "train" / "a" / "0.png", np.full((40, 30, 3), (200, 100, 50)))
    write_image(tmp_path / "train" / "b" / "0.jpeg", np.full((9, 9, 3), 17))
    images, labels, classes = load_folder(tmp_path / "train", [6, 5], 3)
    assert images.shape == (2, 3, 6, 5) and images.dtype == torch.uint8 and labels.tolist() == [0, 1]
    assert images[0, :, 0, 0].tolist() == [200, 100, 50] and (images[0] == images[0, :, :1, :1]).all()
    grey, _, _ = load_folder(tmp_path / "train", [6, 5], 1)
    assert grey.shape == (2, 1, 6, 5) and (grey[0] == 124).all() and classes == ["a", "b"]
    (tmp_path / "train" / "b" / "1.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"image file .*b/1\.png could not be read"):
        load_folder(tmp_path / "train", [6, 5], 3)


@pytest.mark.parametrize("layout, rule", [("folders", "folders"), ("flat", "randperm_last")])
def test_a_synthetic_folder_reads_back_as_made_in_memory(tmp_path, layout, rule):
    """A stand-in's PNG files (10 class folders, in train/ and test/, or one folder split by randperm_last) read
    back through ImageFolder as the arrays the config check makes in memory, bit for bit, at a size (12 x 10)
    that the 4 x 4 prototype blocks do not divide."""
    dataset = {"synthetic": {"n_train": 30, "n_test": 20}, "image_size": [12, 10], "split_rule": rule}
    resolved = resolve_config(folder_config(dataset))["experiments"]["own"]["dataset"]
    files = write_synthetic("ImageFolder", tmp_path, 30, 20, seed=0, shape=(3, 12, 10), layout=layout)
    assert len(files) == 50 and files[0] == ("train/class_01/00000.png" if layout == "folders" else "class_01/00000.png")
    in_memory = prepared_splits(resolved, {"train", "test"})
    from_files = prepared_splits({**resolved, "root": str(tmp_path), "synthetic": None}, {"train", "test"})
    for key in ("x", "y", "index", "x_test", "y_test", "index_test"):
        assert torch.equal(in_memory[key], from_files[key]), key
    assert in_memory["classes"] == from_files["classes"] == [f"class_{label:02d}" for label in range(10)]
    assert from_files["x"].shape == ((30 if layout == "folders" else 38), 3, 12, 10)
    # without pixels, (source, file number) rows stand for the images, and read as the same images
    rows = prepared_splits({**resolved, "root": str(tmp_path), "synthetic": None}, {"train", "test"}, pixels=False)
    for key in ("x", "x_test"):
        assert rows[key].shape == (from_files[key].shape[0], 2)
        assert torch.equal(folder_pixels({**resolved, "root": str(tmp_path)}, rows[key]), from_files[key]), key
    for key in ("y", "index", "y_test", "index_test"):
        assert torch.equal(rows[key], from_files[key]), key


def test_the_config_check_reads_only_the_anchors_files(tmp_path, monkeypatch):
    """Before any job, a folder's labels come from its file listing, and only the anchor images are opened (a
    folder of thousands of images costs no more to check than one of fifty): three files for a plane, however
    many the folder holds; a non-anchor file that cannot be read is left to the prepare job, which names it."""
    import geomvol.data.images as images

    write_synthetic("ImageFolder", tmp_path, 40, 20, seed=0, shape=(3, 8, 8))
    opened = []
    read = images._open_image
    monkeypatch.setattr(images, "_open_image", lambda path, mode: opened.append(path) or read(path, mode))
    config = resolve_config(folder_config({"root": str(tmp_path)},
                                          planes=[{"classes": ["class_01", "class_04", "class_07"]}]))
    check_config_data(config)
    assert len(opened) == 3 and {Path(path).parent.name for path in opened} == {"class_01", "class_04", "class_07"}
    broken = next(path for path in sorted((tmp_path / "train" / "class_02").iterdir()))
    broken.write_bytes(b"not a png")
    check_config_data(config)
    dataset = config["experiments"]["own"]["dataset"]
    with pytest.raises(DataError, match=rf"image file .*{broken.name} could not be read"):
        prepare_dataset(dataset, tmp_path / "data.pt", tmp_path / "manifest.json")


def test_a_folder_is_prepared_with_its_classes_shape_and_every_files_sha256(tmp_path):
    """dataset: {name: image_folder, root}: classes from the folder names, the input shape from image_size and
    channels, the normalisation from the training images (its default), every image's sha256 in the manifest;
    geomvol trace reports a count of them and names the one replaced since."""
    write_synthetic("ImageFolder", tmp_path / "mine", 40, 20, seed=1, shape=(3, 8, 8))
    config = folder_config({"root": str(tmp_path / "mine"), "n_test": 10},
                           planes=[{"classes": ["class_02", "class_05", "class_09"], "split": "test"}])
    experiment = check_config_data(resolve_config(config))["experiments"]["own"]
    assert experiment["dataset"]["normalize"] == "training_set" and experiment["dataset"]["channels"] == 3
    manifest = prepare_dataset(experiment["dataset"], tmp_path / "dataset.pt", tmp_path / "manifest.json")
    assert manifest["input_shape"] == [3, 8, 8] and manifest["class_counts"] == [4] * 10
    assert manifest["test_class_counts"] == [1] * 10 and manifest["classes"][2] == "class_02"
    files = folder_files(experiment["dataset"])
    assert len(files) == 60 and manifest["raw_files"]["sha256"] == {
        path.relative_to(tmp_path / "mine").as_posix(): sha256_file(path) for path in files}
    data = load_dataset(tmp_path / "dataset.pt")
    pixels = data["x"].double().div(255).transpose(0, 1).reshape(3, -1)
    assert torch.allclose(data["mean"], pixels.mean(dim=1)) and torch.allclose(data["std"], pixels.std(dim=1))
    assert data["index_source"].startswith("ImageFolder's files of")
    report = format_trace(trace(tmp_path / "dataset.pt"))
    assert "60 files under" in report and "all as recorded" in report
    write_image(files[7], np.zeros((8, 8, 3)))
    report = format_trace(trace(tmp_path / "dataset.pt"))
    assert "1 changed or missing" in report and f"{files[7].name}" in report and "CHANGED" in report


def test_a_folder_that_does_not_fit_is_refused_before_any_job(tmp_path):
    """The torch-free config check names the key and what is wrong: no root, a missing test folder, a single
    class, an empty class folder, train and test with different classes, split settings that do not apply."""
    def refused(dataset, match):
        with pytest.raises(ConfigError, match=match):
            resolve_config(folder_config(dataset))

    refused({}, r"dataset\.root: ImageFolder needs a data root \(a folder of class folders\)")
    write_image(tmp_path / "train" / "cat" / "0.png", np.zeros((4, 4, 3)))
    refused({"root": str(tmp_path)}, r"dataset\.root: image folder .*/test does not exist; .* root/train/<class>")
    write_image(tmp_path / "test" / "cat" / "0.png", np.zeros((4, 4, 3)))
    refused({"root": str(tmp_path)}, r"has 1 class folder\(s\) \(cat\); .* at least two")
    (tmp_path / "train" / "dog").mkdir()
    (tmp_path / "test" / "emu").mkdir()
    refused({"root": str(tmp_path)}, r"image folder .*/train: no images .* in class folder\(s\) dog")
    write_image(tmp_path / "train" / "dog" / "0.png", np.zeros((4, 4, 3)))
    write_image(tmp_path / "test" / "emu" / "0.png", np.zeros((4, 4, 3)))
    refused({"root": str(tmp_path)}, r"train and test have different classes \(in one only: dog, emu\)")
    refused({"root": str(tmp_path), "test_fraction": 0.2}, r"dataset\.test_fraction: applies to split_rule "
                                                           r"randperm_last or shuffle_split \(folders:")
    refused({"root": str(tmp_path), "split_rule": "torchvision"}, r"ImageFolder has no torchvision files")
    refused({"root": str(tmp_path), "download": True}, r"dataset\.download: does not apply to dataset 'image_folder'")
    with pytest.raises(ConfigError, match=r"dataset\.split_rule: folders .* applies to image_folder"):
        resolve_config({"experiments": {"m": {"dataset": {"name": "digits", "split_rule": "folders"}}}})
