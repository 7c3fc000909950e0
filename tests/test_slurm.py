"""A small pipeline (:func:`cluster_config`, from the smoke config) on a real single-node SLURM cluster,
submitted through workflow/profiles/slurm (less its conda deployment: see :func:`profile_without_conda`),
equal to the local smoke run.

The cluster (munged, slurmctld, slurmd; no accounting daemon, so the plugin reads job
status with squeue) is started by :mod:`slurm_cluster`. It needs Debian's slurm-wlm and
munge, and root: the test installs nothing on your machine and is skipped, saying how to
enable it, where they are missing (CI's .ci/run installs them and sets
GEOMVOL_REQUIRE_SLURM=1, which makes a missing SLURM a failure instead). If SLURM is there
but cannot start, the test errors with the reason; it never passes without a cluster.
"""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml

from helpers import ROOT, SMOKE_CONFIG, made_once
from slurm_cluster import SlurmCluster, job_records, missing

pytestmark = [pytest.mark.slurm, pytest.mark.slow, pytest.mark.workflow]

PROFILE = ROOT / "workflow" / "profiles" / "slurm" / "profile.yaml"


def profile_without_conda(directory: Path) -> Path:
    """The project's SLURM profile less its `software-deployment-method: conda`, in ``directory``: no conda
    channel is reachable from the test machines, so the jobs run in the test's own environment."""
    profile = yaml.safe_load(PROFILE.read_text())
    assert profile.pop("software-deployment-method") == "conda"
    directory.mkdir()
    (directory / "profile.yaml").write_text(yaml.safe_dump(profile))
    return directory
COMPARED = "mnist-plane-smoke"  # the smoke config's experiment that runs on the cluster too


def cluster_config(path: Path) -> Path:
    """The smoke config's MNIST plane and a narrower net on the same plane, drawn beside it (a comparison; probed at
    the first and last epochs, without the curvature): every kind of rule (synthesize, prepare, train, publish,
    metrics, probe, combine, measure, the figures and the comparison) in a fifth of the smoke run's jobs."""
    experiment = yaml.safe_load(SMOKE_CONFIG.read_text())["experiments"][COMPARED]
    narrow = {**experiment, "model": {**experiment["model"], "width": 16},
              "probe": {**experiment["probe"], "epochs": [0, 4], "curvature": False, "compare_with": COMPARED}}
    path.write_text(yaml.safe_dump({"experiments": {COMPARED: experiment, "mnist-plane-narrow": narrow}}))
    return path
LOCAL_RULES = ("publish_checkpoint", "training_metrics")  # a copy; a TSV from a checkpoint: run by Snakemake itself


def run_on_a_cluster(directory: Path) -> None:
    """Start a cluster, run :func:`cluster_config` through sbatch in ``directory``/work, keep SLURM's job records
    (``jobcomp.log``) beside it, stop the cluster."""
    cluster_directory = Path(tempfile.mkdtemp(prefix="geomvol-slurm-"))
    os.chmod(cluster_directory, 0o755)  # munged and slurmd refuse directories others cannot search
    try:
        with SlurmCluster(cluster_directory) as cluster:
            result = subprocess.run(
                [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(directory / "work"),
                 "--configfile", str(cluster_config(directory / "config.yaml")),
                 "--workflow-profile", str(profile_without_conda(directory / "profile")),
                 "--slurm-status-command", "squeue", "--slurm-no-account", "--slurm-init-seconds-before-status-checks",
                 "1", "--seconds-between-status-checks", "2", "--slurm-logdir", str(directory / "slurm-logs"),
                 "--slurm-keep-successful-logs"],
                env=cluster.env, capture_output=True, text=True, timeout=1800,
            )
            assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
            assert "has been submitted with SLURM jobid" in result.stderr + result.stdout
            shutil.copy(cluster.directory / "jobcomp.log", directory / "jobcomp.log")
    finally:
        shutil.rmtree(cluster_directory, ignore_errors=True)


@pytest.fixture(scope="session")
def cluster_run(tmp_path_factory):
    """A directory where :func:`cluster_config` has run through sbatch (``work``), with SLURM's job records: made
    once for the session, by the first test that asks (this file's, which goes first: tests/conftest.py)."""
    why = missing()
    if why is not None:
        if os.environ.get("GEOMVOL_REQUIRE_SLURM") == "1":
            pytest.fail(f"GEOMVOL_REQUIRE_SLURM=1 but {why}")
        pytest.skip(why)
    return made_once(tmp_path_factory, "slurm-run", run_on_a_cluster)


def test_a_pipeline_runs_through_sbatch(cluster_run):
    """Every job but the local rules went through sbatch and completed there, at the first try."""
    workdir = cluster_run / "work"
    records = job_records(cluster_run / "jobcomp.log")
    # one benchmark file per job, the local rules' aside
    local_prefixes = ("publish_", "training_metrics_")
    jobs = len([path for path in (workdir / "results").glob("**/benchmarks/*.tsv") if not path.name.startswith(local_prefixes)])
    completed = [record for record in records if record["JobState"] == "COMPLETED"]
    assert len(completed) == jobs, f"{len(completed)} SLURM jobs completed, {jobs} pipeline jobs ran"
    failed = [record["JobId"] for record in records if record["JobState"] != "COMPLETED"]
    logs = {path.name: path.read_text()[-1500:] for path in (cluster_run / "slurm-logs").rglob("*.log")
            if path.stem in failed}
    assert not failed, f"SLURM jobs {failed} failed before their retry succeeded; their logs: {logs}"
    # the plugin's log of each SLURM job: slurm-logs/rule_<rule>/<wildcards>/<SLURM job id>.log
    by_rule = {}
    for log in (cluster_run / "slurm-logs").rglob("*.log"):
        by_rule.setdefault(log.relative_to(cluster_run / "slurm-logs").parts[0], set()).add(log.stem)
    for rule in ("synthesize_dataset", "prepare_dataset", "train", "probe", "combine_probes", "measure", "figure",
                 "figure_compare", "figure_measures", "summary"):
        assert by_rule.get(f"rule_{rule}"), f"no {rule} job went through sbatch"
    assert set().union(*by_rule.values()) == {record["JobId"] for record in completed}
    assert not {f"rule_{rule}" for rule in LOCAL_RULES} & set(by_rule)
    assert (workdir / "results" / "mnist-plane-narrow" / "figures" / "compare.png").is_file()


def test_the_cluster_run_equals_the_local_run(cluster_run, smoke_run):
    """The cluster's MNIST plane holds the smoke run's numbers and figures (read with the smoke run's readers,
    by when the cluster run is long made)."""
    on_slurm = xr.open_zarr(cluster_run / "work" / "results" / COMPARED / "volume.zarr").load()
    local = xr.open_zarr(smoke_run / "results" / COMPARED / "volume.zarr").load()
    assert set(on_slurm.data_vars) == set(local.data_vars)
    for variable in local.data_vars:  # the same numbers (provenance attrs name host and time)
        np.testing.assert_array_equal(on_slurm[variable].values, local[variable].values, err_msg=variable)
    local_figures = sorted(p.name for p in (smoke_run / "results" / COMPARED / "figures").iterdir())
    assert sorted(p.name for p in (cluster_run / "work" / "results" / COMPARED / "figures").iterdir()) == local_figures
