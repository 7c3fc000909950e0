"""One training loop: ``train_one_epoch``, ``evaluate`` and ``fit``.

The data set lives on the training device (images as uint8); each batch is
augmented there (:mod:`geomvol.train.augment`, images only) and turned into
model inputs (:func:`geomvol.data.model_inputs`). For images on CUDA, with
``mixed_precision``, the forward and backward passes run under bf16 autocast
and the model and its inputs use channels-last memory.

``fit`` writes a checkpoint after each saved epoch into a state directory
that lives outside the pipeline's declared outputs, and resumes from the
newest one there when it is run again with the same spec. When training
ends the checkpoints are hard-linked into the output directory and the
state directory is removed. A run killed part-way and run again therefore
ends with checkpoints bit-identical to an uninterrupted run.
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

from geomvol.config import feature_width, saved_epochs
from geomvol.data import load_dataset, model_inputs
from geomvol.data.prepare import normalise
from geomvol.device import resolve_device
from geomvol.io import atomic_path
from geomvol.models import build_model
from geomvol.models.registry import model_spec
from geomvol import __version__
from geomvol.provenance import git_commit, sha256_file
from geomvol.errors import CheckpointError
from geomvol.train.augment import augment, random_view
from geomvol.train.checkpoint import checkpoint_name, load_checkpoint, save_checkpoint
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


def _resume_point(state_dir: Path, spec: dict, dataset_sha256: str, epochs: list[int]) -> dict | None:
    """The newest checkpoint in ``state_dir`` written for this very spec and data set, or None."""
    for epoch in reversed(epochs):
        path = state_dir / checkpoint_name(epoch)
        if not path.exists():
            continue
        try:
            state = load_checkpoint(path)
        except CheckpointError as error:
            print(f"ignoring {error}", file=sys.stderr)
            continue
        if state["train_spec"] != spec or state["dataset_sha256"] != dataset_sha256:
            print(f"training config or data changed since {path} was written; starting from epoch 0", file=sys.stderr)
            return None
        return state
    return None


def fit(spec: dict, data_path: str | Path, output_dir: str | Path, state_dir: str | Path, metrics_path: str | Path) -> list[Path]:
    """Train as ``spec`` says; return the checkpoint paths in ``output_dir``.

    ``spec`` holds ``seed``, ``model`` and ``training`` (resolved config sections).
    """
    output_dir, state_dir = Path(output_dir), Path(state_dir)
    training = spec["training"]
    epochs = saved_epochs(training)
    torch.set_num_threads(training["threads"])
    device = resolve_device(training["device"])
    dataset_sha256 = sha256_file(data_path)
    data = load_dataset(data_path)
    n_classes = len(data["classes"]) if "classes" in data else int(data["y"].max()) + 1
    dtype = getattr(torch, training["dtype"])
    batches = Batches(data, device, dtype, training["augmentation"], training["mixed_precision"], spec["seed"])

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
    start = 0

    state_dir.mkdir(parents=True, exist_ok=True)
    resumed = _resume_point(state_dir, spec, dataset_sha256, epochs)
    if resumed is None:
        for stale in state_dir.glob("epoch_*.pt"):
            stale.unlink()
    else:
        model.load_state_dict(resumed["model"])
        objective.load_state_dict(resumed["objective"])
        optimizer.load_state_dict(resumed["optimizer"])
        torch.set_rng_state(resumed["rng"]["torch"])
        generator.set_state(resumed["rng"]["batch_order"])
        batches.generator.set_state(resumed["rng"]["augmentation"])
        history = resumed["history"]
        start = resumed["epoch"]
        print(f"resuming from epoch {start} ({state_dir / checkpoint_name(start)})", file=sys.stderr)

    def save(epoch: int) -> None:
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
                "train_spec": spec,
                "dataset_sha256": dataset_sha256,
            },
            state_dir / checkpoint_name(epoch),
        )

    if resumed is None:
        save(0)
    last = training["epochs"]
    with tqdm(total=last, initial=start, desc=f"train seed {spec['seed']}", unit="epoch", mininterval=5, file=sys.stderr) as bar:
        for epoch in range(start + 1, last + 1):
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
            if epoch in epochs:
                save(epoch)
            bar.set_postfix(shown, refresh=False)
            bar.update()

    return _publish(state_dir, output_dir, epochs, history, metrics_path)


def _publish(state_dir: Path, output_dir: Path, epochs: list[int], history: dict, metrics_path) -> list[Path]:
    """Hard-link the finished checkpoints into ``output_dir``, write metrics and a manifest (each checkpoint's
    sha256 and the code version), drop the state."""
    with atomic_path(output_dir) as tmp:
        tmp.mkdir()
        checkpoints = []
        for epoch in epochs:
            name = checkpoint_name(epoch)
            try:
                os.link(state_dir / name, tmp / name)
            except OSError:
                shutil.copy2(state_dir / name, tmp / name)
            checkpoints.append({"epoch": epoch, "file": name, "sha256": sha256_file(tmp / name)})
        manifest = {"git_commit": git_commit(), "geomvol_version": __version__, "checkpoints": checkpoints}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    columns = [c for c in ("epoch", "loss", "accuracy", "test_loss", "test_accuracy") if c in history]
    with atomic_path(metrics_path) as tmp:
        rows = ["\t".join(columns)] + [
            "\t".join(f"{value:.8g}" if isinstance(value, float) else str(value) for value in values)
            for values in zip(*(history[c] for c in columns))
        ]
        Path(tmp).write_text("\n".join(rows) + "\n")
    shutil.rmtree(state_dir)
    return [output_dir / checkpoint_name(epoch) for epoch in epochs]
