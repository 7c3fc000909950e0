"""Helpers several test files use: the checkout's paths, tiny resolved configs, a training run's spec, a
conv net and a flop counter, a kill-and-resume run, and Snakemake on the checkout's Snakefile."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from geomvol.config import resolve_config, saved_epochs
from geomvol.stages import publish_checkpoint, train, training_metrics

ROOT = Path(__file__).resolve().parent.parent
SMOKE_CONFIG = ROOT / "workflow" / "configs" / "smoke.yaml"


def smoke_experiments(path: Path, *names: str) -> Path:
    """A config file at ``path`` of the smoke config's experiments ``names`` alone (a Snakemake run or dry run of
    a few experiments, where the test needs no more: each experiment costs the DAG and the config check)."""
    import yaml

    experiments = yaml.safe_load(SMOKE_CONFIG.read_text())["experiments"]
    path.write_text(yaml.safe_dump({"experiments": {name: experiments[name] for name in names}}))
    return path


def tiny_experiment(**training) -> dict:
    """A resolved experiment small enough to train in well under a second."""
    config = {
        "experiments": {
            "tiny": {
                "dataset": {"n_points": 60},
                "model": {"width": 16},
                "training": {"epochs": 30, "batch_size": 20, "save_epochs": [10, 30], **training},
                "probe": {"grid": {"resolution": 9}, "device": "cpu"},
            }
        }
    }
    return resolve_config(config)["experiments"]["tiny"]


def conv_batchnorm_net() -> torch.nn.Module:
    """A small float64 conv -> BatchNorm (running statistics) -> GELU -> conv -> linear net in eval mode:
    (B, 3, 16, 16) -> (B, 10)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.GELU(),
        torch.nn.Conv2d(8, 4, 3, stride=2), torch.nn.Flatten(), torch.nn.Linear(4 * 7 * 7, 10),
    )
    net(torch.randn(16, 3, 16, 16))  # BatchNorm running statistics
    return net.double().eval().requires_grad_(False)


def flops(fn) -> tuple[int, object]:
    """(floating-point operations counted by torch's FlopCounterMode, result) of fn()."""
    with FlopCounterMode(display=False) as counter:
        result = fn()
    return counter.get_total_flops(), result


def training_run(experiment: dict, seed: int = 0) -> dict:
    """What ``fit`` takes: the seed, the model and the whole training section (run-time settings included)."""
    return {"seed": seed, "model": experiment["model"], "training": experiment["training"]}


def train_with_metrics(run: dict, data, output_dir, state_dir, metrics) -> list:
    """The train stage on one seed (a group of one; the data set's manifest beside it), the publish_checkpoint
    stage on every saved epoch (into ``<output_dir>-published/``) and the training_metrics stage on the last, as
    the pipeline's rules do; returns the published checkpoints."""
    output_dir = Path(output_dir)
    train([run], data, Path(data).with_name("manifest.json"), output_dir, [state_dir])
    epochs = saved_epochs(run["training"])
    training_metrics(output_dir, run["seed"], epochs[-1], metrics)
    published = output_dir.with_name(f"{output_dir.name}-published")
    return [publish_checkpoint(output_dir, run["seed"], epoch, published / f"epoch_{epoch}.pt") for epoch in epochs]


def image_experiment(root, name: str = "mnist", **probe) -> dict:
    """A resolved image experiment on a data root, small enough to train in a second."""
    config = {
        "experiments": {
            "img": {
                "dataset": {"name": name, "root": str(root), "n_train": 40, "n_test": 20},
                "model": {"name": "shallow", "width": 8, "weight_std": 0.05},
                "training": {"epochs": 4, "batch_size": 10, "save_epochs": {"every": 2},
                             "optimizer": {"name": "adam", "lr": 0.01},
                             "augmentation": {"crop_padding": 2, "horizontal_flip": True}},
                "probe": {"device": "cpu", "lines": [{"classes": [7, 6], "seed": 0}], **probe},
            }
        }
    }
    return resolve_config(config)["experiments"]["img"]


def killed_and_resumed(spec, data, tmp_path, monkeypatch) -> list:
    """Train ``spec``, dying inside epoch 3 (after epoch 2 was saved); train again; return the checkpoints."""
    from geomvol.train import loop

    original = loop.train_one_epoch
    calls = {"n": 0}

    def dies_in_epoch_three(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("killed")
        return original(*args, **kwargs)

    monkeypatch.setattr(loop, "train_one_epoch", dies_in_epoch_three)
    with pytest.raises(KeyboardInterrupt):
        train_with_metrics(spec, data, tmp_path / "ck", tmp_path / "state", tmp_path / "m.tsv")
    assert sorted(p.name for p in (tmp_path / "state").glob("*/epoch_*.pt")) == ["epoch_0.pt", "epoch_2.pt"]
    monkeypatch.setattr(loop, "train_one_epoch", original)
    return train_with_metrics(spec, data, tmp_path / "ck", tmp_path / "state", tmp_path / "m.tsv")


def with_examples(workdir) -> Path:
    """``workdir``, made, with the checkout's examples/ linked into it (unless it has its own): the smoke config
    names examples/models.py and examples/checkpoints/ relative to the working directory, as run from the
    checkout."""
    examples = Path(workdir) / "examples"
    examples.parent.mkdir(parents=True, exist_ok=True)
    if not examples.exists() and not examples.is_symlink():
        examples.symlink_to(ROOT / "examples", target_is_directory=True)
    return Path(workdir)


def snakemake(workdir, configfile, *extra, wait=True, env=None):
    """Snakemake on the checkout's Snakefile in ``workdir`` (with the checkout's examples/: :func:`with_examples`),
    with ``configfile`` (None: the default config.yaml there), no workflow profile unless ``extra`` names one, in
    ``env`` (default: this process's environment)."""
    with_examples(workdir)
    profile = [] if "--workflow-profile" in extra else ["--workflow-profile", "none"]
    command = [
        sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(workdir),
        *(["--configfile", str(configfile)] if configfile else []), "--cores", "2", *profile, *extra,
    ]
    if not wait:
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    return subprocess.run(command, capture_output=True, text=True, env=env)


def set_key(path: str, value):
    """An edit of an experiment's config that sets the dotted key ``path`` to ``value``."""
    def edit(experiment):
        *parents, leaf = path.split(".")
        node = experiment
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return edit


def made_once(tmp_path_factory, name: str, make) -> Path:
    """A directory ``name`` filled by ``make(directory)`` once per test session: on its own, in a new temporary
    directory; under pytest-xdist, by the first worker that asks, under a file lock, while the others wait for it
    and then share it (or fail with its failure)."""
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        directory = tmp_path_factory.mktemp(name)
        make(directory)
        return directory
    shared = tmp_path_factory.getbasetemp().parent  # this session's, common to its workers
    directory, made, failed = shared / name, shared / f"{name}.made", shared / f"{name}.failed"
    with open(shared / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if failed.exists():
            pytest.fail(f"{name}, made by another worker, failed: {failed.read_text()}")
        if not made.exists():
            directory.mkdir()
            try:
                make(directory)
            except BaseException as error:
                failed.write_text(str(error))
                raise
            made.touch()
    return directory
