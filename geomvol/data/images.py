"""Image data sets: MNIST and CIFAR-10 through torchvision's own dataset classes, tiny stand-ins in their
on-disk formats, and scikit-learn's digits (:mod:`geomvol.data.digits`), all prepared alike.

A data root is a directory in torchvision's layout (``EXPECTED_FILES``); it is
read with ``torchvision.datasets.MNIST`` / ``CIFAR10``, which fetch it first
when ``download`` is set and the machine is online. Optional class-balanced
subsets (``n_train``, ``n_test``) are drawn with ``dataset.seed``; the model
reads (pixels / pixel_max - mean) / std per channel (``dataset.normalize``).

:func:`write_synthetic` writes a small data set of class prototypes plus noise
in exactly those formats (MNIST IDX files; CIFAR-10 pickled batches), so that
the same loading code runs offline. torchvision checks every CIFAR-10 file
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
from pathlib import Path

import numpy as np
import torch

from geomvol.catalogue import CLASSES, EXPECTED_FILES, INPUT_SHAPES, PIXEL_MAX, SPLIT_KEYS
from geomvol.errors import DataError
from geomvol.io import exclusive_lock

SYNTHETIC_MANIFEST = "geomvol-synthetic.json"


def missing_files(name: str, root: str | Path) -> list[str]:
    """The files of torchvision's layout that ``root`` lacks."""
    return [f for f in EXPECTED_FILES[name] if not (Path(root) / f).is_file()]


def check_root(name: str, root: str | Path) -> None:
    """Raise :class:`DataError` naming the directory and the files expected there if any is missing."""
    missing = missing_files(name, root)
    if missing:
        raise DataError(
            f"{name} data root {root} is missing {len(missing)} of the {len(EXPECTED_FILES[name])} files torchvision "
            f"reads there: {', '.join(missing)}. Set dataset.download: true on a machine that is online, or put the "
            f"data set there in torchvision's layout"
        )


def _cifar10_class(root: Path):
    """torchvision's CIFAR10, checking a synthetic root's files against the digests written with them."""
    from torchvision.datasets import CIFAR10

    manifest = root / "cifar-10-batches-py" / SYNTHETIC_MANIFEST
    if not manifest.exists():
        return CIFAR10
    md5 = json.loads(manifest.read_text())["md5"]

    class SyntheticCIFAR10(CIFAR10):
        train_list = [[name, md5[name]] for name, _ in CIFAR10.train_list]
        test_list = [[name, md5[name]] for name, _ in CIFAR10.test_list]
        meta = {**CIFAR10.meta, "md5": md5[CIFAR10.meta["filename"]]}

    return SyntheticCIFAR10


@contextlib.contextmanager
def _download_lock(root: Path, download: bool):
    """With ``download``, hold an exclusive lock on the root, so that two jobs (two experiments on one
    root) do not fetch and extract into it at once; the second finds the files there and skips."""
    if not download:
        yield
        return
    with exclusive_lock(root / ".geomvol-download.lock"):
        yield


def load_split(name: str, root: str | Path, train: bool, download: bool = False) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Images (N, C, H, W) uint8, labels (N,) int64 and class names of one split, through torchvision."""
    from torchvision.datasets import MNIST

    root = Path(root)
    if not download:
        check_root(name, root)
    try:
        with _download_lock(root, download):
            if name == "mnist":
                dataset = MNIST(root, train=train, download=download)
                images = dataset.data[:, None]
            else:
                dataset = _cifar10_class(root)(root, train=train, download=download)
                images = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous()
    except RuntimeError as error:  # torchvision: "Dataset not found or corrupted."
        raise DataError(f"{name} data root {root} could not be read by torchvision ({error}); "
                        f"expected files: {', '.join(EXPECTED_FILES[name])}") from error
    labels = torch.as_tensor(dataset.targets, dtype=torch.int64)
    return images, labels, list(dataset.classes)


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


def raw_file_checksums(name: str, root: str | Path) -> dict[str, str]:
    """sha256 of every file of the layout that the loader read, keyed by its path under the root."""
    from geomvol.provenance import sha256_file

    return {f: sha256_file(Path(root) / f) for f in EXPECTED_FILES[name]}


def _source_file(dataset: dict, train: bool, from_root: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
    """Images (N, C, H, W) uint8, labels, each image's index in the file and class names of torchvision's whole
    training or test file of a resolved ``dataset`` section; without ``from_root`` a synthetic set is generated
    in memory instead of read from its root."""
    name = dataset["name"]
    if dataset["synthetic"] is not None and not from_root:
        sizes = (dataset["synthetic"]["n_train"], dataset["synthetic"]["n_test"])
        images, labels = synthetic_arrays(name, sizes, dataset["seed"])[0 if train else 1]
        return torch.from_numpy(images), torch.from_numpy(labels), torch.arange(len(labels)), CLASSES[name]
    x, y, classes = load_split(name, dataset["root"], train=train, download=dataset["download"])
    return x, y, torch.arange(len(y)), classes


def _whole_split(dataset: dict, train: bool, from_root: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
    """Images (N, C, H, W) uint8, labels, each image's index in its source and class names of one whole split
    of a resolved image ``dataset`` section, by its ``split_rule``: torchvision's own training and test files;
    or (randperm_last, shuffle_split: :func:`geomvol.data.digits.train_test_indices`) a split of one source,
    load_digits' 1797 images or torchvision's training file, as the study splits its data."""
    from geomvol.data.digits import load_digits, train_test_indices

    rule = dataset["split_rule"]
    if rule == "torchvision":
        return _source_file(dataset, train, from_root)
    if dataset["name"] == "digits":
        images, labels = load_digits()
        x, y, index, classes = images, labels, torch.arange(len(labels)), CLASSES["digits"]
    else:
        x, y, index, classes = _source_file(dataset, True, from_root)
    part = torch.from_numpy(train_test_indices(len(y), dataset["test_fraction"], dataset["seed"], rule)[0 if train else 1])
    return x[part], y[part], index[part], classes


def index_source(dataset: dict) -> str:
    """What a prepared image's source index counts: load_digits' rows, or a torchvision file's images."""
    if dataset["name"] == "digits":
        return "load_digits' order"
    if dataset["split_rule"] == "torchvision":
        return f"torchvision's {dataset['name']} split"
    return f"torchvision's {dataset['name']} training file (both splits drawn from it)"


