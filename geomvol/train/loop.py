"""One training loop: ``train_one_epoch``, ``evaluate`` and ``fit``.

The data set lives on the training device (images as uint8); each batch is
augmented there (:mod:`geomvol.train.augment`, images only) and turned into
model inputs (:func:`geomvol.data.model_inputs`). For images on CUDA, with
``mixed_precision``, the forward and backward passes run under bf16 autocast
and the model and its inputs use channels-last memory.

``fit`` writes a checkpoint after each saved epoch into a checkpoint store
(a state directory outside the pipeline's declared outputs, kept between
runs) and hard-links the saved epochs into the output directory when it is
done. Run again, it computes only the saved epochs the store lacks, each
from the nearest earlier checkpoint of the same lineage (the same seed,
model, data and training settings but for the schedule): a killed run
resumes from its last saved epoch, training longer continues from the last
one, and an epoch added between two saved ones is trained from the earlier.
Since a checkpoint holds every RNG state, each checkpoint comes out
bit-identical on the CPU to an uninterrupted run's.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from geomvol.config import checkpoint_lineage, feature_width, saved_epochs
from geomvol.data import load_dataset, model_inputs
from geomvol.data.prepare import normalise
from geomvol.device import resolve_device
from geomvol.io import atomic_path, exclusive_lock
from geomvol.models import build_model
from geomvol.models.registry import model_spec
from geomvol import __version__
from geomvol.provenance import git_commit, sha256_file
from geomvol.errors import CheckpointError
from geomvol.train.augment import augment, random_view
from geomvol.train.checkpoint import checkpoint_name, load_checkpoint, save_checkpoint, write_metrics
from geomvol.train.objectives import build_objective

EVALUATION_BATCH = 1024


def build_optimizer(parameters, spec: dict) -> torch.optim.Optimizer:
    if spec["name"] == "sgd":
        return torch.optim.SGD(parameters, lr=spec["lr"], momentum=spec["momentum"], weight_decay=spec["weight_decay"])
    if spec["name"] == "adam":
        return torch.optim.Adam(parameters, lr=spec["lr"], weight_decay=spec["weight_decay"])
    raise ValueError(f"unknown optimizer {spec['name']!r}")


class Batches:
    """The training set on its device, and how a batch of it becomes model inputs."""

    def __init__(self, data: dict, device: torch.device, dtype: torch.dtype, augmentation: dict, mixed_precision: bool,
                 seed: int):
        self.data = data
        self.dtype = dtype
        self.x, self.y = data["x"].to(device), data["y"].to(device)
        self.x_test = data["x_test"].to(device) if "x_test" in data else None
        self.y_test = data["y_test"].to(device) if "y_test" in data else None
        self.augmentation = augmentation if self.x.dtype == torch.uint8 else None
        self.generator = torch.Generator(device=device).manual_seed(seed)  # augmentation draws
        fast = device.type == "cuda" and mixed_precision and self.x.dtype == torch.uint8  # images on a GPU
        self.autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=fast)
        self.memory_format = torch.channels_last if fast else torch.contiguous_format

    def inputs(self, x: torch.Tensor, train: bool) -> torch.Tensor:
        if train and self.augmentation is not None:
            x = augment(x, self.augmentation, self.generator)
        return model_inputs(x, self.data, self.dtype).contiguous(memory_format=self.memory_format)

    def views(self, x: torch.Tensor, views) -> tuple[torch.Tensor, ...]:
        """Random views (:class:`geomvol.train.augment.ViewSpec`) of a uint8 batch, as model inputs."""
        images = x.to(self.dtype) / self.data["pixel_max"]
        return tuple(
            normalise(random_view(images, view, self.generator), self.data).contiguous(memory_format=self.memory_format)
            for view in views
        )


def train_one_epoch(model, objective, optimizer, batches: Batches, batch_size: int, generator) -> tuple[float, float | None]:
    """One pass in a random order drawn from ``generator``; returns the mean loss and (supervised) accuracy."""
    model.train()
    objective.train()
    x, y = batches.x, batches.y
    loss_sum = torch.zeros((), device=x.device)
    correct = torch.zeros((), dtype=torch.long, device=x.device)
    order = torch.randperm(x.shape[0], generator=generator).to(x.device)
    for batch in order.split(batch_size):
        with batches.autocast:
            loss, batch_correct = objective(model, batches, x[batch], y[batch])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach() * batch.numel()
        if batch_correct is not None:
            correct += batch_correct
    accuracy = correct.item() / x.shape[0] if objective.supervised else None
    return loss_sum.item() / x.shape[0], accuracy


@torch.no_grad()
def evaluate(model, batches: Batches) -> tuple[float, float]:
    """Mean loss and accuracy on the test split, in eval mode, without augmentation."""
    model.eval()
    x, y = batches.x_test, batches.y_test
    loss_sum = torch.zeros((), device=x.device)
    correct = torch.zeros((), dtype=torch.long, device=x.device)
    for start in range(0, x.shape[0], EVALUATION_BATCH):
        with batches.autocast:
            logits = model(batches.inputs(x[start:start + EVALUATION_BATCH], train=False))
        target = y[start:start + EVALUATION_BATCH]
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # bf16 under autocast
        loss_sum += nn.functional.cross_entropy(logits, target, reduction="sum")
        correct += (logits.argmax(dim=1) == target).sum()
    return loss_sum.item() / x.shape[0], correct.item() / x.shape[0]


def _checkpoint_store(state_dir: Path, lineage: dict, dataset_sha256: str) -> dict[int, Path]:
    """The checkpoints in ``state_dir`` that a run of ``lineage`` on this data set can use, by epoch; any
    other checkpoint there (another config or data set, or unreadable) is removed, saying why."""
    usable = {}
    for path in sorted(state_dir.glob("epoch_*.pt")):
        try:
            state = load_checkpoint(path)
        except CheckpointError as error:
            print(f"removing {error}", file=sys.stderr)
            path.unlink()
            continue
        if checkpoint_lineage(state["train_spec"]) != lineage or state["dataset_sha256"] != dataset_sha256:
            print(f"removing {path}: written for another training config or data set", file=sys.stderr)
            path.unlink()
            continue
        usable[state["epoch"]] = path
    return usable


def fill_store(spec: dict, data_path: str | Path, state_dir: str | Path, targets: list[int]) -> dict[int, Path]:
    """Make the checkpoint store ``state_dir`` hold each epoch of ``targets``; return its checkpoints by epoch.

    ``spec`` holds ``seed``, ``model`` and ``training`` (resolved config sections). Only the targets missing
    from the store are computed, each from the nearest earlier checkpoint there of the same lineage
    (:func:`geomvol.config.checkpoint_lineage`); every saved epoch of ``spec`` passed on the way is kept too.
    """
    state_dir = Path(state_dir)
    with exclusive_lock(state_dir / ".lock"):  # one job at a time trains into a store (a run and its extensions)
        return _fill_store(spec, data_path, state_dir, targets)


def _fill_store(spec: dict, data_path: str | Path, state_dir: Path, targets: list[int]) -> dict[int, Path]:
    training = spec["training"]
    epochs = saved_epochs(training)
    torch.set_num_threads(training["threads"])
    device = resolve_device(training["device"])
    dtype = getattr(torch, training["dtype"])
    dataset_sha256 = sha256_file(data_path)
    data = load_dataset(data_path)
    n_classes = len(data["classes"]) if "classes" in data else int(data["y"].max()) + 1
    batches = Batches(data, device, dtype, training["augmentation"], training["mixed_precision"], spec["seed"])
    lineage = checkpoint_lineage(spec)  # what a checkpoint records: the same file whatever the schedule

    torch.manual_seed(spec["seed"])
    architecture = model_spec(spec["model"], input_shape=list(data["x"].shape[1:]), n_classes=n_classes)
    model = build_model(architecture).to(device=device, dtype=dtype, memory_format=batches.memory_format)
    objective_spec = training["objective"]
    backbone_width = (feature_width(architecture, objective_spec["features"], architecture["input_shape"])
                      if "features" in objective_spec else 0)
    objective = build_objective(objective_spec, backbone_width).to(device=device, dtype=dtype)
    optimizer = build_optimizer([*model.parameters(), *objective.parameters()], training["optimizer"])
    generator = torch.Generator().manual_seed(spec["seed"])
    history = {"epoch": [], "loss": []}
    if objective.supervised:
        history["accuracy"] = []
        if batches.x_test is not None:
            history.update(test_loss=[], test_accuracy=[])

    def save(epoch: int) -> None:
        path = state_dir / checkpoint_name(epoch)
        save_checkpoint(
            {
                "model": {k: v.cpu() for k, v in model.state_dict().items()},
                "model_spec": architecture,
                "optimizer": optimizer.state_dict(),
                "objective": {k: v.cpu() for k, v in objective.state_dict().items()},
                "rng": {
                    "torch": torch.get_rng_state(),
                    "batch_order": generator.get_state(),
                    "augmentation": batches.generator.get_state(),
                },
                "epoch": epoch,
                "history": history,
                "train_spec": lineage,
                "dataset_sha256": dataset_sha256,
            },
            path,
        )
        store[epoch] = path

    def load(path: Path) -> int:
        nonlocal history
        state = load_checkpoint(path)
        model.load_state_dict(state["model"])
        objective.load_state_dict(state["objective"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"]["torch"])
        generator.set_state(state["rng"]["batch_order"])
        batches.generator.set_state(state["rng"]["augmentation"])
        history = state["history"]
        print(f"resuming from epoch {state['epoch']} ({path})", file=sys.stderr)
        return state["epoch"]

    store = _checkpoint_store(state_dir, lineage, dataset_sha256)
    missing = sorted(epoch for epoch in set(targets) if epoch not in store)
    if missing:
        print(f"epochs {sorted(targets)}: {sorted(set(targets) - set(missing))} kept in {state_dir}, computing {missing}",
              file=sys.stderr)
    if missing and 0 in epochs and 0 not in store:
        save(0)  # the fresh model is the untrained network
    current = 0  # the epoch the model in memory has completed (a fresh model: 0)
    with tqdm(total=max(missing, default=0), desc=f"train seed {spec['seed']}", unit="epoch", mininterval=5,
              file=sys.stderr, disable=not missing) as bar:
        for target in missing:
            nearest = max((epoch for epoch in store if epoch < target), default=None)
            if nearest is not None and nearest > current:  # a later checkpoint than the one in memory
                current = load(store[nearest])
            bar.n = current
            for epoch in range(current + 1, target + 1):
                loss, accuracy = train_one_epoch(model, objective, optimizer, batches, training["batch_size"], generator)
                history["epoch"].append(epoch)
                history["loss"].append(loss)
                shown = {"loss": f"{loss:.4f}"}
                if accuracy is not None:
                    history["accuracy"].append(accuracy)
                    shown["accuracy"] = f"{accuracy:.3f}"
                if "test_loss" in history:
                    test_loss, test_accuracy = evaluate(model, batches)
                    history["test_loss"].append(test_loss)
                    history["test_accuracy"].append(test_accuracy)
                    shown["test_accuracy"] = f"{test_accuracy:.3f}"
                bar.set_postfix(shown, refresh=False)
                bar.update()
                if epoch in epochs and epoch not in store:
                    save(epoch)
            current = target
            if target not in store:
                save(target)
    return store


def fit(spec: dict, data_path: str | Path, output_dir: str | Path, state_dir: str | Path,
        metrics_path: str | Path | None = None) -> list[Path]:
    """Train as ``spec`` says (into the checkpoint store ``state_dir``, computing only what it lacks); publish
    every saved epoch into ``output_dir`` with a manifest, and (``metrics_path``) the metrics of the last one.
    Return the checkpoint paths in ``output_dir``."""
    epochs = saved_epochs(spec["training"])
    store = fill_store(spec, data_path, state_dir, epochs)
    output_dir = Path(output_dir)
    with atomic_path(output_dir) as tmp:
        tmp.mkdir()
        checkpoints = []
        for epoch in epochs:
            _link(store[epoch], tmp / checkpoint_name(epoch))
            checkpoints.append({"epoch": epoch, "file": checkpoint_name(epoch), "sha256": sha256_file(store[epoch])})
        manifest = {"git_commit": git_commit(), "geomvol_version": __version__, "checkpoints": checkpoints}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    if metrics_path is not None:
        write_metrics(store[epochs[-1]], metrics_path)
    return [output_dir / checkpoint_name(epoch) for epoch in epochs]


def extend(spec: dict, data_path: str | Path, state_dir: str | Path, epoch: int, output: str | Path) -> Path:
    """Make the checkpoint of ``epoch`` (a saved epoch of ``spec``) in the store ``state_dir``, from the nearest
    earlier checkpoint there, and publish it as ``output``."""
    if epoch not in saved_epochs(spec["training"]):
        raise CheckpointError(f"epoch {epoch} is not a saved epoch of this training run ({saved_epochs(spec['training'])})")
    store = fill_store(spec, data_path, state_dir, [epoch])
    with atomic_path(output) as tmp:
        _link(store[epoch], tmp)
    return Path(output)


def _link(source: Path, target: Path) -> None:
    """``target`` as the same file as ``source`` (a hard link: same bytes and modification time), else a copy."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
