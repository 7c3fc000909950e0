"""Checkpoints: one dict per saved epoch, written atomically.

A checkpoint holds everything to rebuild the model and to continue training
bit for bit: ``model`` (state dict), ``model_spec`` (to rebuild it),
``optimizer`` (state dict), ``objective`` (the objective's own parameters: the
Barlow Twins projector; empty for cross-entropy), ``rng`` (torch's global RNG and the batch-order
generator), ``epoch`` (epochs completed), ``history`` (per-epoch loss and
accuracy so far), ``train_spec`` (the config it came from: its lineage, seed,
model and training settings without the schedule and run-time settings, so a
checkpoint is the same file whichever schedule made it) and ``dataset_sha256``.

A training run's checkpoint store (a state directory outside the pipeline's
declared outputs, kept between runs: ``train-state/<key>/``, one per lineage and data set, so that no config
edit deletes another's checkpoints) holds every saved epoch, each with its integrity record; :func:`fill_stores`
computes only the saved epochs a store lacks, each from the nearest earlier
checkpoint there of the same lineage (the same seed, model, data and training
settings but for the schedule): a killed run resumes from its last saved
epoch, training longer continues from the last one, and an epoch added
between two saved ones is trained from the earlier. Since a checkpoint holds
every RNG state, each checkpoint comes out bit-identical on the CPU to an
uninterrupted run's.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import sys
import zipfile
from collections import OrderedDict
from pathlib import Path

from geomvol.config import checkpoint_lineage, config_sha256, saved_epochs
from geomvol.errors import CheckpointError
from geomvol.integrity import file_record_path, is_intact, set_aside, write_file_record
from geomvol.io import atomic_path, exclusive_lock, save_torch
from geomvol.provenance import sha256_file

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


def read_state_file(path: str | Path) -> dict:
    """The tensors by parameter name of a file saved elsewhere: a state dict, a dict holding one under
    ``state_dict`` or ``model`` (Lightning's, geomvol's own), or a whole module (torch.save(model)), whose pickle
    ``weights_only`` cannot read, so it is loaded with ``weights_only=False``: load only files you trust. Keys
    saved from ``nn.DataParallel`` (``module.`` prefixed) are taken without the prefix; a torch.save zip file
    is memory-mapped (its tensors read as they are used). An unreadable file raises :class:`CheckpointError`
    naming it."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    mapped = zipfile.is_zipfile(path)
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True, mmap=mapped)
    except pickle.UnpicklingError:  # a whole module: its classes are not weights
        try:
            loaded = torch.load(path, map_location="cpu", weights_only=False, mmap=mapped)
        except Exception as error:
            raise CheckpointError(f"checkpoint {path} is unreadable: {type(error).__name__}: {error}") from error
        print(f"{path}: loaded with weights_only=False (a whole module)", file=sys.stderr)
    except Exception as error:  # truncated zip, foreign formats
        raise CheckpointError(f"checkpoint {path} is unreadable (truncated or corrupt?): {error}") from error
    if isinstance(loaded, torch.nn.Module):
        loaded = loaded.state_dict()
    elif isinstance(loaded, dict) and loaded.get("format") == FORMAT:
        loaded = loaded["model"]
    elif isinstance(loaded, dict):
        inner = next((loaded[key] for key in ("state_dict", "model") if isinstance(loaded.get(key), dict)), None)
        loaded = inner if inner is not None else loaded
    if not isinstance(loaded, dict) or not all(isinstance(value, torch.Tensor) for value in loaded.values()):
        raise CheckpointError(f"checkpoint {path} holds no state dict (tensors by parameter name): a "
                              f"{type(loaded).__name__}")
    if loaded and all(key.startswith("module.") for key in loaded):
        loaded = {key[len("module."):]: value for key, value in loaded.items()}
    return loaded