def _split_subset(dataset: dict, train: bool, from_root: bool = True):
    """Images, labels, source indices and class names of the class-balanced subset of one split."""
    x, y, source_index, classes = _whole_split(dataset, train, from_root)
    split = "training" if train else "test"
    where = dataset.get("root") or "load_digits"
    index = class_balanced_subset(y, dataset["n_train" if train else "n_test"], len(classes), dataset["seed"],
                                  f"{dataset['name']} {split} set in {where}")
    return x[index], y[index], source_index[index], classes


def prepared_splits(dataset: dict, splits: set[str]) -> dict:
    """The prepared tensors of the ``splits`` ("train", "test") of a resolved image ``dataset`` section,
    keyed as :func:`make_images` keys them, and the class names, without writing anything (the config
    check's view of the data: a synthetic set is made in memory)."""
    data = {}
    for split in splits:
        x, y, index, data["classes"] = _split_subset(dataset, split == "train", from_root=False)
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


def synthetic_arrays(name: str, sizes: tuple[int, ...], seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Images (N, C, H, W) uint8 and labels for each size: ten smooth random class prototypes (blocks of
    4 x 4 pixels) shared by all splits, plus pixel noise; classes in turn, shuffled."""
    rng = np.random.default_rng(seed)
    shape = INPUT_SHAPES[name]
    coarse = rng.uniform(0, 255, size=(10, shape[0], shape[1] // 4, shape[2] // 4))
    prototypes = coarse.repeat(4, axis=2).repeat(4, axis=3)  # (10, C, H, W)
    splits = []
    for n in sizes:
        labels = np.arange(n) % 10
        rng.shuffle(labels)
        images = np.clip(prototypes[labels] + rng.normal(0, 40, size=(n, *shape)), 0, 255).astype(np.uint8)
        splits.append((images, labels.astype(np.int64)))
    return splits


def _write_idx(path: Path, array: np.ndarray) -> None:
    """An IDX file of unsigned bytes (magic 0x0000080N, big-endian sizes), as MNIST ships them."""
    path.write_bytes(struct.pack(f">I{array.ndim}I", 0x800 + array.ndim, *array.shape) + array.astype(np.uint8).tobytes())


def _write_pickle(path: Path, value: dict) -> None:
    path.write_bytes(pickle.dumps(value, protocol=2))


def write_synthetic(name: str, root: str | Path, n_train: int, n_test: int, seed: int) -> list[str]:
    """Write a synthetic data set in torchvision's on-disk layout under ``root``; return the files written."""
    root = Path(root)
    train, test = synthetic_arrays(name, (n_train, n_test), seed)
    if name == "mnist":
        raw = root / "MNIST" / "raw"
        raw.mkdir(parents=True, exist_ok=True)
        for prefix, (images, labels) in (("train", train), ("t10k", test)):
            _write_idx(raw / f"{prefix}-images-idx3-ubyte", images[:, 0])
            _write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
        folder = raw
    else:
        folder = root / "cifar-10-batches-py"
        folder.mkdir(parents=True, exist_ok=True)
        batches = [np.array_split(np.arange(n_train), 5)[i] for i in range(5)]
        parts = [(f"data_batch_{i + 1}", train[0][rows], train[1][rows]) for i, rows in enumerate(batches)]
        parts.append(("test_batch", *test))
        for file, images, labels in parts:
            _write_pickle(folder / file, {
                "batch_label": f"synthetic {file}",
                "labels": labels.tolist(),
                "data": images.reshape(len(images), -1),
                "filenames": [f"synthetic_{i}.png" for i in range(len(images))],
            })
        _write_pickle(folder / "batches.meta", {"label_names": CLASSES[name], "num_cases_per_batch": len(batches[0]),
                                                "num_vis": 3072})
    written = EXPECTED_FILES[name]
    md5 = {Path(f).name: hashlib.md5((root / f).read_bytes()).hexdigest() for f in written}
    spec = {"name": name, "n_train": n_train, "n_test": n_test, "seed": seed}
    (folder / SYNTHETIC_MANIFEST).write_text(json.dumps({"synthetic": spec, "md5": md5}, indent=2) + "\n")
    return written
