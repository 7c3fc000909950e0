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

import pickle
import sys
import zipfile
from collections import OrderedDict
from pathlib import Path

from geomvol.errors import CheckpointError
from geomvol.io import save_torch

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
    import torch

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


class _RecordUnpickler(pickle.Unpickler):
    """Unpickles a torch checkpoint without torch: every tensor (and any other torch object) becomes None;
    plain Python values (epochs, specs, histories, checksums) come out as saved."""

    def find_class(self, module: str, name: str):
        if module == "collections" and name == "OrderedDict":
            return OrderedDict
        if module == "torch" or module.startswith("torch."):
            return _no_tensor
        raise pickle.UnpicklingError(f"{module}.{name} is not part of a geomvol checkpoint")

    def persistent_load(self, pid):  # a tensor's storage, kept in the zip beside the pickle
        return None


def _no_tensor(*args, **kwargs) -> None:
    return None


def checkpoint_record(path: str | Path) -> dict:
    """What a checkpoint records, read without torch (``geomvol trace``): its keys but with every tensor as
    None, so ``epoch``, ``train_spec``, ``dataset_sha256``, ``model_spec`` and ``history`` as saved. Raises
    :class:`CheckpointError` naming ``path`` if it is not a readable geomvol checkpoint."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            name = next(item for item in archive.namelist() if item.endswith("/data.pkl"))
            with archive.open(name) as handle:
                state = _RecordUnpickler(handle).load()
    except (OSError, StopIteration, zipfile.BadZipFile, pickle.UnpicklingError, EOFError) as error:
        raise CheckpointError(f"checkpoint {path} is unreadable (truncated or corrupt?): {error!r}") from error
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path} is not a geomvol checkpoint (expected format {FORMAT!r})")
    return state
