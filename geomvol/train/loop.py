"""One training loop: build, resume, ``train_one_epoch`` and ``evaluate`` (:class:`TrainingRun`).

The data set lives on the training device (images as uint8); each batch is
augmented there (:mod:`geomvol.train.augment`, images only) and turned into
model inputs (:func:`geomvol.data.prepare.model_inputs`). For images on CUDA, with
``mixed_precision``, the forward and backward passes run under bf16 autocast
and the model and its inputs use channels-last memory.

A run is one seed, or a group of seeds of the shallow net trained as one
ensemble (:class:`geomvol.models.shallow.ShallowEnsemble`): every member draws
its initial weights, batch orders and augmentations as its run on its own
does, and its checkpoints hold what that run's would (bitwise on the CPU: the
ensemble's batched products and the objective's summed loss give each member
the numbers and gradients it has on its own). The checkpoint store
(:func:`geomvol.train.checkpoint.fill_stores`) saves the run's epochs and
resumes it, bit for bit on the CPU.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import torch
from torch import nn

from geomvol.config import checkpoint_lineage
from geomvol.data.prepare import architecture_of, load_dataset, model_inputs, normalise
from geomvol.device import resolve_device
from geomvol.models import build_model
from geomvol.models.registry import feature_width
from geomvol.models.shallow import ShallowEnsemble
from geomvol.provenance import sha256_file
from geomvol.train.checkpoint import load_checkpoint, save_checkpoint
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
    """The training set on its device, and how a batch of it becomes model inputs: for each member of the run
    (one network, or a group of seeds trained as one ensemble), the generator of its augmentation draws."""

    def __init__(self, data: dict, device: torch.device, dtype: torch.dtype, augmentation: dict, mixed_precision: bool,
                 seeds: list[int]):
        self.data = data
        self.dtype = dtype
        self.x, self.y = data["x"].to(device), data["y"].to(device)
        self.x_test = data["x_test"].to(device) if "x_test" in data else None
        self.y_test = data["y_test"].to(device) if "y_test" in data else None
        self.augmentation = augmentation if self.x.dtype == torch.uint8 else None
        self.generators = [torch.Generator(device=device).manual_seed(seed) for seed in seeds]  # augmentation draws
        fast = device.type == "cuda" and mixed_precision and self.x.dtype == torch.uint8  # images on a GPU
        self.autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=fast)
        self.memory_format = torch.channels_last if fast else torch.contiguous_format

    @property
    def members(self) -> int:
        return len(self.generators)

    def inputs(self, x: torch.Tensor, train: bool) -> torch.Tensor:
        """Model inputs of a batch, the members' batches one after the other (augmented each with its own draws)."""
        if train and self.augmentation is not None:
            from geomvol.train.augment import augment  # torchvision: imported for images only

            x = torch.cat([augment(part, self.augmentation, generator)
                           for part, generator in zip(x.chunk(self.members), self.generators)])
        return model_inputs(x, self.data, self.dtype).contiguous(memory_format=self.memory_format)

    def views(self, x: torch.Tensor, views) -> tuple[torch.Tensor, ...]:
        """Random views (:class:`geomvol.train.augment.ViewSpec`) of a uint8 batch, as model inputs (one member)."""
        from geomvol.train.augment import random_view

        (generator,) = self.generators
        images = x.to(self.dtype) / self.data["pixel_max"]
        return tuple(
            normalise(random_view(images, view, generator), self.data).contiguous(memory_format=self.memory_format)
            for view in views
        )


def train_one_epoch(model, objective, optimizer, batches: Batches, batch_size: int, drop_last: bool,
                    generators: list[torch.Generator]) -> tuple[list[float], list[float] | None]:
    """One pass for each member, in a random order drawn from its generator (``drop_last``: its full batches
    only); returns each member's mean loss and (supervised) accuracy over the images it took. A step takes
    every member's next batch; the objective's loss, summed over members, gives each member its own gradient."""
    model.train()
    objective.train()
    x, y = batches.x, batches.y
    members = len(generators)
    loss_sum = torch.zeros(members, device=x.device)
    correct = torch.zeros(members, dtype=torch.long, device=x.device)
    orders = torch.stack([torch.randperm(x.shape[0], generator=generator) for generator in generators]).to(x.device)
    batch_size = min(batch_size, x.shape[0])  # one full batch at most, as the study's min(batchsize, N)
    taken = x.shape[0] - x.shape[0] % batch_size if drop_last else x.shape[0]
    for start in range(0, taken, batch_size):
        batch = orders[:, start:start + batch_size]  # (members, B): member m's batch in row m
        flat = batch.reshape(-1)
        with batches.autocast:
            loss, losses, batch_correct = objective(model, batches, x[flat], y[flat])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += losses * batch.shape[1]
        if batch_correct is not None:
            correct += batch_correct
    accuracy = [value / taken for value in correct.tolist()] if objective.supervised else None
    return [value / taken for value in loss_sum.tolist()], accuracy


