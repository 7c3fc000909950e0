"""Shared fixtures: the smoke config and its finished run, one trained run and one image run reused by several
tests, a synthetic MNIST root, and a stand-in conda. Helpers live in :mod:`helpers`.

Under pytest-xdist (``-n auto``, the README's whole-suite command) the tests are spread over the workers a group
at a time (``--dist loadgroup --no-loadscope-reorder``, set in pyproject.toml), so a file's module-scoped runs
are made once, the groups with the longest runs first; the smoke run is made once for all workers
(:func:`helpers.made_once`)."""

from __future__ import annotations

import copy
import os

import pytest

from geomvol.config import load_config
from geomvol.stages import prepare_dataset

from helpers import SMOKE_CONFIG, image_experiment, made_once, snakemake, tiny_experiment, train_with_metrics, training_run


# Under pytest-xdist, what each worker takes at a time: a file's tests, or every test that reads the smoke run.
# Longest first, so that no worker is left with one of them at the end while the others idle: xdist hands each
# worker one group in this order, and a second to a worker whose first is one or two tests. Here the SLURM run
# (mostly waiting on its cluster, its jobs small) and then the faults go to one worker, while the smoke run, on
# the other, has the CPUs nearly to itself at first; its readers (among them the comparison of the two runs),
# then test_config, follow it there; the rest as they free.
LONGEST_FIRST = ("test_slurm.py", "smoke-run", "test_faults.py", "test_config.py", "test_reruns.py")


def _xdist_group(item) -> str:
    return "smoke-run" if "smoke_run" in item.fixturenames else item.path.name


def pytest_itemcollected(item):  # as each test is collected, before pytest-xdist reads the groups
    item.add_marker(pytest.mark.xdist_group(_xdist_group(item)))


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    order = {group: rank for rank, group in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: order.get(_xdist_group(item), len(order)))  # stable: files keep their order


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node, ids):
    """On pytest-xdist's controller, when a worker has collected: its test ids must carry their groups."""
    if node.config.getoption("dist") == "loadgroup" and ids and "@" not in ids[0]:
        raise pytest.UsageError("pytest-xdist's --dist loadgroup did not group the tests (their ids carry no "
                                "'@group'): install the versions pyproject.toml's test extra names")


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
    write_synthetic("MNIST", root, 60, 20, seed=0)
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
    """A working directory where the smoke config has run to the end (read it; copy it to change it)."""
    def run(workdir):
        result = snakemake(workdir, SMOKE_CONFIG)
        assert result.returncode == 0, result.stdout + result.stderr

    return made_once(tmp_path_factory, "smoke", run)
