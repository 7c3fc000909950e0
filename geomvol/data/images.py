"""Image data sets: torchvision's (the study's MNIST and CIFAR-10, and FashionMNIST, KMNIST, CIFAR-100, STL-10 and
SVHN by class name) through torchvision's own dataset classes, a user's own images through torchvision's
``ImageFolder`` (:mod:`geomvol.data.folders`), tiny stand-ins in their on-disk formats, and scikit-learn's digits
(:mod:`geomvol.data.digits`), all prepared alike.

A data root is a directory in torchvision's layout (``geomvol.catalogue.expected_files``); it is
read with the data set's ``torchvision.datasets`` class, which fetches it first
when ``download`` is set and the machine is online; the class names come from
the data. Optional class-balanced subsets (``n_train``, ``n_test``) are drawn
with ``dataset.seed``; the model reads (pixels / pixel_max - mean) / std per
channel (``dataset.normalize``).

:func:`write_synthetic` writes a small data set of class prototypes plus noise
in exactly those formats (MNIST's IDX files; CIFAR's pickled batches; STL-10's
binary arrays; SVHN's MATLAB files; an image folder's PNG files), so that the same loading code runs offline.
torchvision checks every CIFAR, STL-10 and SVHN file
against the official archive's md5; a synthetic root carries its own digests
in ``geomvol-synthetic.json`` beside the batches, and the loader has
torchvision check the files against those instead.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import pickle
import struct
import sys
from pathlib import Path

import numpy as np
import torch

from geomvol.catalogue import (
    CLASS_COUNTS, CLASSES, CIFAR_FILES, PIXEL_MAX, SPLIT_ARGUMENT_LAYOUTS, SPLIT_KEYS, STL10_FILES, SVHN_CLASSES,
    SVHN_FILES, TORCHVISION_FORMATS, dataset_label, expected_files, raw_paths, synthetic_spec, torchvision_class,
)
from geomvol.data.folders import source_dir, source_dirs
from geomvol.errors import DataError
from geomvol.io import exclusive_lock

SYNTHETIC_MANIFEST = "geomvol-synthetic.json"
# STL-10's class names (its class_names.txt), which a synthetic stand-in writes as the real data set has them
STL10_CLASSES = ("airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck")


def missing_files(cls: str, root: str | Path) -> list[str]:
    """The files of torchvision's layout for class ``cls`` (MNIST, CIFAR10, FashionMNIST, ...) that ``root`` lacks."""
    return [f for f in expected_files(cls) if not (Path(root) / f).is_file()]


def check_root(cls: str, root: str | Path) -> None:
    """Raise :class:`DataError` naming the directory and the files expected there if any is missing."""
    missing = missing_files(cls, root)
    if missing:
        raise DataError(
            f"{cls} data root {root} is missing {len(missing)} of the {len(expected_files(cls))} files torchvision "
            f"reads there: {', '.join(missing)}. Set dataset.download: true on a machine that is online, or put the "
            f"data set there in torchvision's layout"
        )


def _dataset_class(cls: str, root: Path):
    """torchvision's class ``cls``; for CIFAR's, STL-10's and SVHN's formats, one that checks a synthetic root's files
    against the digests written with them (torchvision checks each file against the official archive's md5)."""
    import torchvision.datasets

    official = getattr(torchvision.datasets, cls)
    manifest = root / getattr(official, "base_folder", "") / SYNTHETIC_MANIFEST
    if TORCHVISION_FORMATS[cls][0] == "idx" or not manifest.exists():
        return official
    md5 = json.loads(manifest.read_text())["md5"]
    if TORCHVISION_FORMATS[cls][0] == "svhn":  # {split: [url, file, md5]}
        return type(f"Synthetic{cls}", (official,), {"split_list": {
            split: [url, file, md5.get(file)] for split, (url, file, _) in official.split_list.items()}})
    checked = {"train_list": [[name, md5[name]] for name, _ in official.train_list],
               "test_list": [[name, md5[name]] for name, _ in official.test_list]}
    if hasattr(official, "meta"):  # CIFAR's class names file
        checked["meta"] = {**official.meta, "md5": md5[official.meta["filename"]]}
    return type(f"Synthetic{cls}", (official,), checked)


