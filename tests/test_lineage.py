"""`geomvol trace` on a real run (a copy of the smoke run), and tampering caught by trace and by Snakemake."""

import os
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
    probe_store = results / "mnist-line-smoke/s0/probes/epoch_4.zarr.zip"
    probe_store.write_bytes(probe_store.read_bytes() + b"\0")
    data = results / "mnist-plane-smoke/data/dataset.pt"
    data.write_bytes(data.read_bytes() + b"\0")
    # a raw file of a synthetic root (a directory output: trace sees it, Snakemake's timestamps do not)
    raw = results / "cifar10-smoke/data/synthetic/cifar-10-batches-py/test_batch"
    raw.write_bytes(raw.read_bytes()[::-1])

    for figure, tampered in (("sinusoid-smoke/figures/volume.png", "results/sinusoid-smoke/s0/checkpoints/epoch_20.pt"),
                             ("mnist-line-smoke/figures/lines.pdf", "results/mnist-line-smoke/s0/probes/epoch_4.zarr.zip"),
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
    measured = geomvol_trace(run_copy, "results/barlow-twins-smoke/figures/measures.png")  # its agreement with cifar10
    assert measured.returncode == 1 and "results/cifar10-smoke/data/synthetic/cifar-10-batches-py/test_batch  " \
        "[CHANGED]" in measured.stdout
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
    assert probes == {"experiment=sinusoid-smoke, seeds=s0, epoch=20", "experiment=mnist-line-smoke, seeds=s0, epoch=4",
                      "experiment=barlow-twins-smoke, seeds=s0, epoch=0",
                      *(f"experiment=mnist-plane-smoke, seeds=s0, epoch={epoch}" for epoch in (0, 4))}
    assert {wildcards for rule, wildcards in jobs if rule == "train"} == {"experiment=mnist-plane-smoke, seeds=s0"}
    assert {wildcards for rule, wildcards in jobs if rule == "prepare_dataset"} == {"experiment=mnist-plane-smoke"}
    combined = {wildcards for rule, wildcards in jobs if rule == "combine_probes"}
    assert combined == {f"experiment={name}" for name in ("sinusoid-smoke", "mnist-line-smoke", "mnist-plane-smoke",
                                                           "barlow-twins-smoke")}


def test_a_python_models_source_file_is_traced_and_an_edit_of_it_reruns_the_model(run_copy):
    """The smoke run's own-images-smoke: examples/models.py's small CNN, named by its file in the working
    directory, on an image folder: every checkpoint records the file's sha256, trace shows it (and
    elsewhere-smoke's checkpoints trained elsewhere, each by its file), and an edit of the file makes the next
    run retrain and reprobe, but not prepare the data again."""
    import xarray as xr

    from helpers import ROOT

    (run_copy / "examples").unlink()  # the checkout's, linked: a copy of its own, to edit
    shutil.copytree(ROOT / "examples", run_copy / "examples")
    target = "results/own-images-smoke/volume.zarr"
    with xr.open_zarr(run_copy / target) as ds:
        assert list(ds["block"].values) == ["features.1", "features.5"]
        assert list(ds["feature_width"].values) == [8 * 2 * 2, 16]  # 8 x 16 x 16 pooled over 8 x 8; the pooled 16
        assert ds.sizes["channel"] == 3 and ds.sizes["height"] == ds.sizes["width"] == 16
        assert bool(ds["plane_log10_volume"].notnull().all())
    traced = geomvol_trace(run_copy, target)
    assert traced.returncode == 0, traced.stderr
    assert "model source: examples/models.py  [ok]" in traced.stdout
    assert "factory examples/models.py:small_cnn, kwargs {\"width\": 8}" in traced.stdout
    assert "80 files under results/own-images-smoke/data/synthetic (synthesize_dataset): all as recorded" in traced.stdout
    traced = geomvol_trace(run_copy, "results/elsewhere-smoke/volume.zarr")
    assert traced.returncode == 0, traced.stderr
    for epoch in (0, 2):
        assert f"outside checkpoint: examples/checkpoints/small_cnn_epoch_{epoch}.pt  [ok]" in traced.stdout

    source = run_copy / "examples" / "models.py"
    source.write_text(source.read_text().replace("nn.GELU()", "nn.Tanh()", 1))
    traced = geomvol_trace(run_copy, target)
    assert traced.returncode == 1 and "model source: examples/models.py  [CHANGED]" in traced.stdout
    dry_run = snakemake(run_copy, SMOKE_CONFIG, "--dry-run", target)
    assert dry_run.returncode == 0, dry_run.stderr
    planned = set(re.findall(r"^(?:local)?rule (\w+):", dry_run.stdout, re.MULTILINE))
    assert {"train", "probe", "combine_probes"} <= planned and "prepare_dataset" not in planned


def test_checkpoints_trained_elsewhere_are_imported_probed_and_traced(run_copy):
    """The smoke run's elsewhere-smoke: state dicts of examples/models.py's small CNN saved by a plain loop
    elsewhere (examples/checkpoints/, epochs 0 and 2): imported and probed, each traced to its file; a changed
    file is imported and probed again, alone, even with an older mtime; a file that does not fit the model is
    refused before any job, naming the key and the keys."""
    import xarray as xr

    from geomvol.models.registry import load_factory
    from geomvol.provenance import sha256_file
    from helpers import ROOT

    (run_copy / "examples").unlink()  # the checkout's, linked: a copy of its own (modification times kept), to edit
    shutil.copytree(ROOT / "examples", run_copy / "examples")
    small_cnn = load_factory(f"{run_copy}/examples/models.py:small_cnn")
    target = "results/elsewhere-smoke/volume.zarr"
    with xr.open_zarr(run_copy / target) as ds:
        assert ds["epoch"].values.tolist() == [0, 2] and ds["feature_width"].values.tolist() == [32, 16]
        assert bool(ds["plane_log10_volume"].notnull().all())
    source = run_copy / "examples" / "checkpoints" / "small_cnn_epoch_2.pt"
    traced = geomvol_trace(run_copy, "results/elsewhere-smoke/s0/checkpoints/epoch_2.pt")
    assert traced.returncode == 0, traced.stderr
    assert "made by import_checkpoint (trained elsewhere)" in traced.stdout
    assert "outside checkpoint: examples/checkpoints/small_cnn_epoch_2.pt  [ok]" in traced.stdout
    assert f"sha256 {sha256_file(source)} (as recorded downstream)" in traced.stdout
    assert "model source: examples/models.py  [ok]" in traced.stdout

    torch.manual_seed(30)  # epoch 2's file replaced by other weights, older than everything made from it
    torch.save(small_cnn(width=8).state_dict(), source)
    os.utime(source, ns=(10**18, 10**18))  # 2001: Snakemake's own mtime check would see nothing to do
    traced = geomvol_trace(run_copy, target)
    assert "outside checkpoint: examples/checkpoints/small_cnn_epoch_2.pt  [CHANGED]" in traced.stdout
    dry_run = snakemake(run_copy, SMOKE_CONFIG, "--dry-run")  # the default target: stale outputs are found there
    assert dry_run.returncode == 0, dry_run.stderr
    assert ("geomvol: results/elsewhere-smoke/s0/checkpoints/epoch_2.pt is made again: its source "
            "examples/checkpoints/small_cnn_epoch_2.pt has changed since it was made from it") in dry_run.stderr
    jobs = set(re.findall(r"^(?:local)?rule (\w+):\n(?:    .*\n)*?    wildcards: (.*)$", dry_run.stdout, re.MULTILINE))
    assert {(rule, wildcards) for rule, wildcards in jobs if rule in ("import_checkpoint", "probe", "train")} == {
        ("import_checkpoint", "experiment=elsewhere-smoke, seed=0, epoch=2"),
        ("probe", "experiment=elsewhere-smoke, seeds=s0, epoch=2")}

    torch.save(small_cnn(width=4).state_dict(), source)  # another model's weights
    refused = snakemake(run_copy, SMOKE_CONFIG, "--dry-run", target)
    assert refused.returncode != 0
    assert ("config key experiments.elsewhere-smoke.checkpoints.2: checkpoint examples/checkpoints/small_cnn_epoch_2.pt "
            "does not fit the model SmallCNN: 5 mis-shaped: features.0.weight [4, 3, 3, 3] (the model's [8, 3, 3, 3]), "
            "features.0.bias [4] (the model's [8])") in refused.stdout + refused.stderr
