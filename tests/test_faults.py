"""Faults a careful user meets, on a two-seed group (the smoke sinusoid with seeds 0 and 1, trained as one
ensemble), each with real Snakemake runs: after the fault and one run, every output matches an uninterrupted
run's (checkpoint and metrics bytes, the volume store's values) or the run failed naming the damaged file,
and one more run repairs it; no checkpoint kept between runs is ever deleted; an edit of any key of the
group's training plans every seed of the group again, and (run for a key of each kind) retrains them all in
the same run."""

import os
import re
import shutil

import pytest
import xarray as xr
import yaml

from geomvol.config import checkpoint_lineage, resolve_config
from geomvol.train.checkpoint import checkpoint_record

from helpers import SMOKE_CONFIG, set_key, snakemake

pytestmark = [pytest.mark.slow, pytest.mark.workflow]

EXPERIMENT = "sinusoid-smoke"
SEEDS = (0, 1)
GROUP = "s0-s1"
EPOCHS = (0, 40)  # probed (and published); 20 is saved too


def group_config(edit=None) -> dict:
    """The smoke sinusoid with two seeds (one group), probed at two epochs, without the curvature (fewer jobs)."""
    config = yaml.safe_load(SMOKE_CONFIG.read_text())
    experiment = config["experiments"][EXPERIMENT]
    experiment["seeds"] = list(SEEDS)
    experiment["probe"].update(epochs=list(EPOCHS), curvature=False)
    if edit is not None:
        edit(experiment)
    return {"experiments": {EXPERIMENT: experiment}}


def run(workdir, config: dict, *extra):
    configfile = workdir.parent / f"{workdir.name}.yaml"
    configfile.write_text(yaml.safe_dump(config))
    return snakemake(workdir, configfile, *extra)


def kept_checkpoints(workdir, experiment: str = EXPERIMENT) -> dict:
    """Every checkpoint kept between runs (the train-state stores) of ``experiment`` (a glob), by path: its bytes."""
    return {path.relative_to(workdir): path.read_bytes()
            for path in sorted((workdir / "results").glob(f"{experiment}/s*/train-state/*/epoch_*.pt"))}


def outputs(workdir) -> dict:
    """What an uninterrupted run must give: the published checkpoints' and metrics' bytes, the volume store's values."""
    results = workdir / "results" / EXPERIMENT
    files = {path.relative_to(results): path.read_bytes() for pattern in ("s?/checkpoints/*.pt", "s?/train_metrics.tsv")
             for path in sorted(results.glob(pattern))}
    with xr.open_zarr(results / "volume.zarr") as volume:
        values = {name: volume[name].values for name in volume.data_vars if volume[name].dtype.kind == "f"}
    return {"files": files, "values": values}


def assert_same_outputs(workdir, reference: dict):
    now = outputs(workdir)
    assert now["files"].keys() == reference["files"].keys()
    for path, data in reference["files"].items():
        assert now["files"][path] == data, path
    for name, values in reference["values"].items():
        assert (now["values"][name] == values)[values == values].all(), name  # NaN where undefined, as before


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """The two-seed group run to the end, and what it made."""
    workdir = tmp_path_factory.mktemp("group") / "work"
    result = run(workdir, group_config())
    assert result.returncode == 0, result.stdout + result.stderr
    return workdir, outputs(workdir), kept_checkpoints(workdir)


@pytest.fixture
def copy_of_run(finished, tmp_path):
    workdir, reference, kept = finished
    copied = tmp_path / "work"
    shutil.copytree(workdir, copied, symlinks=True, copy_function=shutil.copy2)
    return copied, reference, kept


def results_of(workdir):
    return workdir / "results" / EXPERIMENT


