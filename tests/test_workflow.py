"""The real Snakemake workflow on tiny configs, in temporary directories."""

import signal
import subprocess
import sys
import time

import psutil
import pytest
import xarray as xr
import yaml

from geomvol.config import config_sha256, load_config
from geomvol.data import prepare_dataset
from geomvol.provenance import sha256_file
from geomvol.train import fit

from conftest import ROOT, SMOKE_CONFIG, train_spec


def snakemake(workdir, configfile, *extra, wait=True):
    command = [
        sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(workdir),
        "--configfile", str(configfile), "--cores", "2", "--workflow-profile", "none", *extra,
    ]
    if not wait:
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return subprocess.run(command, capture_output=True, text=True)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("smoke")
    result = snakemake(workdir, SMOKE_CONFIG)
    assert result.returncode == 0, result.stdout + result.stderr
    return workdir


def test_pipeline_produces_a_labelled_store_and_figures(smoke_run, smoke_config):
    results = smoke_run / "results" / "sinusoid-smoke"
    experiment = smoke_config["experiments"]["sinusoid-smoke"]
    ds = xr.open_zarr(results / "volume.zarr")
    assert dict(ds["log10_volume"].sizes) == {"seed": 1, "epoch": 3, "x2": 12, "x1": 12}
    assert ds["epoch"].values.tolist() == [0, 20, 40]
    assert ds.attrs["experiment"] == "sinusoid-smoke"
    assert ds.attrs["config_sha256"] == config_sha256(experiment)
    assert ds.attrs["dataset_sha256"] == sha256_file(results / "data" / "dataset.pt")
    checkpoints = [results / "s0" / "checkpoints" / f"epoch_{e}.pt" for e in (0, 20, 40)]
    assert ds["checkpoint_sha256"].values[0].tolist() == [sha256_file(p) for p in checkpoints]
    assert ds["log10_volume"].notnull().all()
    assert (results / "figures" / "volume.png").stat().st_size > 10_000
    assert (results / "figures" / "volume.pdf").read_bytes().startswith(b"%PDF")
    for rule in ("prepare_dataset", "train_s0", "probe_s0_epoch_0", "combine_probes", "figure_volume"):
        log = (results / "logs" / f"{rule}.log").read_text()
        assert "Warning" not in log, f"{rule}: {log}"  # logs carry what a user should read, not library noise
    assert not (results / "s0" / "train-state").exists()


def test_a_finished_pipeline_has_nothing_left_to_do(smoke_run):
    result = snakemake(smoke_run, SMOKE_CONFIG, "--dry-run")
    assert result.returncode == 0
    assert "Nothing to be done" in result.stdout + result.stderr


def test_bad_config_fails_before_any_job(tmp_path):
    config = yaml.safe_load(SMOKE_CONFIG.read_text())
    config["experiments"]["sinusoid-smoke"]["probe"]["grid"]["resolution"] = 0
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    result = snakemake(tmp_path, bad)
    assert result.returncode != 0
    assert "config key experiments.sinusoid-smoke.probe.grid.resolution: 0 is less than the minimum of 2" in result.stderr
    assert not (tmp_path / "results").exists()


def test_corrupt_checkpoint_fails_its_probe_and_leaves_no_store(tmp_path):
    trained = snakemake(tmp_path, SMOKE_CONFIG, "results/sinusoid-smoke/s0/checkpoints")
    assert trained.returncode == 0, trained.stderr
    results = tmp_path / "results" / "sinusoid-smoke"
    checkpoint = results / "s0" / "checkpoints" / "epoch_20.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:300])
    result = snakemake(tmp_path, SMOKE_CONFIG, "--keep-going")
    assert result.returncode != 0
    log = (results / "logs" / "probe_s0_epoch_20.log").read_text()
    assert f"checkpoint {checkpoint.relative_to(tmp_path)} is unreadable" in log
    assert "Traceback" not in log
    assert (results / "s0" / "probes" / "epoch_40.zarr").exists()
    assert not (results / "s0" / "probes" / "epoch_20.zarr").exists()
    assert not (results / "volume.zarr").exists()
    assert not (results / "figures").exists()
    assert not list((results / "s0" / "probes").glob(".*tmp*")), "no temporary store left behind"


def test_killed_training_job_resumes_in_the_pipeline(tmp_path):
    config = yaml.safe_load(SMOKE_CONFIG.read_text())
    experiment = config["experiments"]["sinusoid-smoke"]
    experiment["training"].update(epochs=1500, batch_size=10, save_epochs={"every": 250})
    experiment["probe"]["epochs"] = [1500]
    configfile = tmp_path / "long.yaml"
    configfile.write_text(yaml.safe_dump(config))
    state = tmp_path / "results" / "sinusoid-smoke" / "s0" / "train-state"

    run = snakemake(tmp_path, configfile, wait=False)
    deadline = time.monotonic() + 120
    while not (state / "epoch_250.pt").exists():
        assert run.poll() is None and time.monotonic() < deadline, run.communicate()[0]
        time.sleep(0.01)
    train_jobs = [
        p for p in psutil.Process(run.pid).children(recursive=True)
        if "train" in p.cmdline() and any(part.endswith("geomvol") for part in p.cmdline())
    ]
    assert len(train_jobs) == 1
    train_jobs[0].send_signal(signal.SIGKILL)
    assert run.wait(timeout=60) != 0
    assert not (tmp_path / "results" / "sinusoid-smoke" / "s0" / "checkpoints").exists()
    assert (state / "epoch_250.pt").exists(), "the resume state survives the failed job"

    rerun = snakemake(tmp_path, configfile)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    log = (tmp_path / "results" / "sinusoid-smoke" / "logs" / "train_s0.log").read_text()
    assert "resuming from epoch" in log and "resuming from epoch 0 " not in log

    resolved = load_config(configfile)["experiments"]["sinusoid-smoke"]
    reference = tmp_path / "reference"
    prepare_dataset(resolved["dataset"], reference / "data.pt", reference / "manifest.json")
    expected = fit(train_spec(resolved), reference / "data.pt", reference / "ck", reference / "state", reference / "m.tsv")
    got = tmp_path / "results" / "sinusoid-smoke" / "s0" / "checkpoints"
    assert [sha256_file(got / p.name) for p in expected] == [sha256_file(p) for p in expected]


def test_workflow_is_lint_clean(tmp_path):
    result = snakemake(tmp_path, SMOKE_CONFIG, "--lint")
    assert "Congratulations, your workflow is in a good condition!" in result.stdout + result.stderr, result.stdout
