"""One training loop: build, resume, ``train_one_epoch`` and ``evaluate``, into a checkpoint store.

The data set lives on the training device (images as uint8); each batch is
augmented there (:mod:`geomvol.train.augment`, images only) and turned into
model inputs (:func:`geomvol.data.prepare.model_inputs`). For images on CUDA, with
``mixed_precision``, the forward and backward passes run under bf16 autocast
and the model and its inputs use channels-last memory.

:func:`fill_store` writes a checkpoint after each saved epoch into a
checkpoint store (a state directory outside the pipeline's declared outputs,
kept between runs), which the ``train`` and ``extend_training`` stages
(:mod:`geomvol.stages`) publish from. Run again, it computes only the saved
epochs the store lacks, each
from the nearest earlier checkpoint of the same lineage (the same seed,
model, data and training settings but for the schedule): a killed run
resumes from its last saved epoch, training longer continues from the last
one, and an epoch added between two saved ones is trained from the earlier.
Since a checkpoint holds every RNG state, each checkpoint comes out
bit-identical on the CPU to an uninterrupted run's.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from geomvol.catalogue import feature_width
from geomvol.config import checkpoint_lineage, saved_epochs
from geomvol.data.prepare import load_dataset, model_inputs
from geomvol.data.prepare import normalise
from geomvol.device import resolve_device
from geomvol.io import exclusive_lock
from geomvol.models import build_model
from geomvol.models.registry import model_spec
from geomvol.provenance import sha256_file
from geomvol.errors import CheckpointError
from geomvol.train.augment import augment, random_view
from geomvol.train.checkpoint import checkpoint_name, load_checkpoint, save_checkpoint
from geomvol.train.objectives import build_objective

EVALUATION_BATCH = 1024


def build_optimizer(parameters, optimizer: dict) -> torch.optim.Optimizer:
    """The optimiser of a resolved ``training.optimizer`` section."""
    if optimizer["name"] == "sgd":
        return torch.optim.SGD(parameters, lr=optimizer["lr"], momentum=optimizer["momentum"],
                               weight_decay=optimizer["weight_decay"])
    if optimizer["name"] == "adam":
        return torch.optim.Adam(parameters, lr=optimizer["lr"], weight_decay=optimizer["weight_decay"])
    raise ValueError(f"unknown optimizer {optimizer['name']!r}")


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


def fill_store(run: dict, data_path: str | Path, state_dir: str | Path, targets: list[int]) -> dict[int, Path]:
    """Make the checkpoint store ``state_dir`` hold each epoch of ``targets``; return its checkpoints by epoch.

    ``run`` holds ``seed``, ``model`` and ``training`` (resolved config sections). Only the targets missing
    from the store are computed, each from the nearest earlier checkpoint there of the same lineage
    (:func:`geomvol.config.checkpoint_lineage`); every saved epoch of ``run`` passed on the way is kept too.
    """
    state_dir = Path(state_dir)
    with exclusive_lock(state_dir / ".lock"):  # one job at a time trains into a store (a run and its extensions)
        return _fill_store(run, data_path, state_dir, targets)


class TrainingRun:
    """A training run in memory: its model, objective, optimiser, batches, generators and history, built
    from the run (seed, model and training sections) and the data set, saved to and resumed from a
    checkpoint, one epoch at a time.
    ``epoch`` is the number of passes the model in memory has completed (a fresh model: 0)."""

    def __init__(self, run: dict, data_path: str | Path):
        training = run["training"]
        self.run = run
        torch.set_num_threads(training["threads"])
        device = resolve_device(training["device"])
        dtype = getattr(torch, training["dtype"])
        self.dataset_sha256 = sha256_file(data_path)
        data = load_dataset(data_path)
        n_classes = len(data["classes"]) if "classes" in data else int(data["y"].max()) + 1
        self.batches = Batches(data, device, dtype, training["augmentation"], training["mixed_precision"], run["seed"])
        self.lineage = checkpoint_lineage(run)  # what a checkpoint records: the same file whatever the schedule
        torch.manual_seed(run["seed"])
        self.architecture = model_spec(run["model"], input_shape=list(data["x"].shape[1:]), n_classes=n_classes)
        self.model = build_model(self.architecture).to(device=device, dtype=dtype, memory_format=self.batches.memory_format)
        objective = training["objective"]
        backbone_width = (feature_width(self.architecture, objective["features"], self.architecture["input_shape"])
                          if "features" in objective else 0)
        self.objective = build_objective(objective, backbone_width).to(device=device, dtype=dtype)
        self.optimizer = build_optimizer([*self.model.parameters(), *self.objective.parameters()], training["optimizer"])
        self.generator = torch.Generator().manual_seed(run["seed"])  # batch order
        self.history = {"epoch": [], "loss": []}
        if self.objective.supervised:
            self.history["accuracy"] = []
            if self.batches.x_test is not None:
                self.history.update(test_loss=[], test_accuracy=[])
        self.epoch = 0

    def save(self, path: Path) -> None:
        """Write the run as it is now as a checkpoint (everything to continue it bit for bit)."""
        save_checkpoint(
            {
                "model": {k: v.cpu() for k, v in self.model.state_dict().items()},
                "model_spec": self.architecture,
                "optimizer": self.optimizer.state_dict(),
                "objective": {k: v.cpu() for k, v in self.objective.state_dict().items()},
                "rng": {
                    "torch": torch.get_rng_state(),
                    "batch_order": self.generator.get_state(),
                    "augmentation": self.batches.generator.get_state(),
                },
                "epoch": self.epoch,
                "history": self.history,
                "train_spec": self.lineage,
                "dataset_sha256": self.dataset_sha256,
            },
            path,
        )

    def resume(self, path: Path) -> None:
        """Continue from a checkpoint of the same lineage: the model, optimiser and every RNG as it saved them."""
        state = load_checkpoint(path)
        self.model.load_state_dict(state["model"])
        self.objective.load_state_dict(state["objective"])
        self.optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"]["torch"])
        self.generator.set_state(state["rng"]["batch_order"])
        self.batches.generator.set_state(state["rng"]["augmentation"])
        self.history = state["history"]
        self.epoch = state["epoch"]
        print(f"resuming from epoch {self.epoch} ({path})", file=sys.stderr)

    def train_epoch(self) -> dict[str, str]:
        """One more pass over the training set (and the test split's loss and accuracy, when it has one);
        returns the numbers to show."""
        loss, accuracy = train_one_epoch(self.model, self.objective, self.optimizer, self.batches,
                                         self.run["training"]["batch_size"], self.generator)
        self.epoch += 1
        history = self.history
        history["epoch"].append(self.epoch)
        history["loss"].append(loss)
        shown = {"loss": f"{loss:.4f}"}
        if accuracy is not None:
            history["accuracy"].append(accuracy)
            shown["accuracy"] = f"{accuracy:.3f}"
        if "test_loss" in history:
            test_loss, test_accuracy = evaluate(self.model, self.batches)
            history["test_loss"].append(test_loss)
            history["test_accuracy"].append(test_accuracy)
            shown["test_accuracy"] = f"{test_accuracy:.3f}"
        return shown


def _fill_store(run: dict, data_path: str | Path, state_dir: Path, targets: list[int]) -> dict[int, Path]:
    epochs = saved_epochs(run["training"])
    training = TrainingRun(run, data_path)
    store = _checkpoint_store(state_dir, training.lineage, training.dataset_sha256)

    def save() -> None:
        store[training.epoch] = state_dir / checkpoint_name(training.epoch)
        training.save(store[training.epoch])

    missing = sorted(epoch for epoch in set(targets) if epoch not in store)
    if missing:
        print(f"epochs {sorted(targets)}: {sorted(set(targets) - set(missing))} kept in {state_dir}, computing {missing}",
              file=sys.stderr)
    if missing and 0 in epochs and 0 not in store:
        save()  # the fresh model is the untrained network
    with tqdm(total=max(missing, default=0), desc=f"train seed {run['seed']}", unit="epoch", mininterval=5,
              file=sys.stderr, disable=not missing) as bar:
        for target in missing:
            nearest = max((epoch for epoch in store if epoch < target), default=None)
            if nearest is not None and nearest > training.epoch:  # a later checkpoint than the run in memory
                training.resume(store[nearest])
            bar.n = training.epoch
            while training.epoch < target:
                bar.set_postfix(training.train_epoch(), refresh=False)
                bar.update()
                if training.epoch in epochs and training.epoch not in store:
                    save()
            if target not in store:
                save()
    return store