def nothing_left(workdir, config=None):
    """`snakemake -n` plans nothing."""
    result = run(workdir, config or group_config(), "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "Nothing to be done" in result.stdout + result.stderr, result.stdout
    return result


def test_the_group_trains_as_one_job_with_copies_and_records(finished):
    workdir, _, kept = finished
    results = results_of(workdir)
    assert "train seeds 0, 1" in (results / "logs" / f"train_{GROUP}.log").read_text()
    assert len(kept) == len(SEEDS) * 3  # epochs 0, 20 and 40 of each seed
    for seed in SEEDS:
        (store,) = (results / f"s{seed}" / "train-state").glob("*/lineage.json")
        for epoch in EPOCHS:
            published = results / f"s{seed}" / "checkpoints" / f"epoch_{epoch}.pt"
            original = store.parent / f"epoch_{epoch}.pt"
            assert published.read_bytes() == original.read_bytes()
            assert not os.path.samefile(published, original)  # a copy: damage to one reaches no other
            assert published.with_name(f"epoch_{epoch}.pt.integrity.json").is_file()
    nothing_left(workdir)


# --- 1. a group is one unit: every key of its training lineage retrains every seed, in one run ------------

LINEAGE_EDITS = {
    "model.activation": "tanh", "model.width": 33, "model.weight_std": 0.5, "model.scale_readout_bias": False,
    "training.batch_size": 20, "training.optimizer.lr": 0.2, "training.optimizer.momentum": 0.5,
    "training.optimizer.weight_decay": 0.01, "training.optimizer.name": "adam", "training.dtype": "float64",
    "training.mixed_precision": False, "training.drop_last": True, "dataset.n_points": 90, "dataset.seed": 3,
}


# every key is planned (a dry run each); these are also run, one experiment each: a key of each section, the
# optimizer's name (its defaults change with it), the dtype (the tensors change with it), a key of the data set
RUN_EDITS = ("model.activation", "training.optimizer.name", "training.dtype", "dataset.seed")


def test_every_key_of_the_training_lineage_is_covered():
    """The table above edits every leaf of what a group's checkpoints depend on (but its seeds and its objective,
    which the sinusoid's one objective leaves fixed, and augmentation, for images only)."""
    experiment = resolve_config(group_config())["experiments"][EXPERIMENT]
    lineage = checkpoint_lineage({"seed": 0, "model": experiment["model"], "training": experiment["training"]})

    def leaves(value, prefix=""):
        if isinstance(value, dict):
            return {leaf for key, item in value.items() for leaf in leaves(item, f"{prefix}{key}.")}
        return {prefix.rstrip(".")}

    covered = {key for key in LINEAGE_EDITS if not key.startswith("dataset.")}
    assert leaves(lineage) - covered == {"seed", "model.name", "training.objective.name",
                                         "training.augmentation.crop_padding", "training.augmentation.horizontal_flip"}


@pytest.mark.parametrize("key", list(LINEAGE_EDITS))
def test_an_edit_of_the_groups_training_plans_every_seed_and_what_follows(finished, key):
    """The issue's case (weight decay), and every other key of the lineage: edited after a complete run, it plans
    the group's training, both seeds' checkpoints and metrics, and everything after them."""
    workdir, _, _ = finished
    result = run(workdir, group_config(set_key(key, LINEAGE_EDITS[key])), "--dry-run")
    assert result.returncode == 0, result.stderr
    planned = result.stdout
    assert f"seeds={GROUP}" in planned
    for seed in SEEDS:
        for epoch in EPOCHS:
            assert f"experiment={EXPERIMENT}, seed={seed}, epoch={epoch}" in planned  # publish_checkpoint
    for rule, count in (("train", 1), ("publish_checkpoint", 4), ("training_metrics", 2), ("probe", 2),
                        ("combine_probes", 1), ("measure", 1)):
        assert f"\n{rule}" in planned and any(line.split() == [rule, str(count)] for line in planned.splitlines()), rule


@pytest.fixture(scope="module")
def edited(tmp_path_factory):
    """One experiment per key of RUN_EDITS, each the two-seed group, trained (the group's training job's own
    checkpoints: what its publish jobs copy, test_an_edit_of_the_groups_training_plans_every_seed_and_what_follows
    shows they follow); then each edited by its key and run once more: two Snakemake runs for all the edits."""
    workdir = tmp_path_factory.mktemp("edits") / "work"
    names = {key: f"edit-{index}" for index, key in enumerate(RUN_EDITS)}
    base = group_config()["experiments"][EXPERIMENT]
    targets = [f"results/{name}/{GROUP}/training" for name in names.values()]
    before = {"experiments": {name: base for name in names.values()}}
    result = run(workdir, before, *targets)
    assert result.returncode == 0, result.stdout + result.stderr
    kept = {path: data for path, data in kept_checkpoints(workdir, "*").items()}
    after = {"experiments": {}}
    for key, name in names.items():
        after["experiments"][name] = group_config(set_key(key, LINEAGE_EDITS[key]))["experiments"][EXPERIMENT]
    result = run(workdir, after, *targets)
    assert result.returncode == 0, result.stdout + result.stderr
    return workdir, names, after, kept, targets


@pytest.mark.parametrize("key", RUN_EDITS)
def test_after_one_run_every_seed_carries_the_edit(edited, key):
    """After each edit and one run, every seed's checkpoints carry the new lineage and the data set they were trained
    on; the first setting's checkpoints are all still kept."""
    workdir, names, config, kept, _ = edited
    name = names[key]
    experiment = resolve_config(config)["experiments"][name]
    training = workdir / "results" / name / GROUP / "training"
    data = checkpoint_record(training / "s0" / "epoch_0.pt")["dataset_sha256"]
    for seed in SEEDS:
        expected = checkpoint_lineage({"seed": seed, "model": experiment["model"], "training": experiment["training"]})
        for epoch in EPOCHS:
            record = checkpoint_record(training / f"s{seed}" / f"epoch_{epoch}.pt")
            assert record["train_spec"] == expected and record["epoch"] == epoch and record["dataset_sha256"] == data
    now = kept_checkpoints(workdir, name)
    assert {path: data for path, data in kept.items() if path.parts[1] == name}.items() <= now.items()


def test_after_the_edits_nothing_is_left_to_do(edited):
    workdir, _, config, _, targets = edited
    again = run(workdir, config, "--dry-run", *targets)
    assert "Nothing to be done" in again.stdout + again.stderr, again.stdout


def test_switching_a_setting_and_back_reuses_the_first_runs_checkpoints(copy_of_run):
    """lr edited, the group trained (into new stores), lr back: the group's training job finds every epoch in the
    first stores and computes nothing; the outputs are the first run's."""
    workdir, reference, kept = copy_of_run
    targets = [f"results/{EXPERIMENT}/s{seed}/checkpoints/epoch_{epoch}.pt" for seed in SEEDS for epoch in EPOCHS]
    assert run(workdir, group_config(set_key("training.optimizer.lr", 0.2)), *targets).returncode == 0
    result = run(workdir, group_config())
    assert result.returncode == 0, result.stdout + result.stderr
    log = (results_of(workdir) / "logs" / f"train_{GROUP}.log").read_text()
    assert "computing" not in log and "kept in" not in log, log  # every epoch found in its store
    assert_same_outputs(workdir, reference)
    assert {path: data for path, data in kept_checkpoints(workdir).items() if path in kept} == kept


# --- 2-4. damage: verified where read, moved aside, made again; nothing kept is deleted -------------------


def damage(path, how: str):
    data = bytearray(path.read_bytes())
    if how == "truncate":
        path.write_bytes(bytes(data[: len(data) // 3]))
    elif how == "flip":  # same size: only the sha256 sees it
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
    elif how == "garbage":
        path.write_bytes(os.urandom(len(data)))


def repaired(workdir, reference, kept, first, named: str | None):
    """After the fault: the first run either repaired everything or failed naming ``named``; then (one more run
    if it failed) every output is an uninterrupted run's, nothing is left to do, and every kept checkpoint is
    still there with its bytes."""
    if first.returncode != 0:
        assert named is not None, first.stdout + first.stderr
        logs = "".join(path.read_text() for path in (results_of(workdir) / "logs").glob("*.log"))
        assert named in logs and "moved aside to" in logs, logs
        second = run(workdir, group_config())
        assert second.returncode == 0, second.stdout + second.stderr
    assert_same_outputs(workdir, reference)
    nothing_left(workdir)
    now = kept_checkpoints(workdir)
    assert {path: now.get(path) for path in kept} == kept


def test_a_truncated_published_checkpoint_is_made_again_in_one_run(copy_of_run):
    workdir, reference, kept = copy_of_run
    published = results_of(workdir) / "s1" / "checkpoints" / "epoch_40.pt"
    damage(published, "truncate")
    plan = run(workdir, group_config(), "--dry-run")
    assert f"{published.relative_to(workdir)} is made again" in plan.stderr  # a dry run shows it
    first = run(workdir, group_config())
    assert first.returncode == 0, first.stdout + first.stderr
    repaired(workdir, reference, kept, first, None)


def test_a_hand_edited_summary_table_is_made_again(copy_of_run):
    """results/summary.tsv carries its record like every output: a table cut short is made again from the
    measures stores, and nothing before it."""
    workdir, reference, kept = copy_of_run
    summary = workdir / "results" / "summary.tsv"
    damage(summary, "truncate")
    plan = run(workdir, group_config(), "--dry-run")
    assert "results/summary.tsv is made again" in plan.stderr
    assert set(re.findall(r"^(\w+)\s+\d+$", plan.stdout, flags=re.M)) == {"summary", "all", "total"}, plan.stdout
    first = run(workdir, group_config())
    assert first.returncode == 0, first.stdout + first.stderr
    repaired(workdir, reference, kept, first, None)


def test_a_flipped_byte_in_a_published_checkpoint_fails_naming_it_then_is_made_again(copy_of_run):
    workdir, reference, kept = copy_of_run
    published = results_of(workdir) / "s0" / "checkpoints" / "epoch_40.pt"
    damage(published, "flip")
    first = run(workdir, group_config())
    assert first.returncode != 0
    assert list(published.parent.glob("epoch_40.pt.damaged-*Z"))  # kept for inspection, not taken for the output
    repaired(workdir, reference, kept, first, f"checkpoint {published.relative_to(workdir)} is damaged")


def test_damage_in_the_groups_directory_is_restored_from_the_store(copy_of_run):
    """A checkpoint of the group's training directory damaged (and its published copy gone): publishing finds
    the store's copy intact and restores from it, retraining nothing."""
    workdir, reference, kept = copy_of_run
    copied = results_of(workdir) / GROUP / "training" / "s1" / "epoch_40.pt"
    damage(copied, "flip")
    (results_of(workdir) / "s1" / "checkpoints" / "epoch_40.pt").unlink()
    first = run(workdir, group_config())
    assert first.returncode == 0, first.stdout + first.stderr
    assert "restored from" in (results_of(workdir) / "logs" / "publish_s1_epoch_40.log").read_text()
    repaired(workdir, reference, kept, first, None)


def test_a_garbage_data_set_fails_naming_it_and_deletes_no_checkpoint(copy_of_run):
    workdir, reference, kept = copy_of_run
    data = results_of(workdir) / "data" / "dataset.pt"
    damage(data, "garbage")
    first = run(workdir, group_config())
    assert first.returncode != 0
    assert {path: kept_checkpoints(workdir).get(path) for path in kept} == kept  # every kept checkpoint, untouched
    repaired(workdir, reference, kept, first, f"data set {data.relative_to(workdir)} does not match the sha256")


def test_a_corrupt_probe_store_fails_naming_it_then_is_probed_again(copy_of_run):
    workdir, reference, kept = copy_of_run
    store = results_of(workdir) / GROUP / "probes" / "epoch_40.zarr.zip"
    damage(store, "garbage")
    first = run(workdir, group_config())
    assert first.returncode != 0
    repaired(workdir, reference, kept, first, f"store {store.relative_to(workdir)} is damaged")


def test_a_deleted_chunk_of_the_volume_store_is_an_error_and_is_made_again(copy_of_run):
    from geomvol.integrity import IntegrityError
    from geomvol.store import open_store

    workdir, reference, kept = copy_of_run
    volume = results_of(workdir) / "volume.zarr"
    chunk = next(path for path in sorted((volume / "log10_volume").rglob("*")) if path.is_file() and path.name != "zarr.json")
    chunk.unlink()
    with pytest.raises(IntegrityError, match=f"{chunk} is missing"):
        open_store(volume)  # not NaN
    first = run(workdir, group_config())
    assert first.returncode == 0, first.stdout + first.stderr
    repaired(workdir, reference, kept, first, None)


def test_a_volume_store_deleted_after_a_failure_is_made_again(copy_of_run):
    """What Snakemake leaves after a failed combine: no volume store, the measures and figures of before. The next
    dry run plans the store and what reads it, not "Nothing to be done"."""
    workdir, reference, kept = copy_of_run
    shutil.rmtree(results_of(workdir) / "volume.zarr")
    plan = run(workdir, group_config(), "--dry-run")
    assert "Nothing to be done" not in plan.stdout and "combine_probes" in plan.stdout
    first = run(workdir, group_config())
    assert first.returncode == 0, first.stdout + first.stderr
    repaired(workdir, reference, kept, first, None)


def test_trace_fails_on_a_checkpoint_whose_lineage_disagrees_with_the_store(copy_of_run):
    """The issue's silent case, forced: a volume store records one training config, a checkpoint it was made
    from another. trace says so and exits 1, though every checksum matches."""
    import json

    from geomvol.lineage import trace

    workdir, _, _ = copy_of_run
    volume = results_of(workdir) / "volume.zarr"
    metadata = volume / "zarr.json"
    text = json.loads(metadata.read_text())
    config = json.loads(text["attributes"]["experiment_config"])
    config["training"]["optimizer"]["weight_decay"] = 0.01
    text["attributes"]["experiment_config"] = json.dumps(config, sort_keys=True, separators=(",", ":"))
    metadata.write_text(json.dumps(text))
    steps = trace(volume)
    disagreeing = [step for step in steps if step.status == "DISAGREES"]
    assert disagreeing and all(step.kind == "checkpoint" for step in disagreeing)
    assert ('training.optimizer.weight_decay: 0.0 here, 0.01 in results/sinusoid-smoke/volume.zarr'
            in disagreeing[0].disagreement)


# --- 6. removing a seed re-probes no seed it kept ------------------------------------------------------------


def test_removing_a_seed_trains_and_probes_nothing_again(copy_of_run):
    """Seeds [0, 1] -> [0]: the new group's training job finds seed 0's store full, and each probe takes seed 0's
    probe from the two-seed group's store (the same checkpoint file, settings and code); the volume store holds
    the values it held for seed 0."""
    workdir, reference, _ = copy_of_run
    with xr.open_zarr(results_of(workdir) / "volume.zarr") as volume:
        before = volume["log10_volume"].sel(seed=[0]).values
    result = run(workdir, group_config(lambda experiment: experiment.update(seeds=[0])))
    assert result.returncode == 0, result.stdout + result.stderr
    logs = results_of(workdir) / "logs"
    assert "computing" not in (logs / "train_s0.log").read_text()
    for epoch in EPOCHS:
        log = (logs / f"probe_s0_epoch_{epoch}.log").read_text()
        assert f"seed 0: the probe of results/{EXPERIMENT}/s0/checkpoints/epoch_{epoch}.pt" in log, log
        assert f"is taken from results/{EXPERIMENT}/{GROUP}/probes/epoch_{epoch}.zarr.zip" in log
    with xr.open_zarr(results_of(workdir) / "volume.zarr") as volume:
        assert volume["seed"].values.tolist() == [0]
        assert (volume["log10_volume"].values == before).all()
