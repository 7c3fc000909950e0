"""A config edit redoes only what it changes: after a finished run, edit one key and list the jobs
`snakemake -n` plans. Run-time settings plan nothing; a schedule edit plans only the new checkpoints and
what reads them; a result-determining key plans exactly the jobs it affects and everything after them."""

import re
import shutil

import pytest
import yaml

from geomvol.store import open_store

from helpers import ROOT, SMOKE_CONFIG, set_key, snakemake

pytestmark = [pytest.mark.slow, pytest.mark.workflow]

EXPERIMENT = "sinusoid-smoke"
FIGURES = {"figure[volume]", "figure[curvature]", "figure[stretch]", "figure_measures", "measure", "combine_probes",
           "summary"}


def probes_and_after(*seeds_epochs, group: str = "s0") -> set[str]:
    """The publish jobs of (seed, epoch) pairs, the probe jobs of their epochs (of the seed group ``group``: the
    experiment's one seed, or its seeds probed together), and what follows every probe."""
    jobs = {f"publish_checkpoint[{seed}, {epoch}]" for seed, epoch in seeds_epochs}
    jobs |= {f"probe[{group}, {epoch}]" for _, epoch in seeds_epochs}
    return jobs | FIGURES


RETRAINED = {"train[s0]", "training_metrics[0]"} | probes_and_after((0, 0), (0, 20), (0, 40))


def add_saved_epoch(experiment):
    experiment["training"]["save_epochs"] = [20, 30, 40]
    experiment["probe"]["epochs"] = [0, 20, 30, 40]


EDITS = {
    # run-time settings: nothing
    "training.threads": (set_key("training.threads", 2), set()),
    "training.device": (set_key("training.device", "auto"), set()),
    "probe.device": (set_key("probe.device", "auto"), set()),
    "probe.memory_budget_bytes": (set_key("probe.memory_budget_bytes", 2**29), set()),
    # the measures, and the figures' style
    "measures.boundary_margin": (set_key("measures.boundary_margin", 0.2), {"measure", "figure_measures", "summary"}),
    "figures.colour_scale": (set_key("figures.colour_scale", "shared"),
                             {"figure[volume]", "figure[curvature]", "figure[stretch]"}),
    # the schedule: the new checkpoint, from the nearest earlier one, and what reads it
    "one more saved and probed epoch": (add_saved_epoch, {"extend_training[s0, 30]"} | probes_and_after((0, 30))),
    "training.epochs": (set_key("training.epochs", 60),
                        {"extend_training[s0, 60]", "training_metrics[0]"} | probes_and_after((0, 60))),
    # a seed: the group of both trains as one job (seed 0's store is full, so it computes seed 1 alone) and
    # publishes both; both are probed together, one job per epoch
    "seeds": (set_key("seeds", [0, 1]), {"train[s0-s1]", "training_metrics[0]", "training_metrics[1]"}
              | probes_and_after(*((seed, epoch) for seed in (0, 1) for epoch in (0, 20, 40)), group="s0-s1")),
    # what determines results: the jobs it affects and everything after them
    "dataset.n_points": (set_key("dataset.n_points", 90), {"prepare_dataset"} | RETRAINED),
    "model.width": (set_key("model.width", 33), RETRAINED),
    "training.optimizer.lr": (set_key("training.optimizer.lr", 0.2), RETRAINED),
    "probe.metric": (set_key("probe.metric", "subspace"),
                     {f"probe[s0, {epoch}]" for epoch in (0, 20, 40)} | FIGURES),
    # the curvature off: the probes (without it), and what reads them, but no curvature figure
    "probe.curvature": (set_key("probe.curvature", False),
                        {f"probe[s0, {epoch}]" for epoch in (0, 20, 40)} | FIGURES - {"figure[curvature]"}),
}


def config_with(edit=None) -> dict:
    config = yaml.safe_load(SMOKE_CONFIG.read_text())
    config["experiments"] = {EXPERIMENT: config["experiments"][EXPERIMENT]}
    if edit is not None:
        edit(config["experiments"][EXPERIMENT])
    return config


