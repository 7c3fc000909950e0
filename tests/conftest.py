"""Shared fixtures: the smoke config and its finished run, one trained run and one image run reused by several
tests, a synthetic MNIST root, and a stand-in conda. Helpers live in :mod:`helpers`."""

from __future__ import annotations

import copy
import os

import pytest

from geomvol.config import load_config
from geomvol.stages import prepare_dataset

from helpers import SMOKE_CONFIG, image_experiment, snakemake, tiny_experiment, train_with_metrics, training_run


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
    checkpoints = train_with_metrics(training_run(experiment), data, root / "checkpoints", root / "train-state", root / "metrics.tsv")
    return {
        "root": root,
        "experiment": copy.deepcopy(experiment),
        "data": data,
        "manifest": manifest,
        "checkpoints": checkpoints,
    }


@pytest.fixture(scope="session")
def mnist_root(tmp_path_factory):
    """A synthetic MNIST (60 training, 20 test images) in torchvision's layout."""
    from geomvol.data.images import write_synthetic

    root = tmp_path_factory.mktemp("mnist")
    write_synthetic("mnist", root, 60, 20, seed=0)
    return root


@pytest.fixture(scope="session")
def image_run(tmp_path_factory, mnist_root) -> dict:
    """A prepared synthetic MNIST and a finished training run of :func:`image_experiment`."""
    root = tmp_path_factory.mktemp("image-run")
    experiment = image_experiment(mnist_root)
    data, manifest = root / "data" / "dataset.pt", root / "data" / "manifest.json"
    prepare_dataset(experiment["dataset"], data, manifest)
    checkpoints = train_with_metrics(training_run(experiment), data, root / "checkpoints", root / "train-state", root / "metrics.tsv")
    return {"root": root, "experiment": experiment, "data": data, "manifest": manifest, "checkpoints": checkpoints}


@pytest.fixture
def conda_answers(tmp_path):
    """An environment whose PATH starts with a `conda` that answers Snakemake's checks and nothing else."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    conda = bin_dir / "conda"
    conda.write_text(f"""#!/bin/sh
case "$*" in
  "info --json") echo '{{"conda_prefix": "{tmp_path}/conda", "platform": "linux-64"}}';;
  "--version") echo "conda 24.11.0";;
  "config --get channel_priority --json") echo '{{"get": {{"channel_priority": "strict"}}}}';;
  *) echo "no conda here: refusing 'conda $*'" >&2; exit 1;;
esac
""")
    conda.chmod(0o755)
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    environment["PATH"] = f"{bin_dir}:{environment['PATH']}"
    return environment


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("smoke")
    result = snakemake(workdir, SMOKE_CONFIG)
    assert result.returncode == 0, result.stdout + result.stderr
    return workdir
