"""Checkpoints: one dict per saved epoch, written atomically.

A checkpoint holds everything to rebuild the model and to continue training
bit for bit: ``model`` (state dict), ``model_spec`` (to rebuild it),
``optimizer`` (state dict), ``objective`` (the objective's own parameters: the
Barlow Twins projector; empty for cross-entropy), ``rng`` (torch's global RNG and the batch-order
generator), ``epoch`` (epochs completed), ``history`` (per-epoch loss and
accuracy so far), ``train_spec`` (the config it came from: its lineage, seed,
model and training settings without the schedule and run-time settings, so a
checkpoint is the same file whichever schedule made it) and ``dataset_sha256``.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from pathlib import Path

import torch

from geomvol.errors import CheckpointError
from geomvol.io import atomic_path, save_torch

FORMAT = "geomvol-checkpoint-1"
KEYS = {"format", "model", "model_spec", "optimizer", "objective", "rng", "epoch", "history", "train_spec",
        "dataset_sha256"}


def checkpoint_name(epoch: int) -> str:
    return f"epoch_{epoch}.pt"


def _canonical(value):
    """A copy whose strings are interned and plain dicts sorted by key, so
    pickling equal states gives equal bytes.

    Pickle shares repeated objects by identity: a key loaded from a checkpoint
    and the same key written in code are equal but distinct, and would be
    pickled differently after a resume. Equal dicts built in another order
    (a spec parsed from the CLI's JSON or built in Python) pickle in that
    order. Ordered dicts (module state dicts) keep their order.
    """
    if isinstance(value, str):
        return sys.intern(value)
    if isinstance(value, dict):
        items = value.items() if isinstance(value, OrderedDict) else sorted(value.items(), key=lambda item: repr(item[0]))
        copy = type(value)((_canonical(k), _canonical(v)) for k, v in items)
        if hasattr(value, "_metadata"):  # a module state dict's version record
            copy._metadata = value._metadata
        return copy
    if isinstance(value, (list, tuple)):
        return type(value)(_canonical(v) for v in value)
    return value


def save_checkpoint(state: dict, path: str | Path) -> None:
    save_torch(_canonical({"format": FORMAT, **state}), path)


def load_checkpoint(path: str | Path) -> dict:
    """Load and check a checkpoint; raise :class:`CheckpointError` naming ``path`` if it is unusable."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated zip, pickle errors, foreign formats
        raise CheckpointError(f"checkpoint {path} is unreadable (truncated or corrupt?): {error}") from error
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path} is not a geomvol checkpoint (expected format {FORMAT!r})")
    missing = KEYS - state.keys()
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {sorted(missing)}")
    return state


def write_metrics(checkpoint: str | Path, metrics_path: str | Path) -> None:
    """The per-epoch loss and accuracy a checkpoint holds (its history up to its epoch), as TSV."""
    history = load_checkpoint(checkpoint)["history"]
    columns = [c for c in ("epoch", "loss", "accuracy", "test_loss", "test_accuracy") if c in history]
    with atomic_path(metrics_path) as tmp:
        rows = ["\t".join(columns)] + [
            "\t".join(f"{value:.8g}" if isinstance(value, float) else str(value) for value in values)
            for values in zip(*(history[c] for c in columns))
        ]
        Path(tmp).write_text("\n".join(rows) + "\n")
