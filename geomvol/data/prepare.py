"""Prepare a data set into one file plus a manifest, and load it back."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from geomvol.data.sinusoid import make_sinusoid
from geomvol.errors import DataError
from geomvol.io import atomic_path, save_torch
from geomvol.provenance import sha256_file

MAKERS = {"sinusoid": make_sinusoid}


def prepare_dataset(spec: dict, output: str | Path, manifest: str | Path) -> dict:
    """Make the data set of a resolved ``dataset`` section; write it and its manifest.

    The data file holds tensors ``x`` (N, d) float32 and ``y`` (N,) int64.
    The manifest records the spec, the sizes, the class counts and the
    file's sha256. Returns the manifest.
    """
    tensors = MAKERS[spec["name"]](spec)
    save_torch(tensors, output)
    counts = torch.bincount(tensors["y"]).tolist()
    record = {
        "dataset": spec["name"],
        "spec": spec,
        "file": Path(output).name,
        "sha256": sha256_file(output),
        "n_points": int(tensors["x"].shape[0]),
        "input_shape": list(tensors["x"].shape[1:]),
        "class_counts": counts,
    }
    with atomic_path(manifest) as tmp:
        Path(tmp).write_text(json.dumps(record, indent=2) + "\n")
    return record


def load_dataset(path: str | Path) -> dict[str, torch.Tensor]:
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
