"""The conda deployment, checked short of solving an environment (no conda channel is reachable here).

Snakemake asks conda three questions before it would create an env (`conda info --json`, `conda --version`,
`conda config --get channel_priority --json`); the ``conda_answers`` fixture (conftest) puts on PATH a `conda` that answers
those and refuses everything else, so a dry run goes as far as it can without conda and any attempt to
create or activate an env would fail the test.
"""

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from helpers import ROOT, smoke_experiments, with_examples

ENV_FILE = ROOT / "workflow" / "envs" / "geomvol.yaml"
CONDA_TO_PIP = {"pytorch": "torch", "matplotlib-base": "matplotlib"}
NOT_IN_JOBS = {"snakemake"}  # runs the workflow; the jobs themselves do not import it


def conda_dependencies() -> dict[str, str]:
    """{pip name: version spec} of the env file's dependencies (python under its own name)."""
    env = yaml.safe_load(ENV_FILE.read_text())
    assert env["channels"] == ["conda-forge", "nodefaults"]
    dependencies = {}
    for line in env["dependencies"]:
        name, _, spec = line.partition(" ")
        dependencies[CONDA_TO_PIP.get(name, name)] = spec.replace(" ", "")
    return dependencies


def test_env_pins_agree_with_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    ranges = {Requirement(line).name: str(Requirement(line).specifier) for line in project["dependencies"]}
    pins = conda_dependencies()
    python = pins.pop("python")
    assert re.fullmatch(r"=3\.\d+", python) and python[1:] in SpecifierSet(project["requires-python"])
    assert set(pins) == set(ranges) - NOT_IN_JOBS
    for name, spec in pins.items():
        assert SpecifierSet(spec) == SpecifierSet(ranges[name]), f"{name}: env {spec}, pyproject {ranges[name]}"


def dry_run(snakefile: Path, workdir: Path, configfile: Path, env: dict, *extra) -> str:
    with_examples(workdir)
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(snakefile), "--directory", str(workdir),
         "--configfile", str(configfile), "--cores", "2", "-n", "-p", *extra],
        capture_output=True, text=True, env=env,
    )
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    return result.stdout + result.stderr


def jobs_of(output: str) -> list[dict]:
    """The dry run's jobs: rule, wildcards, resources and shell command of each."""
    jobs = []
    for block in re.split(r"\n\[[^\]]+\]\n", output)[1:]:
        rule = re.match(r"(?:local)?rule (\S+):", block).group(1)
        fields = dict(re.findall(r"^ {4}(\w+): (.*)$", block, re.MULTILINE))
        shell = re.search(r"^Shell command: (.*)$", block, re.MULTILINE).group(1)
        jobs.append({"rule": rule, "wildcards": fields.get("wildcards", ""),
                     "resources": dict(re.findall(r"(\w+)=([^,]+)", fields.get("resources", ""))), "shell": shell})
    return jobs


@pytest.mark.slow
@pytest.mark.workflow
def test_the_command_a_conda_job_runs_imports_the_project_from_its_checkout(conda_answers, tmp_path):
    """A conda env holds the dependencies, not geomvol: a job imports the package from the checkout
    whose Snakefile runs, with no PYTHONPATH of its own (a copy here, so that the editable install of
    the test's environment, which points elsewhere, cannot be what answers)."""
    checkout = tmp_path / "checkout"
    ignore = shutil.ignore_patterns("__pycache__")
    for part in ("geomvol", "workflow"):
        shutil.copytree(ROOT / part, checkout / part, ignore=ignore)
    for part in ("Snakefile", "config.yaml"):
        shutil.copy(ROOT / part, checkout / part)
    workdir = tmp_path / "work"
    config = smoke_experiments(tmp_path / "config.yaml", "sinusoid-smoke", "mnist-line-smoke")  # every kind of job
    output = dry_run(checkout / "Snakefile", workdir, config, conda_answers, "--use-conda")
    env_files = re.findall(r"^Conda environment (\S+) will be created\.$", output, re.MULTILINE)
    assert [(workdir / path).resolve() for path in env_files] == [checkout / "workflow" / "envs" / "geomvol.yaml"]

    jobs = [job for job in jobs_of(output) if job["rule"] not in ("all", "publish_checkpoint")]  # that one: `ln`
    # the same command text however the jobs are deployed and wherever the checkout lives: the checkout
    # reaches the job as GEOMVOL_SOURCE, which the Snakefile sets and every job inherits
    prefix = 'PYTHONPATH="$GEOMVOL_SOURCE" python -m geomvol.cli '
    assert jobs and all(job["shell"].startswith(prefix) for job in jobs), [job["shell"] for job in jobs]
    plain = jobs_of(dry_run(ROOT / "Snakefile", tmp_path / "plain", config, conda_answers))
    assert {job["shell"] for job in plain if job["rule"] != "all"} >= {job["shell"] for job in jobs}
    job_environment = {**conda_answers, "GEOMVOL_SOURCE": str(checkout)}
    version = subprocess.run(f"{prefix} --version", shell=True, cwd=tmp_path, env=job_environment,
                             capture_output=True, text=True)
    assert version.stdout.strip() == f"geomvol 0.1.0 ({checkout / 'geomvol'})", version.stderr

    prepare = next(job for job in jobs if job["rule"] == "prepare_dataset" and "sinusoid" in job["wildcards"])
    (workdir / "results" / "sinusoid-smoke" / "logs").mkdir(parents=True)
    ran = subprocess.run(prepare["shell"], shell=True, cwd=workdir, env=job_environment)
    assert ran.returncode == 0
    assert (workdir / "results" / "sinusoid-smoke" / "data" / "dataset.pt").stat().st_size > 0

    listing = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(checkout / "Snakefile"), "--directory", str(workdir),
         "--configfile", str(config), "--use-conda", "--list-conda-envs"],
        capture_output=True, text=True, env=conda_answers)
    rows = re.findall(r"^(\S+geomvol\.yaml)\s+(\.snakemake/conda/\w+)$", listing.stdout, re.MULTILINE)
    assert [(workdir / env_file).resolve() for env_file, _ in rows] == [checkout / "workflow" / "envs" / "geomvol.yaml"], \
        listing.stdout + listing.stderr


@pytest.mark.slow
@pytest.mark.workflow
def test_slurm_profile_dry_runs_the_paper_config_with_gpus_and_conda(conda_answers, tmp_path):
    output = dry_run(ROOT / "Snakefile", tmp_path, ROOT / "workflow" / "configs" / "paper.yaml", conda_answers,
                     "--workflow-profile", str(ROOT / "workflow" / "profiles" / "slurm"))
    assert re.search(r"^Conda environment \S+/envs/geomvol\.yaml will be created\.$", output, re.MULTILINE)
    jobs = jobs_of(output)
    for job in jobs:
        if job["rule"] not in ("train", "probe"):
            continue
        on_gpu = not any(f"experiment={name}," in job["wildcards"] for name in ("sinusoid", "digits-plane"))
        expected = {"gpu": "1", "cpus_per_gpu": "8", "mem_mb": "32000"} if on_gpu else {"gpu": "0", "mem_mb": "4000"}
        assert {key: job["resources"][key] for key in expected} == expected, job
        assert job["shell"].endswith(f"--gpus {expected['gpu']} > {job['shell'].split(' > ')[-1]}")
    # the trainings and probes of MNIST (8 probes), CIFAR-10 (5) and Barlow Twins (6 + 6); the digits' run on the CPU
    assert sum(job["resources"].get("gpu") == "1" for job in jobs) == 4 + 8 + 5 + 6 + 6