def fit_state(loaded: dict, model, source: str, keep_misshaped: bool = False) -> tuple[dict, list[str]]:
    """``loaded`` (tensors by name, from ``source``) fitted to ``model``: its state dict, and the mis-shaped
    keys, "name [shape] (the model's [shape])". Keys the model has and ``loaded`` lacks, keys it has that the
    model lacks, and (unless ``keep_misshaped``: pretrained weights for another head) keys of another shape raise
    :class:`CheckpointError` naming them; with ``keep_misshaped`` those keep the model's own tensors."""
    expected = model.state_dict()
    missing = [key for key in expected if key not in loaded]
    unexpected = [key for key in loaded if key not in expected]
    misshaped = [f"{key} {list(loaded[key].shape)} (the model's {list(value.shape)})"
                 for key, value in expected.items() if key in loaded and loaded[key].shape != value.shape]
    if missing or unexpected or (misshaped and not keep_misshaped):
        def listed(what: str, keys: list[str]) -> str:
            return f"{len(keys)} {what}: {', '.join(keys[:5])}{', ...' if len(keys) > 5 else ''}" if keys else ""

        shown = misshaped if not keep_misshaped else []
        found = "; ".join(part for part in (listed("missing", missing), listed("unexpected", unexpected),
                                             listed("mis-shaped", shown)) if part)
        raise CheckpointError(f"{source} does not fit the model {type(model).__name__}: {found}")
    state = {key: loaded[key] if loaded[key].shape == value.shape else value for key, value in expected.items()}
    return state, misshaped


def read_outside_state(path: str | Path, model) -> dict:
    """The state dict, fitted to ``model``, of a checkpoint trained elsewhere (:func:`read_state_file`): a file
    whose keys or shapes do not fit the model raises :class:`CheckpointError` naming the missing, unexpected
    and mis-shaped keys."""
    return fit_state(read_state_file(path), model, f"checkpoint {path}")[0]


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
    """What a checkpoint records, read without torch (``geomvol trace``, the store scan, the metrics): its keys
    but with every tensor as None, so ``epoch``, ``train_spec``, ``dataset_sha256``, ``model_spec`` and
    ``history`` as saved. Raises :class:`CheckpointError` naming ``path`` if it is not a readable geomvol
    checkpoint."""
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


# --- the checkpoint store of a training run ---------------------------------------------------------


def store_key(lineage: dict, dataset_sha256: str) -> str:
    """The name of the store of a lineage on a data set: the first 16 hex digits of the sha256 of both."""
    return config_sha256({"lineage": lineage, "dataset_sha256": dataset_sha256})[:16]


def keyed_store(state_root: str | Path, lineage: dict, dataset_sha256: str) -> Path:
    """The directory of ``state_root`` that keeps the checkpoints of ``lineage`` on this data set (made if
    missing, with a ``lineage.json`` saying what it holds). Each lineage has its own: a config edit never
    touches another's checkpoints, and switching a setting back finds the first run's again."""
    directory = Path(state_root) / store_key(lineage, dataset_sha256)
    description = directory / "lineage.json"
    if not description.is_file():
        with atomic_path(description) as tmp:
            tmp.write_text(json.dumps({"lineage": lineage, "dataset_sha256": dataset_sha256}, indent=2,
                                      sort_keys=True) + "\n")
    return directory


def _adopt_loose_checkpoints(state_root: Path) -> None:
    """Move the checkpoints a store of an older geomvol kept directly in ``state_root`` into the keyed store of
    their own lineage (an unreadable one aside), deleting none."""
    for path in sorted(state_root.glob("epoch_*.pt")):
        try:
            state = checkpoint_record(path)
        except CheckpointError as error:
            print(f"{error}; moved aside to {set_aside(path)}", file=sys.stderr)
            continue
        directory = keyed_store(state_root, state["train_spec"], state["dataset_sha256"])
        target = directory / path.name
        if target.exists():
            print(f"{path}: {target} exists; moved aside to {set_aside(path)}", file=sys.stderr)
            continue
        os.replace(path, target)
        write_file_record(target)
        print(f"moved {path} into the store of its lineage, {directory}", file=sys.stderr)


def _checkpoint_store(directory: Path, lineage: dict, dataset_sha256: str) -> dict[int, Path]:
    """The intact checkpoints of the keyed store ``directory``, by epoch. A checkpoint whose bytes differ from
    its record is moved aside (said on stderr) and will be made again; one without a record (its writer died
    between the checkpoint and its record) is kept if it reads back as this lineage's, and recorded."""
    usable = {}
    for path in sorted(directory.glob("epoch_*.pt")):
        if file_record_path(path).exists():
            if not is_intact(path):
                print(f"checkpoint {path} does not match the sha256 recorded when it was written; moved aside to "
                      f"{set_aside(path)}; it is made again", file=sys.stderr)
                continue
        else:
            try:
                state = checkpoint_record(path)  # its lineage, without loading the tensors (or torch)
            except CheckpointError as error:
                print(f"{error}; moved aside to {set_aside(path)}; it is made again", file=sys.stderr)
                continue
            if checkpoint_lineage(state["train_spec"]) != lineage or state["dataset_sha256"] != dataset_sha256:
                print(f"{path} was written for another training config or data set; moved aside to "
                      f"{set_aside(path)}", file=sys.stderr)
                continue
            write_file_record(path)
        usable[int(path.stem.removeprefix("epoch_"))] = path
    return usable


