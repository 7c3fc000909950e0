"""`geomvol trace` on a real run (a copy of the smoke run), and tampering caught by trace and by Snakemake."""

import re
import shutil
import subprocess
import sys

import pytest
import torch

from geomvol.lineage import figure_lineage, trace
from geomvol.provenance import sha256_tree

from helpers import SMOKE_CONFIG, snakemake

pytestmark = [pytest.mark.slow, pytest.mark.workflow]


# `geomvol trace` with torch made unimportable: tracing reads checkpoints, stores and figures without it
TRACE_WITHOUT_TORCH = "import sys; sys.modules['torch'] = None; from geomvol.cli import main; sys.exit(main(sys.argv[1:]))"


def geomvol_trace(workdir, path, *extra):
    return subprocess.run([sys.executable, "-c", TRACE_WITHOUT_TORCH, "trace", path, *extra], cwd=workdir,
                          capture_output=True, text=True)


@pytest.fixture
def run_copy(smoke_run, tmp_path):
    """The finished smoke run, copied (modification times kept) so that tampering leaves the original alone."""
    copy = tmp_path / "run"
    shutil.copytree(smoke_run, copy, symlinks=True)
    return copy


def test_a_figure_carries_its_lineage_in_png_and_pdf(smoke_run):
    figures = smoke_run / "results" / "cifar10-smoke" / "figures"
    png, pdf = figure_lineage(figures / "blocks.png"), figure_lineage(figures / "blocks.pdf")
    assert png["store"] == pdf["store"] == "results/cifar10-smoke/volume.zarr"
    assert png["store_sha256"] == pdf["store_sha256"] == sha256_tree(smoke_run / png["store"])
    assert png["figure"] == pdf["figure"] == "blocks" and png["git_commit"] == pdf["git_commit"]
    assert figure_lineage(figures / "measures.pdf")["store"] == "results/cifar10-smoke/measures.zarr"


