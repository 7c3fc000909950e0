"""Shared fixtures: tiny resolved configs and one trained run reused by several tests."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from geomvol.config import load_config, resolve_config
from geomvol.data import prepare_dataset
from geomvol.train import fit

ROOT = Path(__file__).resolve().parent.parent
SMOKE_CONFIG = ROOT / "workflow" / "configs" / "smoke.yaml"


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


def train_spec(experiment: dict, seed: int = 0) -> dict:
    return {"seed": seed, "model": experiment["model"], "training": experiment["training"]}


@pytest.fixture(scope="session")
def smoke_config() -> dict:
    return load_config(SMOKE_CONFIG)


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> dict:
    """A prepared data set and a finished training run of :func:`tiny_experiment`."""
    root = tmp_path_factory.mktemp("trained")
    experiment = tiny_experiment()
    data, manifest = root / "data" / "dataset.pt", root / "data" / "manifest.json"
    prepare_dataset(experiment["dataset"], data, manifest)
    checkpoints = fit(train_spec(experiment), data, root / "checkpoints", root / "train-state", root / "metrics.tsv")
    return {
        "root": root,
        "experiment": copy.deepcopy(experiment),
        "data": data,
        "manifest": manifest,
        "checkpoints": checkpoints,
    }
