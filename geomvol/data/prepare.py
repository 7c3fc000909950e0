"""Make a data set's tensors (written by :func:`geomvol.stages.prepare_dataset`), and load them back.

Prepared files hold ``x`` (N, *input) and ``y`` (N,) int64: float points for
the sinusoid; for images, uint8 pixels (N, C, H, W) plus the test split
(``x_test``, ``y_test``), each image's index in its source (torchvision's
split, or load_digits' order: ``index``, ``index_test``), the ``classes``, the
largest pixel value ``pixel_max`` and the per-channel ``mean`` and ``std`` that
:func:`model_inputs` applies: (pixels / pixel_max - mean) / std.
"""

from __future__ import annotations

from pathlib import Path

import torch

from geomvol.catalogue import SPLIT_KEYS
from geomvol.data.digits import DIGITS_FILE
from geomvol.data.images import make_images, raw_file_checksums
from geomvol.data.sinusoid import make_sinusoid
from geomvol.errors import DataError
from geomvol.provenance import sha256_file

MAKERS = {"sinusoid": make_sinusoid, "mnist": make_images, "cifar10": make_images, "torchvision": make_images,
          "image_folder": make_images, "digits": make_images}


def raw_files(dataset: dict) -> dict:
    """Where an image data set's raw files are and their sha256 (``origin``: what made them, when not a
    data root that torchvision reads or a synthetic root)."""
    if dataset["name"] == "digits":
        return {"root": str(DIGITS_FILE.parent), "sha256": {DIGITS_FILE.name: sha256_file(DIGITS_FILE)},
                "origin": "shipped with geomvol (scikit-learn's load_digits data)"}
    return {"root": str(dataset["root"]), "sha256": raw_file_checksums(dataset)}


def make_dataset(dataset: dict) -> dict:
    """The prepared tensors of a resolved ``dataset`` section (written by :func:`geomvol.stages.prepare_dataset`)."""
    return MAKERS[dataset["name"]](dataset)


def load_dataset(path: str | Path) -> dict:
    """Load a prepared data file; a missing or unreadable one raises an error naming it."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"prepared data set {path} does not exist; run `geomvol prepare` (or the pipeline) first")
    try:
        tensors = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for a bad file
        raise DataError(f"prepared data set {path} is unreadable: {error}") from error
    if not isinstance(tensors, dict) or not {"x", "y"} <= tensors.keys():
        raise DataError(f"prepared data set {path} is not a geomvol data file (needs tensors 'x' and 'y')")
    return tensors


def architecture_of(model: dict, data: dict) -> dict:
    """A model section's full spec (``geomvol.models.registry.model_spec``) for a prepared data set: its input
    shape and class count (the sinusoid's: its labels')."""
    from geomvol.models.registry import model_spec

    n_classes = len(data["classes"]) if "classes" in data else int(data["y"].max()) + 1
    return model_spec(model, input_shape=list(data["x"].shape[1:]), n_classes=n_classes)


def split_tensors(data: dict, split: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Images, labels and source indices of a prepared image ``split``: train, test, or all (the two
    together in source order, for a data set whose splits index one source: the digits, or a split of
    torchvision's training file)."""
    if split == "all":
        x, y, index = (torch.cat(parts) for parts in zip(*(split_tensors(data, part) for part in SPLIT_KEYS)))
        order = torch.argsort(index)
        return x[order], y[order], index[order]
    return tuple(data[key] for key in SPLIT_KEYS[split])


def model_inputs(x: torch.Tensor, data: dict, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """What the model reads: uint8 pixels scaled to [0, 1] and normalised per channel,
    ``(x / pixel_max - mean) / std``; float points as they are. On the device of ``x``."""
    if x.dtype != torch.uint8:
        return x.to(dtype)
    return normalise(x.to(dtype) / data["pixel_max"], data)


def normalise(images: torch.Tensor, data: dict) -> torch.Tensor:
    """Images (B, C, H, W) with pixels scaled to [0, 1], normalised per channel: ``(images - mean) / std``."""
    shape = (-1, 1, 1)
    mean = data["mean"].to(device=images.device, dtype=images.dtype).reshape(shape)
    std = data["std"].to(device=images.device, dtype=images.dtype).reshape(shape)
    return (images - mean) / std