@torch.no_grad()
def evaluate(model, batches: Batches) -> tuple[list[float], list[float]]:
    """Each member's mean loss and accuracy on the test split, in eval mode, without augmentation."""
    model.eval()
    x, y = batches.x_test, batches.y_test
    members = batches.members
    loss_sum = torch.zeros(members, device=x.device)
    correct = torch.zeros(members, dtype=torch.long, device=x.device)
    for start in range(0, x.shape[0], EVALUATION_BATCH):
        inputs = batches.inputs(x[start:start + EVALUATION_BATCH], train=False)
        with batches.autocast:  # the members' rows one after the other
            logits = model(inputs if members == 1 else inputs.repeat(members, *[1] * (inputs.dim() - 1)))
        target = y[start:start + EVALUATION_BATCH]
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # bf16 under autocast
        for member, member_logits in enumerate(logits.chunk(members)):
            loss_sum[member] += nn.functional.cross_entropy(member_logits, target, reduction="sum")
            correct[member] += (member_logits.argmax(dim=1) == target).sum()
    return ([value / x.shape[0] for value in loss_sum.tolist()], [value / x.shape[0] for value in correct.tolist()])


def load_pretrained(members: list, architecture: dict) -> None:
    """Load a model section's pretrained ``weights`` into each member (its epoch 0), saying on stderr which
    tensors keep their initialisation (another shape: a head for other classes). The weights are read once."""
    from geomvol.models.registry import pretrained_state, pretrained_tensors

    tensors = pretrained_tensors(architecture)
    for member in members:
        state, kept = pretrained_state(architecture, member, tensors)
        member.load_state_dict(state)
    print(f"weights {architecture['weights']}: {len(state) - len(kept)} of {len(state)} tensors loaded"
          + (f"; kept from initialisation (another shape): {', '.join(kept)}" if kept else ""), file=sys.stderr)