def test_trace_walks_a_figure_back_to_its_config_checkpoints_and_raw_data(smoke_run):
    result = geomvol_trace(smoke_run, "results/cifar10-smoke/figures/measures.png", "--configfile", str(SMOKE_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    steps = trace(smoke_run / "results/cifar10-smoke/figures/measures.png", SMOKE_CONFIG)
    kinds = [(step.kind, str(step.path)) for step in steps]
    assert kinds[:3] == [("figure", "results/cifar10-smoke/figures/measures.png"),
                         ("measures store", "results/cifar10-smoke/measures.zarr"),
                         ("store", "results/cifar10-smoke/volume.zarr")]
    assert ("config", f"experiment 'cifar10-smoke' of {SMOKE_CONFIG}") in kinds
    for epoch in (0, 2):  # the probed epochs, each: probe store -> checkpoint -> its training record
        assert ("probe store", f"results/cifar10-smoke/s0/probes/epoch_{epoch}.zarr.zip") in kinds
        assert ("checkpoint", f"results/cifar10-smoke/s0/checkpoints/epoch_{epoch}.pt") in kinds
        assert ("training record", f"results/cifar10-smoke/s0/training/s0/epoch_{epoch}.pt") in kinds
    assert ("data set", "results/cifar10-smoke/data/dataset.pt") in kinds
    data_set = next(step for step in steps if step.kind == "data set")
    assert '"name": "cifar10"' in data_set.details["params"]  # the section the manifest records
    raw = [path for kind, path in kinds if kind == "raw file"]
    assert len(raw) == 7 and "results/cifar10-smoke/data/synthetic/cifar-10-batches-py/data_batch_1" in raw
    assert {step.status for step in steps} == {"traced", "ok"}
    assert all(step.rule for step in steps)
    checkpoint = next(step for step in steps if step.kind == "checkpoint")
    assert checkpoint.details["params"] == "seed 0, epoch 0, model resnet34, objective cross_entropy"
    assert f"all {sum(step.recorded is not None for step in steps)} recorded checksums match" in result.stdout


def test_tampering_is_caught_by_trace_and_by_the_next_snakemake_run(run_copy):
    results = run_copy / "results"
    # a checkpoint changed after it was probed (in place, as a script that edits weights would)
    checkpoint = results / "sinusoid-smoke/s0/checkpoints/epoch_20.pt"
    state = torch.load(checkpoint, weights_only=True)
    state["model"]["hidden_layer.weight"] += 0.01
    with open(checkpoint, "r+b") as handle:
        handle.truncate(0)
        torch.save(state, handle)
    # a probe store, and the prepared data set of another experiment
    probe_store = results / "mnist-line-smoke/s0/probes/epoch_2.zarr.zip"
    probe_store.write_bytes(probe_store.read_bytes() + b"\0")
    data = results / "mnist-plane-smoke/data/dataset.pt"
    data.write_bytes(data.read_bytes() + b"\0")
    # a raw file of a synthetic root (a directory output: trace sees it, Snakemake's timestamps do not)
    raw = results / "cifar10-smoke/data/synthetic/cifar-10-batches-py/test_batch"
    raw.write_bytes(raw.read_bytes()[::-1])

    for figure, tampered in (("sinusoid-smoke/figures/volume.png", "results/sinusoid-smoke/s0/checkpoints/epoch_20.pt"),
                             ("mnist-line-smoke/figures/lines.pdf", "results/mnist-line-smoke/s0/probes/epoch_2.zarr.zip"),
                             ("mnist-plane-smoke/figures/measures.png", "results/mnist-plane-smoke/data/dataset.pt"),
                             ("cifar10-smoke/figures/planes.png",
                              "results/cifar10-smoke/data/synthetic/cifar-10-batches-py/test_batch")):
        result = geomvol_trace(run_copy, f"results/{figure}")
        assert result.returncode == 1, result.stdout
        assert f"{tampered}  [CHANGED]" in result.stdout
        assert f"error: {tampered} no longer matches the sha256 recorded downstream" in result.stderr
    assert geomvol_trace(run_copy, "results/barlow-twins-smoke/figures/lines.png").returncode == 0
    compare = geomvol_trace(run_copy, "results/barlow-twins-smoke/figures/compare.pdf")  # the cifar10 store beside
    assert compare.returncode == 1 and "results/cifar10-smoke/data/synthetic/cifar-10-batches-py/test_batch  [CHANGED]" \
        in compare.stdout
    # a probe store gone missing
    (results / "barlow-twins-smoke/s0/probes/epoch_0.zarr.zip").unlink()
    missing = geomvol_trace(run_copy, "results/barlow-twins-smoke/figures/lines.png")
    assert missing.returncode == 1
    assert "error: results/barlow-twins-smoke/s0/probes/epoch_0.zarr.zip is missing" in missing.stderr

    dry_run = snakemake(run_copy, SMOKE_CONFIG, "--dry-run")
    assert dry_run.returncode == 0, dry_run.stderr
    jobs = set(re.findall(r"^(?:local)?rule (\w+):\n(?:    .*\n)*?    wildcards: (.*)$", dry_run.stdout, re.MULTILINE))
    probes = {wildcards for rule, wildcards in jobs if rule == "probe"}
    # that checkpoint's probe (newer than it; the probe will refuse the checkpoint, whose sha256 no longer
    # matches its record: tests/test_faults.py); the probe store whose size differs from its record; the probes after the retraining on the data set made again (its size differs
    # from its manifest); the probe store gone missing (what was made from it no longer stands); no other
    assert probes == {"experiment=sinusoid-smoke, seeds=s0, epoch=20", "experiment=mnist-line-smoke, seeds=s0, epoch=2",
                      "experiment=barlow-twins-smoke, seeds=s0, epoch=0",
                      *(f"experiment=mnist-plane-smoke, seeds=s0, epoch={epoch}" for epoch in (0, 2, 4))}
    assert {wildcards for rule, wildcards in jobs if rule == "train"} == {"experiment=mnist-plane-smoke, seeds=s0"}
    assert {wildcards for rule, wildcards in jobs if rule == "prepare_dataset"} == {"experiment=mnist-plane-smoke"}
    combined = {wildcards for rule, wildcards in jobs if rule == "combine_probes"}
    assert combined == {f"experiment={name}" for name in ("sinusoid-smoke", "mnist-line-smoke", "mnist-plane-smoke",
                                                           "barlow-twins-smoke")}