def fill_stores(runs: list[dict], data_path: str | Path, state_dirs: list[str | Path],
                targets: list[int]) -> list[dict[int, Path]]:
    """Make the checkpoint store of each run (the keyed store of its lineage and data set, :func:`keyed_store`,
    under its ``state_dirs`` entry) hold each epoch of ``targets``; return their checkpoints by epoch. ``runs``
    (one per store: seed, model and training sections, alike but for the seed) train together
    as one ensemble (:class:`geomvol.models.shallow.ShallowEnsemble`) when there are several.

    Only the targets missing from a store are computed, each from the nearest earlier checkpoint of the same
    lineage (:func:`geomvol.config.checkpoint_lineage`); every saved epoch passed on the way is kept too. The
    members that lack a target train together from the latest checkpoint they all have before it; each
    saved epoch is written into each store that lacks it, with its integrity record. A damaged checkpoint
    is moved aside and made again; nothing is deleted. Every store is locked, in one order, so that two
    jobs never train into one store at once nor wait for each other in a circle (a group's training job and an
    extension of it, a regrouped seed's job and its old group's). Nothing here loads torch unless an epoch is
    missing.
    """
    state_dirs = [Path(state_dir) for state_dir in state_dirs]
    with contextlib.ExitStack() as locks:
        for state_dir in sorted(state_dirs):  # one job at a time trains into a store (a run, its extensions, its group)
            locks.enter_context(exclusive_lock(state_dir / ".lock"))
        return _fill_stores(runs, data_path, state_dirs, targets)


def _fill_stores(runs: list[dict], data_path: str | Path, state_dirs: list[Path], targets: list[int]) -> list[dict]:
    epochs = saved_epochs(runs[0]["training"])
    dataset_sha256 = sha256_file(data_path)
    directories = []
    for run, state_dir in zip(runs, state_dirs):
        _adopt_loose_checkpoints(state_dir)
        directories.append(keyed_store(state_dir, checkpoint_lineage(run), dataset_sha256))
    stores = [_checkpoint_store(directory, checkpoint_lineage(run), dataset_sha256)
              for run, directory in zip(runs, directories)]
    missing = [sorted(epoch for epoch in set(targets) if epoch not in store) for store in stores]
    for run, directory, store, lacking in zip(runs, directories, stores, missing):
        if lacking:
            print(f"seed {run['seed']}, epochs {sorted(targets)}: {sorted(set(targets) - set(lacking))} kept in "
                  f"{directory}, computing {lacking}", file=sys.stderr)
    members = [index for index, lacking in enumerate(missing) if lacking]
    if not members:
        return stores
    from tqdm import tqdm

    from geomvol.train.loop import TrainingRun

    training = TrainingRun([runs[index] for index in members], data_path)

    def save() -> None:
        """Each member's checkpoint of the epoch in memory, into each store that lacks it."""
        paths = {position: directories[index] / checkpoint_name(training.epoch)
                 for position, index in enumerate(members) if training.epoch not in stores[index]}
        training.save(paths)
        for position, path in paths.items():
            write_file_record(path)
            stores[members[position]][training.epoch] = path

    todo = sorted(set().union(*(missing[index] for index in members)))
    if 0 in epochs:
        save()  # the fresh model is the untrained network (into the stores that lack it)
    seeds = ", ".join(str(runs[index]["seed"]) for index in members)
    with tqdm(total=max(todo), desc=f"train seed{'s' if len(members) > 1 else ''} {seeds}", unit="epoch",
              mininterval=5, file=sys.stderr) as bar:
        for target in todo:
            common = set.intersection(*(set(stores[index]) for index in members))
            nearest = max((epoch for epoch in common if epoch < target), default=None)
            if nearest is not None and nearest > training.epoch:  # a later checkpoint than the run in memory
                training.resume([stores[index][nearest] for index in members])
            bar.n = training.epoch
            while training.epoch < target:
                bar.set_postfix(training.train_epoch(), refresh=False)
                bar.update()
                if training.epoch in epochs:
                    save()
            save()
    return stores