@contextlib.contextmanager
def _download_lock(root: Path, download: bool):
    """With ``download``, hold an exclusive lock on the root, so that two jobs (two experiments on one
    root) do not fetch and extract into it at once; the second finds the files there and skips."""
    if not download:
        yield
        return
    with exclusive_lock(root / ".geomvol-download.lock"):
        yield


def load_split(cls: str, root: str | Path, train: bool, download: bool = False) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Images (N, C, H, W) uint8, labels (N,) int64 and class names of one split, read by torchvision's class
    ``cls`` (its classes' names as the data set gives them)."""
    root = Path(root)
    if not download:
        check_root(cls, root)
    layout = TORCHVISION_FORMATS[cls][0]
    split = {"split": "train" if train else "test"} if layout in SPLIT_ARGUMENT_LAYOUTS else {"train": train}
    try:
        with _download_lock(root, download):
            dataset = _dataset_class(cls, root)(root, download=download, **split)
    except RuntimeError as error:  # torchvision: "Dataset not found or corrupted."
        raise DataError(f"{cls} data root {root} could not be read by torchvision ({error}); "
                        f"expected files: {', '.join(expected_files(cls))}") from error
    except ImportError as error:  # SVHN's reader, scipy
        raise DataError(f"{cls} needs {error.name}, which torchvision reads its files with: "
                        f"pip install 'geomvol[svhn]'") from error
    if layout == "idx":
        images = dataset.data[:, None]
    elif layout == "cifar":  # (N, H, W, C) arrays
        images = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous()
    else:  # (N, C, H, W) arrays
        images = torch.from_numpy(np.ascontiguousarray(dataset.data))
    labels = torch.as_tensor(dataset.labels if layout in SPLIT_ARGUMENT_LAYOUTS else dataset.targets, dtype=torch.int64)
    return images, labels, list(SVHN_CLASSES if layout == "svhn" else dataset.classes)  # SVHN's: none, its digits


def _open_image(path: str, mode: str):
    """An image file as a PIL image in ``mode`` (L: greyscale, RGB), or an error naming the file."""
    from PIL import Image, UnidentifiedImageError

    try:
        with open(path, "rb") as file:
            return Image.open(file).convert(mode)
    except (OSError, UnidentifiedImageError) as error:
        raise DataError(f"image file {path} could not be read: {error}") from error


def _image_folder(directory: str | Path, image_size, channels: int):
    """torchvision's ``ImageFolder`` of ``directory`` (its images: IMAGE_EXTENSIONS, torchvision's own), each image
    read in greyscale (``channels`` 1) or RGB (3) and resized to ``image_size`` [H, W] with torchvision's
    antialiased Resize. Making it lists the files and reads none."""
    import functools

    import torchvision
    from torchvision import transforms

    resize = transforms.Compose([transforms.Resize(list(image_size), antialias=True), transforms.PILToTensor()])
    return torchvision.datasets.ImageFolder(
        str(directory), transform=resize, loader=functools.partial(_open_image, mode="L" if channels == 1 else "RGB"))


def load_folder(directory: str | Path, image_size, channels: int,
                numbers: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Images (N, C, H, W) uint8, labels (N,) int64 and class names of an image folder (one folder per class),
    read by torchvision's ``ImageFolder`` (:func:`_image_folder`); with ``numbers``, the images of those files
    alone (their places in ImageFolder's order), and every file's label."""
    from tqdm import tqdm

    dataset = _image_folder(directory, image_size, channels)
    chosen = range(len(dataset)) if numbers is None else numbers.tolist()
    images = torch.empty((len(chosen), channels, *image_size), dtype=torch.uint8)
    for i, number in enumerate(tqdm(chosen, desc=f"read {directory}", unit="image", file=sys.stderr,
                                    disable=len(chosen) < 1000)):
        images[i] = dataset[number][0]
    return images, torch.as_tensor(dataset.targets, dtype=torch.int64), list(dataset.classes)


def folder_pixels(dataset: dict, files: torch.Tensor) -> torch.Tensor:
    """The images (M, C, H, W) uint8 of a resolved ``image_folder`` section's files given as the (source, number)
    rows that stand for them in :func:`prepared_splits` without ``pixels``, read from their files alone."""
    images = torch.empty((len(files), dataset["channels"], *dataset["image_size"]), dtype=torch.uint8)
    for source in (0, 1):  # its train/ folder (or its one folder), its test/ folder
        rows = torch.nonzero(files[:, 0] == source).flatten()
        if len(rows):
            images[rows] = load_folder(source_dir(dataset, source == 0), dataset["image_size"], dataset["channels"],
                                       numbers=files[rows, 1])[0]
    return images


def class_balanced_subset(labels: torch.Tensor, n: int | None, n_classes: int, seed: int, what: str) -> torch.Tensor:
    """Sorted indices of ``n`` items, n // C of each class (the first n % C classes one more), drawn with ``seed``.

    ``n=None`` keeps everything. A class with too few items is an error naming ``what``.
    """
    if n is None:
        return torch.arange(labels.shape[0])
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for label in range(n_classes):
        quota = n // n_classes + (1 if label < n % n_classes else 0)
        members = torch.nonzero(labels == label).flatten()
        if members.numel() < quota:
            raise DataError(f"{what}: class {label} has {members.numel()} images, fewer than the {quota} a "
                            f"class-balanced subset of {n} needs")
        chosen.append(members[torch.randperm(members.numel(), generator=generator)[:quota]])
    return torch.cat(chosen).sort().values


def raw_file_checksums(dataset: dict) -> dict[str, str]:
    """sha256 of every file a resolved data-root ``dataset`` section's data set is read from (the files of
    torchvision's layout for its class; every image of an image folder), keyed by its path under the root."""
    from geomvol.provenance import sha256_file

    return {path.relative_to(dataset["root"]).as_posix(): sha256_file(path) for path in raw_paths(dataset)}


def _source_file(dataset: dict, train: bool, from_root: bool,
                 pixels: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
    """Images (N, C, H, W) uint8, labels, each image's index in the file and class names of torchvision's whole
    training or test file of a resolved ``dataset`` section (an image folder's: its train/ or test/ folder, or
    its root); without ``from_root`` a synthetic set is generated in memory instead of read from its root.
    Without ``pixels``, an image folder's images are not read: (source, number) rows stand for them, source 0
    its train/ folder (or its one folder), 1 its test/ folder, number the file's place in ImageFolder's order
    (:func:`folder_pixels` reads them)."""
    if dataset["synthetic"] is not None and not from_root:
        images, labels = _synthetic_source(dataset, train)
        classes = synthetic_classes(synthetic_spec(dataset)["format"])
        return torch.from_numpy(images), torch.from_numpy(labels), torch.arange(len(labels)), classes
    if dataset["name"] == "image_folder" and not pixels:
        folder = _image_folder(source_dir(dataset, train), dataset["image_size"], dataset["channels"])
        y = torch.as_tensor(folder.targets, dtype=torch.int64)
        x = torch.stack([torch.full_like(y, 0 if train else 1), torch.arange(len(y))], dim=1)
        return x, y, torch.arange(len(y)), list(folder.classes)
    if dataset["name"] == "image_folder":
        x, y, classes = load_folder(source_dir(dataset, train), dataset["image_size"], dataset["channels"])
    else:
        x, y, classes = load_split(torchvision_class(dataset), dataset["root"], train=train,
                                   download=dataset["download"])
    return x, y, torch.arange(len(y)), classes


def _synthetic_source(dataset: dict, train: bool) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels of one source of a synthetic data set, made in memory as its files read back: a
    torchvision class's training or test file; an image folder's train/ or test/ folder, or its one folder
    (both splits), in ImageFolder's order (by class, then file name: the order written)."""
    spec = synthetic_spec(dataset)
    train_split, test_split = synthetic_arrays(spec["format"], (spec["n_train"], spec["n_test"]), spec["seed"],
                                               spec.get("shape"))
    if spec["format"] != "ImageFolder":
        return train_split if train else test_split
    images, labels = train_split if train else test_split
    if spec["layout"] == "flat":
        images, labels = (np.concatenate(parts) for parts in zip(train_split, test_split))
    order = np.argsort(labels, kind="stable")
    return images[order], labels[order]


def _whole_split(dataset: dict, train: bool, from_root: bool = True,
                 pixels: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
    """Images (N, C, H, W) uint8, labels, each image's index in its source and class names of one whole split
    of a resolved image ``dataset`` section, by its ``split_rule``: torchvision's own training and test files;
    or (randperm_last, shuffle_split: :func:`geomvol.data.digits.train_test_indices`) a split of one source,
    load_digits' 1797 images or torchvision's training file, as the study splits its data."""
    from geomvol.data.digits import load_digits, train_test_indices

    rule = dataset["split_rule"]
    if rule in ("torchvision", "folders"):  # two sources
        return _source_file(dataset, train, from_root, pixels)
    if dataset["name"] == "digits":
        images, labels = load_digits()
        x, y, index, classes = images, labels, torch.arange(len(labels)), CLASSES["digits"]
    else:
        x, y, index, classes = _source_file(dataset, True, from_root, pixels)
    part = torch.from_numpy(train_test_indices(len(y), dataset["test_fraction"], dataset["seed"], rule)[0 if train else 1])
    return x[part], y[part], index[part], classes


def index_source(dataset: dict) -> str:
    """What a prepared image's source index counts: load_digits' rows, a torchvision file's images, or an image
    folder's files in ImageFolder's order (by class folder, then file name)."""
    if dataset["name"] == "digits":
        return "load_digits' order"
    if dataset["name"] == "image_folder":
        where = " and ".join(f"{path}/" for path in source_dirs(dataset).values())
        return f"ImageFolder's files of {where}, by class folder then file name"
    if dataset["split_rule"] == "torchvision":
        return f"torchvision's {torchvision_class(dataset)} split"
    return f"torchvision's {torchvision_class(dataset)} training file (both splits drawn from it)"


def _split_subset(dataset: dict, train: bool, from_root: bool = True, pixels: bool = True):
    """Images, labels, source indices and class names of the class-balanced subset of one split."""
    x, y, source_index, classes = _whole_split(dataset, train, from_root, pixels)
    split = "training" if train else "test"
    where = dataset.get("root") or "load_digits"
    index = class_balanced_subset(y, dataset["n_train" if train else "n_test"], len(classes), dataset["seed"],
                                  f"{dataset_label(dataset)} {split} set in {where}")
    return x[index], y[index], source_index[index], classes


def prepared_splits(dataset: dict, splits: set[str], pixels: bool = True) -> dict:
    """The prepared tensors of the ``splits`` ("train", "test") of a resolved image ``dataset`` section,
    keyed as :func:`make_images` keys them, and the class names, without writing anything (the config
    check's view of the data: a synthetic set is made in memory). Without ``pixels``, an image folder's
    images are (source, number) rows that :func:`folder_pixels` reads (:func:`_source_file`)."""
    data = {}
    for split in splits:
        x, y, index, data["classes"] = _split_subset(dataset, split == "train", from_root=False, pixels=pixels)
        data.update(zip(SPLIT_KEYS[split], (x, y, index)))
    return data


def channel_normalisation(normalize, images: torch.Tensor, pixel_max: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std (float64, (C,)) of a resolved ``dataset.normalize``, the model reading
    (images / pixel_max - mean) / std: none (0 and 1), training_set (of ``images``), or fixed constants."""
    channels = images.shape[1]
    if normalize == "none":
        return torch.zeros(channels, dtype=torch.float64), torch.ones(channels, dtype=torch.float64)
    if normalize == "training_set":
        pixels = images.double().div(pixel_max).transpose(0, 1).reshape(channels, -1)
        return pixels.mean(dim=1), pixels.std(dim=1)
    return torch.tensor(normalize["mean"], dtype=torch.float64), torch.tensor(normalize["std"], dtype=torch.float64)


def make_images(dataset: dict) -> dict:
    """The prepared tensors of a resolved image ``dataset`` section (written by :func:`geomvol.stages.prepare_dataset`):
    read from ``dataset['root']`` through torchvision, or from load_digits."""
    x, y, index, classes = _split_subset(dataset, True)
    x_test, y_test, index_test, _ = _split_subset(dataset, False)
    pixel_max = PIXEL_MAX[dataset["name"]]
    mean, std = channel_normalisation(dataset["normalize"], x, pixel_max)
    return {
        "x": x, "y": y, "index": index,
        "x_test": x_test, "y_test": y_test, "index_test": index_test,
        "classes": classes, "pixel_max": pixel_max, "mean": mean, "std": std,
        "index_source": index_source(dataset),
    }


# --- synthetic stand-ins in torchvision's formats -------------------------------------------------


def synthetic_arrays(cls: str, sizes: tuple[int, ...], seed: int,
                     shape: tuple[int, ...] | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Images (N, C, H, W) uint8, in the shape of torchvision's class ``cls`` (ImageFolder: ``shape``), and labels
    for each size: one smooth random prototype per class (blocks of 4 x 4 pixels) shared by all splits, plus
    pixel noise; classes in turn, shuffled."""
    rng = np.random.default_rng(seed)
    shape = tuple(shape) if cls == "ImageFolder" else TORCHVISION_FORMATS[cls][1]
    n_classes = CLASS_COUNTS.get(cls, 10)
    coarse = rng.uniform(0, 255, size=(n_classes, shape[0], -(-shape[1] // 4), -(-shape[2] // 4)))
    prototypes = coarse.repeat(4, axis=2).repeat(4, axis=3)[:, :, :shape[1], :shape[2]]  # (classes, C, H, W)
    splits = []
    for n in sizes:
        labels = np.arange(n) % n_classes
        rng.shuffle(labels)
        images = np.clip(prototypes[labels] + rng.normal(0, 40, size=(n, *shape)), 0, 255).astype(np.uint8)
        splits.append((images, labels.astype(np.int64)))
    return splits


def synthetic_classes(cls: str) -> list[str]:
    """The class names a synthetic stand-in of ``cls`` reads back with: MNIST's format names them in torchvision's
    class itself; CIFAR-10's and STL-10's are the real ones, CIFAR-100's ``class_00``..``class_99`` (written in its
    meta or class names file), an image folder's ``class_00``..``class_09`` (its folders)."""
    if cls in TORCHVISION_FORMATS and TORCHVISION_FORMATS[cls][0] == "idx":
        import torchvision.datasets

        return list(getattr(torchvision.datasets, cls).classes)
    if cls == "CIFAR10":
        return list(CLASSES["cifar10"])
    if cls == "STL10":
        return list(STL10_CLASSES)
    if cls == "SVHN":
        return list(SVHN_CLASSES)
    return [f"class_{label:02d}" for label in range(CLASS_COUNTS.get(cls, 10))]


def _write_idx(path: Path, array: np.ndarray) -> None:
    """An IDX file of unsigned bytes (magic 0x0000080N, big-endian sizes), as MNIST ships them."""
    path.write_bytes(struct.pack(f">I{array.ndim}I", 0x800 + array.ndim, *array.shape) + array.astype(np.uint8).tobytes())


def _write_pickle(path: Path, value: dict) -> None:
    path.write_bytes(pickle.dumps(value, protocol=2))


def _cifar_batch(name: str, images: np.ndarray, labels: np.ndarray, label_key: str) -> dict:
    """One pickled batch of CIFAR's format: rows of 3072 bytes (the red, green, then blue plane) and labels."""
    return {"batch_label": f"synthetic {name}", label_key: labels.tolist(), "data": images.reshape(len(images), -1),
            "filenames": [f"synthetic_{i}.png" for i in range(len(images))]}


def _write_folder(root: Path, train, test, layout: str) -> list[str]:
    """PNG files of an image folder: ``train/<class>/`` and ``test/<class>/`` (layout folders), or both splits
    under ``<class>/`` (flat), named by their index in the split (both: training images first)."""
    from PIL import Image

    classes = synthetic_classes("ImageFolder")
    parts = [("train", train), ("test", test)] if layout == "folders" else \
        [("", tuple(np.concatenate(parts) for parts in zip(train, test)))]
    written = []
    for split, (images, labels) in parts:
        for index, (image, label) in enumerate(zip(images, labels)):
            path = Path(split, classes[label], f"{index:05d}.png")
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)).save(root / path)
            written.append(path.as_posix())
    return written


def write_synthetic(cls: str, root: str | Path, n_train: int, n_test: int, seed: int,
                    shape: tuple[int, ...] | None = None, layout: str = "folders") -> list[str]:
    """Write a synthetic data set in the on-disk layout torchvision's class ``cls`` reads under ``root`` (an
    ImageFolder: PNG images of ``shape`` (C, H, W) in ``layout`` folders or flat); return the files written."""
    root = Path(root)
    train, test = synthetic_arrays(cls, (n_train, n_test), seed, shape)
    spec = {"class": cls, "n_train": n_train, "n_test": n_test, "seed": seed}
    if cls == "ImageFolder":
        written = _write_folder(root, train, test, layout)
        spec.update(shape=list(shape), layout=layout)
        (root / SYNTHETIC_MANIFEST).write_text(json.dumps({"synthetic": spec}, indent=2) + "\n")
        return written
    if TORCHVISION_FORMATS[cls][0] == "idx":
        folder = root / cls / "raw"
        folder.mkdir(parents=True, exist_ok=True)
        for prefix, (images, labels) in (("train", train), ("t10k", test)):
            _write_idx(folder / f"{prefix}-images-idx3-ubyte", images[:, 0])
            _write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels)
    elif cls == "CIFAR10":
        folder = root / Path(CIFAR_FILES[cls][0]).parent
        folder.mkdir(parents=True, exist_ok=True)
        batches = [np.array_split(np.arange(n_train), 5)[i] for i in range(5)]
        parts = [(f"data_batch_{i + 1}", train[0][rows], train[1][rows]) for i, rows in enumerate(batches)]
        parts.append(("test_batch", *test))
        for file, images, labels in parts:
            _write_pickle(folder / file, _cifar_batch(file, images, labels, "labels"))
        _write_pickle(folder / "batches.meta", {"label_names": synthetic_classes(cls),
                                                "num_cases_per_batch": len(batches[0]), "num_vis": 3072})
    elif cls == "STL10":  # uint8 arrays, each image's planes stored column-major; labels 1..10
        folder = root / Path(STL10_FILES[0]).parent
        folder.mkdir(parents=True, exist_ok=True)
        for prefix, (images, labels) in (("train", train), ("test", test)):
            (folder / f"{prefix}_X.bin").write_bytes(np.ascontiguousarray(images.transpose(0, 1, 3, 2)).tobytes())
            (folder / f"{prefix}_y.bin").write_bytes((labels + 1).astype(np.uint8).tobytes())
        (folder / "unlabeled_X.bin").write_bytes(b"")  # no unlabeled images (torchvision checks the file is there)
        (folder / "class_names.txt").write_text("\n".join(synthetic_classes(cls)) + "\n")
    elif cls == "SVHN":  # MATLAB files: X (H, W, C, N) uint8, y (N, 1) with 10 for the digit 0
        from scipy.io import savemat

        folder = root
        folder.mkdir(parents=True, exist_ok=True)
        for file, (images, labels) in zip(SVHN_FILES, (train, test)):
            savemat(folder / file, {"X": images.transpose(2, 3, 1, 0),
                                    "y": np.where(labels == 0, 10, labels).astype(np.uint8)[:, None]})
    else:  # CIFAR-100: one training and one test file, fine and coarse labels
        folder = root / Path(CIFAR_FILES[cls][0]).parent
        folder.mkdir(parents=True, exist_ok=True)
        for file, (images, labels) in (("train", train), ("test", test)):
            batch = _cifar_batch(file, images, labels, "fine_labels")
            _write_pickle(folder / file, {**batch, "coarse_labels": (labels // 5).tolist()})
        _write_pickle(folder / "meta", {"fine_label_names": synthetic_classes(cls),
                                        "coarse_label_names": [f"superclass_{i:02d}" for i in range(20)]})
    written = expected_files(cls)
    md5 = {Path(f).name: hashlib.md5((root / f).read_bytes()).hexdigest() for f in written}
    (folder / SYNTHETIC_MANIFEST).write_text(json.dumps({"synthetic": spec, "md5": md5}, indent=2) + "\n")
    return written
