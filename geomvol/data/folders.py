"""A user's own images, one folder per class (``dataset: {name: image_folder, root, image_size}``): where each
split's folder is, its classes and its image files, listed as torchvision's ``ImageFolder`` lists them, and the
check that a root has them, all without torch (the config check and the Snakefile read these at every start).

Layouts, by ``dataset.split_rule``: ``folders`` (the default), ``root/train/<class>/...`` and
``root/test/<class>/...``, both with the same classes; ``randperm_last`` or ``shuffle_split``,
``root/<class>/...``, one source split with ``dataset.seed`` as the study splits its digits. Classes are the
sorted subfolder names; images are every file below a class folder (nested folders too) whose name ends in one
of ``IMAGE_EXTENSIONS``, in sorted order.
"""

from __future__ import annotations

import os
from pathlib import Path

from geomvol.errors import DataError

# torchvision.datasets.folder.IMG_EXTENSIONS (tests/test_folders.py checks they are the same): ImageFolder's images
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
SYNTHETIC_CLASS_COUNT = 10  # a synthetic stand-in's classes: class_00 .. class_09


def source_dirs(dataset: dict) -> dict[str, Path]:
    """The folder of each source of a resolved ``image_folder`` section: ``train`` and ``test`` (split_rule
    folders), or ``all``, the root (split by randperm_last or shuffle_split)."""
    root = Path(dataset["root"])
    if dataset["split_rule"] == "folders":
        return {"train": root / "train", "test": root / "test"}
    return {"all": root}


def source_dir(dataset: dict, train: bool) -> Path:
    """The folder a split of a resolved ``image_folder`` section is read from (both splits: the root, unless
    split_rule is folders)."""
    dirs = source_dirs(dataset)
    return dirs.get("train" if train else "test", dirs.get("all"))


def find_classes(directory: Path) -> list[str]:
    """The class names of an image folder: its subfolders, sorted (as torchvision's ``find_classes``)."""
    return sorted(entry.name for entry in os.scandir(directory) if entry.is_dir())


def image_files(directory: Path, classes: list[str]) -> list[tuple[Path, int]]:
    """(path, label) of every image under ``directory``'s class folders, in the order torchvision's
    ``ImageFolder`` reads them: by class, then sorted walk order."""
    files = []
    for label, name in enumerate(classes):
        for folder, _, names in sorted(os.walk(Path(directory) / name, followlinks=True)):
            files.extend((Path(folder) / file, label) for file in sorted(names)
                         if file.lower().endswith(IMAGE_EXTENSIONS))
    return files


def folder_classes(dataset: dict) -> list[str]:
    """The class names of a resolved ``image_folder`` section (a synthetic one's: class_00 ..)."""
    if dataset["synthetic"] is not None:
        return [f"class_{label:02d}" for label in range(SYNTHETIC_CLASS_COUNT)]
    return find_classes(next(iter(source_dirs(dataset).values())))


def folder_files(dataset: dict) -> list[Path]:
    """Every image file of a resolved ``image_folder`` section's sources (what its prepared data set reads)."""
    return [path for directory in source_dirs(dataset).values()
            for path, _ in image_files(directory, find_classes(directory))]


def check_folder_root(dataset: dict) -> None:
    """Raise :class:`DataError` naming what is missing unless each source folder of a resolved ``image_folder``
    section exists, has at least two class folders, an image in each, and (split_rule folders) the same classes
    in train and test."""
    layout = ("root/train/<class>/<image> and root/test/<class>/<image> (split_rule: folders)"
              if dataset["split_rule"] == "folders" else f"root/<class>/<image> (split_rule: {dataset['split_rule']})")
    missing = [str(directory) for directory in source_dirs(dataset).values() if not directory.is_dir()]
    if missing:
        raise DataError(f"image folder {' and '.join(missing)} does not exist; an image_folder data set is laid out "
                        f"as {layout}, one folder per class")
    found = {}
    for split, directory in source_dirs(dataset).items():
        classes = find_classes(directory)
        if len(classes) < 2:
            raise DataError(f"image folder {directory} has {len(classes)} class folder(s) ({', '.join(classes)}); "
                            f"a classification data set needs at least two, laid out as {layout}")
        counts = [0] * len(classes)
        for _, label in image_files(directory, classes):
            counts[label] += 1
        empty = [name for name, count in zip(classes, counts) if count == 0]
        if empty:
            raise DataError(f"image folder {directory}: no images ({', '.join(IMAGE_EXTENSIONS)}) in class "
                            f"folder(s) {', '.join(empty)}")
        found[split] = classes
    if len(found) == 2 and found["train"] != found["test"]:
        only = sorted(set(found["train"]) ^ set(found["test"]))
        raise DataError(f"image folder {dataset['root']}: train and test have different classes (in one only: "
                        f"{', '.join(only)}); both need the same class folders")