def planned_jobs(workdir, config: dict, *extra, env=None) -> set[str]:
    """The jobs `snakemake -n` plans, as rule[wildcard values but the experiment]."""
    configfile = workdir.parent / f"{workdir.name}-plan.yaml"
    configfile.write_text(yaml.safe_dump(config))
    result = snakemake(workdir, configfile, "--dry-run", *extra, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    jobs = set()
    for block in re.split(r"\n\[[^\]]+\]\n", result.stdout)[1:]:
        rule = re.match(r"(?:local)?rule (\S+):", block).group(1)
        wildcards = re.search(r"^ {4}wildcards: (.*)$", block, re.MULTILINE)
        values = [value for name, value in re.findall(r"(\w+)=([^,]+)", wildcards.group(1) if wildcards else "")
                  if name != "experiment"]
        if rule != "all":
            jobs.add(f"{rule}[{', '.join(values)}]" if values else rule)
    return jobs


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """The smoke config's sinusoid, run to the end."""
    workdir = tmp_path_factory.mktemp("finished")
    configfile = workdir.parent / "finished.yaml"
    configfile.write_text(yaml.safe_dump(config_with()))
    result = snakemake(workdir, configfile)
    assert result.returncode == 0, result.stdout + result.stderr
    return workdir


@pytest.mark.parametrize("edit", list(EDITS))
def test_an_edit_plans_exactly_what_it_changes(finished, edit):
    change, expected = EDITS[edit]
    assert planned_jobs(finished, config_with(change)) == expected


def _files(directory) -> dict:
    return {path.relative_to(directory): (path.stat().st_mtime_ns, path.read_bytes())
            for path in sorted(directory.rglob("*")) if path.is_file()}


def test_a_saved_epoch_between_two_costs_only_itself(finished, tmp_path):
    """Run the edit: epoch 30 is trained from 20 (the log says so), every earlier checkpoint and probe store
    stays the same file, 30 is the checkpoint an uninterrupted run writes, and nothing is left to do."""
    workdir = tmp_path / "work"
    shutil.copytree(finished, workdir, symlinks=True, copy_function=shutil.copy2)
    results = workdir / "results" / EXPERIMENT
    before = {name: _files(results / "s0" / name) for name in ("checkpoints", "probes")}
    configfile = tmp_path / "edited.yaml"
    configfile.write_text(yaml.safe_dump(config_with(add_saved_epoch)))
    result = snakemake(workdir, configfile)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "resuming from epoch 20" in (results / "logs" / "extend_s0_epoch_30.log").read_text()
    assert "computing [30]" in (results / "logs" / "extend_s0_epoch_30.log").read_text()
    for name, files in before.items():
        now = _files(results / "s0" / name)
        assert {path: now[path] for path in files} == files
    fresh = tmp_path / "fresh"
    assert snakemake(fresh, configfile, f"results/{EXPERIMENT}/s0/checkpoints/epoch_30.pt").returncode == 0
    assert ((results / "s0" / "checkpoints" / "epoch_30.pt").read_bytes()
            == (fresh / "results" / EXPERIMENT / "s0" / "checkpoints" / "epoch_30.pt").read_bytes())
    assert planned_jobs(workdir, config_with(add_saved_epoch)) == set()


def test_a_conda_run_after_a_plain_run_plans_nothing(finished, conda_answers):
    """With the shipped default profile, switching to --use-conda (against a stand-in conda that answers
    Snakemake's questions and refuses the rest) after a plain run redoes nothing: the command is the same
    text, and the software deployment is not a rerun trigger."""
    profile = ("--workflow-profile", str(ROOT / "profiles" / "default"))
    assert planned_jobs(finished, config_with(), "--use-conda", *profile, env=conda_answers) == set()
    assert planned_jobs(finished, config_with(), *profile) == set()


def test_a_seed_group_trains_in_one_job_and_regrouping_trains_nothing(tmp_path):
    """Two seeds of one group: one job trains both; one probe store per epoch holds both seeds; one more saved
    epoch is one extension job for both. Regrouping (seed_group_size: 1) plans each seed's own training job
    (which finds its store full and computes nothing) and the probes again, one store per seed: the same
    checkpoint files. (Each run makes what its assertions read: the plans, of the default target, list the rest.)"""
    def two_seeds(experiment):  # without the curvature: fewer jobs
        experiment.update(seeds=[0, 1])
        experiment["probe"]["curvature"] = False

    grouped = config_with(two_seeds)
    workdir = tmp_path / "work"
    configfile = tmp_path / "grouped.yaml"
    configfile.write_text(yaml.safe_dump(grouped))
    result = snakemake(workdir, configfile, f"results/{EXPERIMENT}/volume.zarr",
                       *(f"results/{EXPERIMENT}/s{seed}/train_metrics.tsv" for seed in (0, 1)))
    assert result.returncode == 0, result.stdout + result.stderr
    results = workdir / "results" / EXPERIMENT
    assert "train seeds 0, 1" in (results / "logs" / "train_s0-s1.log").read_text()
    store = open_store(results / "s0-s1" / "probes" / "epoch_20.zarr.zip")
    assert store["seed"].values.tolist() == [0, 1]
    assert open_store(results / "volume.zarr")["seed"].values.tolist() == [0, 1]
    checkpoints = _files(results / "s1" / "checkpoints")

    # one more saved epoch (in a copy of the run): one extension job trains both seeds from epoch 20
    def extended(experiment):
        two_seeds(experiment)
        add_saved_epoch(experiment)

    extension = tmp_path / "extension"
    shutil.copytree(workdir, extension, symlinks=True, copy_function=shutil.copy2)
    assert planned_jobs(extension, config_with(extended)) == {"extend_training[s0-s1, 30]"} | probes_and_after(
        (0, 30), (1, 30), group="s0-s1") - {"figure[curvature]"}
    (tmp_path / "extended.yaml").write_text(yaml.safe_dump(config_with(extended)))
    result = snakemake(extension, tmp_path / "extended.yaml",
                       *(f"results/{EXPERIMENT}/s{seed}/checkpoints/epoch_30.pt" for seed in (0, 1)))
    assert result.returncode == 0, result.stdout + result.stderr
    log = (extension / "results" / EXPERIMENT / "logs" / "extend_s0-s1_epoch_30.log").read_text()
    assert "resuming from epoch 20" in log and "train seeds 0, 1" in log, log

    def regrouped(experiment):
        two_seeds(experiment)
        experiment.update(seed_group_size=1)

    assert planned_jobs(workdir, config_with(regrouped)) == (
        {"train[s0]", "train[s1]", "training_metrics[0]", "training_metrics[1]"}
        | probes_and_after((1, 0), (1, 20), (1, 40), group="s1") | probes_and_after((0, 0), (0, 20), (0, 40))) - {
        "figure[curvature]"}
    configfile.write_text(yaml.safe_dump(config_with(regrouped)))
    assert snakemake(workdir, configfile, *(f"results/{EXPERIMENT}/s{seed}/checkpoints/epoch_{epoch}.pt"
                                            for seed in (0, 1) for epoch in (0, 20, 40))).returncode == 0
    for seed in (0, 1):
        assert "computing" not in (results / "logs" / f"train_s{seed}.log").read_text()
    assert {path: data for path, (_, data) in _files(results / "s1" / "checkpoints").items() if path.suffix == ".pt"} \
        == {path: data for path, (_, data) in checkpoints.items() if path.suffix == ".pt"}