class TrainingRun:
    """A training run in memory, for one seed or a group of seeds trained as one ensemble: its model,
    objective, optimiser, batches, and each member's generators and history, built from the runs (seed, model
    and training sections, alike but for the seed) and the data set, saved to and resumed from one checkpoint
    per member, one epoch at a time. ``epoch`` is the number of passes the model in memory has completed
    (a fresh model: 0). Each member starts from the weights and draws the batch orders and augmentations of
    its own run on its own, and its checkpoints hold what that run's would."""

    def __init__(self, runs: list[dict], data_path: str | Path):
        self.runs = runs
        training = runs[0]["training"]
        seeds = [run["seed"] for run in runs]
        torch.set_num_threads(training["threads"])
        device = resolve_device(training["device"])
        dtype = getattr(torch, training["dtype"])
        self.dataset_sha256 = sha256_file(data_path)
        data = load_dataset(data_path)
        self.batches = Batches(data, device, dtype, training["augmentation"], training["mixed_precision"], seeds)
        self.lineages = [checkpoint_lineage(run) for run in runs]  # what a checkpoint records, whatever the schedule
        self.architecture = architecture_of(runs[0]["model"], data)
        members, self.member_rng = [], []
        for seed in seeds:  # each member's initial weights as its run on its own draws them
            torch.manual_seed(seed)
            members.append(build_model(self.architecture).to(device=device, dtype=dtype,
                                                              memory_format=self.batches.memory_format))
            self.member_rng.append(torch.get_rng_state())
        if "weights" in self.architecture:
            load_pretrained(members, self.architecture)
        self.model = members[0] if len(members) == 1 else ShallowEnsemble(members)
        objective = training["objective"]
        backbone_width = (feature_width(members[0], self.architecture, objective["features"])
                          if "features" in objective else 0)
        self.objective = build_objective(objective, backbone_width).to(device=device, dtype=dtype)
        self.optimizer = build_optimizer([*self.model.parameters(), *self.objective.parameters()], training["optimizer"])
        self.generators = [torch.Generator().manual_seed(seed) for seed in seeds]  # batch orders
        history = {"epoch": [], "loss": []}
        if self.objective.supervised:
            history["accuracy"] = []
            if self.batches.x_test is not None:
                history.update(test_loss=[], test_accuracy=[])
        self.histories = [copy.deepcopy(history) for _ in seeds]
        self.epoch = 0

    @property
    def grouped(self) -> bool:
        return len(self.runs) > 1

    def _member_state(self, index: int) -> tuple[dict, dict, torch.Tensor]:
        """A member's (model state dict, optimiser state dict, torch RNG state), as its run on its own has them."""
        if not self.grouped:  # torch's global generator: as the run left it
            return self.model.state_dict(), self.optimizer.state_dict(), torch.get_rng_state()
        optimizer = self.optimizer.state_dict()
        member_optimizer = {"param_groups": optimizer["param_groups"], "state": {
            key: {name: value[index].clone() if _per_entry(value) else value for name, value in state.items()}
            for key, state in optimizer["state"].items()}}
        return self.model.member(index).state_dict(), member_optimizer, self.member_rng[index]

    def save(self, paths: dict[int, Path]) -> None:
        """Write members (index -> checkpoint path) as they are now (everything to continue each bit for bit)."""
        for index, path in paths.items():
            model, optimizer, rng = self._member_state(index)
            save_checkpoint(
                {
                    "model": {k: v.cpu() for k, v in model.items()},
                    "model_spec": self.architecture,
                    "optimizer": optimizer,
                    "objective": {k: v.cpu() for k, v in self.objective.state_dict().items()},
                    "rng": {
                        "torch": rng,
                        "batch_order": self.generators[index].get_state(),
                        "augmentation": self.batches.generators[index].get_state(),
                    },
                    "epoch": self.epoch,
                    "history": self.histories[index],
                    "train_spec": self.lineages[index],
                    "dataset_sha256": self.dataset_sha256,
                },
                path,
            )

    def resume(self, paths: list[Path]) -> None:
        """Continue from each member's checkpoint (one epoch for all): the model, optimiser and every RNG as saved."""
        states = [load_checkpoint(path) for path in paths]
        if self.grouped:
            self.model.load_members([state["model"] for state in states])
            optimizers = [state["optimizer"] for state in states]
            self.optimizer.load_state_dict({"param_groups": optimizers[0]["param_groups"], "state": {
                key: {name: torch.stack([member["state"][key][name] for member in optimizers])
                      if _per_entry(value) else value for name, value in state.items()}
                for key, state in optimizers[0]["state"].items()}})
            self.member_rng = [state["rng"]["torch"] for state in states]
        else:
            (state,) = states
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            torch.set_rng_state(state["rng"]["torch"])
        self.objective.load_state_dict(states[0]["objective"])
        for index, state in enumerate(states):
            self.generators[index].set_state(state["rng"]["batch_order"])
            self.batches.generators[index].set_state(state["rng"]["augmentation"])
        self.histories = [state["history"] for state in states]
        self.epoch = states[0]["epoch"]
        print(f"resuming from epoch {self.epoch} ({', '.join(map(str, paths))})", file=sys.stderr)

    def train_epoch(self) -> dict[str, str]:
        """One more pass over the training set for every member (and the test split's loss and accuracy, when
        it has one); returns the numbers to show (of the first member)."""
        losses, accuracies = train_one_epoch(self.model, self.objective, self.optimizer, self.batches,
                                             self.runs[0]["training"]["batch_size"],
                                             self.runs[0]["training"]["drop_last"], self.generators)
        self.epoch += 1
        tests = evaluate(self.model, self.batches) if "test_loss" in self.histories[0] else None
        for index, history in enumerate(self.histories):
            history["epoch"].append(self.epoch)
            history["loss"].append(losses[index])
            if accuracies is not None:
                history["accuracy"].append(accuracies[index])
            if tests is not None:
                history["test_loss"].append(tests[0][index])
                history["test_accuracy"].append(tests[1][index])
        shown = {"loss": f"{losses[0]:.4f}"}
        if accuracies is not None:
            shown["accuracy"] = f"{accuracies[0]:.3f}"
        if tests is not None:
            shown["test_accuracy"] = f"{tests[1][0]:.3f}"
        return shown


def _per_entry(value) -> bool:
    """Whether an optimiser state value is per parameter entry (a tensor shaped like its parameter: a
    member's, or the members' stacked), not one for all (Adam's step count: a 0-d tensor)."""
    return isinstance(value, torch.Tensor) and value.dim() > 0
