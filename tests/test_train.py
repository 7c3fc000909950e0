import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from geomvol.stages import extend_training, prepare_dataset, train
from geomvol.errors import CheckpointError
from geomvol.provenance import sha256_file
from geomvol.config import SCHEDULE_KEYS, checkpoint_lineage, resolve_config
from geomvol.errors import ConfigError
from geomvol.integrity import is_intact, recorded_sha256
from geomvol.train.checkpoint import checkpoint_record, load_checkpoint, save_checkpoint, store_key

from helpers import tiny_experiment, train_with_metrics, training_run


def test_fit_writes_the_schedule_and_keeps_its_store(trained):
    root = trained["root"]
    assert [p.name for p in trained["checkpoints"]] == ["epoch_0.pt", "epoch_10.pt", "epoch_30.pt"]
    (store,) = (path.parent for path in (root / "train-state").glob("*/lineage.json"))  # the one keyed store
    assert store.name == store_key(checkpoint_lineage(training_run(trained["experiment"])), sha256_file(trained["data"]))
    for path in trained["checkpoints"]:  # published as copies of the store's files, not the same files
        assert path.read_bytes() == (store / path.name).read_bytes()
        assert not os.path.samefile(path, store / path.name)
        assert recorded_sha256(store / path.name) == sha256_file(path)
    manifest = json.loads((root / "checkpoints" / "manifest.json").read_text())
    assert manifest["git_commit"] and manifest["geomvol_version"] == "0.1.0" and manifest["host"]
    assert torch.__version__.startswith(manifest["package_versions"]["torch"])  # 2.14.1 of 2.14.1+cu130
    assert manifest["dataset_sha256"] == sha256_file(trained["data"])
    assert manifest["epochs"] == [0, 10, 30] and manifest["seeds"]["0"]["store"] == str(store)
    assert [(m["epoch"], m["sha256"]) for m in manifest["seeds"]["0"]["checkpoints"]] == [
        (int(p.stem.split("_")[1]), sha256_file(p)) for p in trained["checkpoints"]
    ]
    assert is_intact(root / "checkpoints")
    rows = (root / "metrics.tsv").read_text().splitlines()
    assert rows[0] == "epoch\tloss\taccuracy" and len(rows) == 31
    last = load_checkpoint(trained["checkpoints"][-1])
    assert last["epoch"] == 30
    assert last["history"]["epoch"] == list(range(1, 31))
    assert last["train_spec"] == checkpoint_lineage(training_run(trained["experiment"]))
    assert "epochs" not in last["train_spec"]["training"] and "threads" not in last["train_spec"]["training"]
    assert last["dataset_sha256"] == sha256_file(trained["data"])
    first = load_checkpoint(trained["checkpoints"][0])
    assert first["history"]["epoch"] == []
    # training moved the weights and lowered the loss
    assert not torch.equal(first["model"]["hidden_layer.weight"], last["model"]["hidden_layer.weight"])
    assert last["history"]["loss"][-1] < last["history"]["loss"][0]


def test_training_is_deterministic(trained, tmp_path):
    again = train_with_metrics(training_run(trained["experiment"]), trained["data"], tmp_path / "ck", tmp_path / "state", tmp_path / "m.tsv")
    assert [sha256_file(p) for p in again] == [sha256_file(p) for p in trained["checkpoints"]]
    assert (tmp_path / "m.tsv").read_bytes() == (trained["root"] / "metrics.tsv").read_bytes()


def test_another_seed_trains_another_network(trained, tmp_path):
    other = train_with_metrics(training_run(trained["experiment"], seed=1), trained["data"], tmp_path / "ck", tmp_path / "s", tmp_path / "m.tsv")
    assert sha256_file(other[0]) != sha256_file(trained["checkpoints"][0])


def _train_command(spec, data, root):
    schedule = {key: spec["training"][key] for key in SCHEDULE_KEYS}
    lineage = {key: value for key, value in checkpoint_lineage(spec).items() if key != "seed"}
    return [
        sys.executable, "-m", "geomvol.cli", "train", "--lineage", json.dumps({"seeds": [spec["seed"]], **lineage}),
        "--schedule", json.dumps(schedule), "--data", str(data), "--manifest", str(data.with_name("manifest.json")),
        "--output-dir", str(root / "checkpoints"), "--state-dirs", json.dumps({str(spec["seed"]): str(root / "state")}),
    ]


@pytest.mark.slow
def test_killed_training_resumes_and_ends_bit_identical(tmp_path):
    experiment = tiny_experiment(epochs=600, batch_size=10, save_epochs={"every": 100})
    experiment["dataset"]["n_points"] = 100
    data = tmp_path / "data.pt"
    prepare_dataset(experiment["dataset"], data, tmp_path / "manifest.json")
    spec = training_run(experiment)

    reference = tmp_path / "reference"
    subprocess.run(_train_command(spec, data, reference), check=True, capture_output=True)

    killed = tmp_path / "killed"
    process = subprocess.Popen(_train_command(spec, data, killed), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not list((killed / "state").glob("*/epoch_100.pt")):
        assert process.poll() is None and time.monotonic() < deadline, "training ended before it could be killed"
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    assert not (killed / "checkpoints").exists(), "a killed run must not publish checkpoints"
    saved = sorted(p.name for p in (killed / "state").glob("*/epoch_*.pt"))
    assert "epoch_600.pt" not in saved

    resumed = subprocess.run(_train_command(spec, data, killed), check=True, capture_output=True, text=True)
    resumed_from = max(int(name[len("epoch_"):-3]) for name in saved)
    assert f"resuming from epoch {resumed_from}" in resumed.stderr
    names = sorted(os.listdir(reference / "checkpoints" / "s0"))
    assert names == sorted(os.listdir(killed / "checkpoints" / "s0"))
    for name in names:
        assert (killed / "checkpoints" / "s0" / name).read_bytes() == (reference / "checkpoints" / "s0" / name).read_bytes()


def test_state_from_another_config_is_kept_apart_and_not_resumed(trained, tmp_path, capsys):
    """A checkpoint an older geomvol kept loose in the store (another seed's lineage) moves into its own lineage's
    keyed store, deleted by nobody, and this lineage trains from scratch beside it."""
    spec = training_run(trained["experiment"])
    state = tmp_path / "state"
    state.mkdir()
    other = load_checkpoint(trained["checkpoints"][1])
    other["train_spec"] = checkpoint_lineage({**spec, "seed": 99})
    save_checkpoint({k: v for k, v in other.items() if k != "format"}, state / "epoch_10.pt")
    paths = train_with_metrics(spec, trained["data"], tmp_path / "ck", state, tmp_path / "m.tsv")
    kept = state / store_key(other["train_spec"], other["dataset_sha256"]) / "epoch_10.pt"
    assert f"moved {state / 'epoch_10.pt'} into the store of its lineage" in capsys.readouterr().err
    assert checkpoint_record(kept)["train_spec"]["seed"] == 99 and is_intact(kept)
    assert [sha256_file(p) for p in paths] == [sha256_file(p) for p in trained["checkpoints"]]


def test_a_damaged_checkpoint_in_the_store_is_set_aside_and_made_again(trained, tmp_path, capsys):
    """One flipped byte in a kept checkpoint: the next train job moves it aside (naming it) and makes it again
    from the nearest intact earlier one; the result is an uninterrupted run's file."""
    spec = training_run(trained["experiment"])
    state = tmp_path / "state"
    train_one(spec, trained["data"], tmp_path / "ck", state)
    (damaged,) = state.glob("*/epoch_30.pt")
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    capsys.readouterr()
    paths = train_one(spec, trained["data"], tmp_path / "again", state)
    err = capsys.readouterr().err
    assert f"checkpoint {damaged} does not match the sha256 recorded when it was written; moved aside to" in err
    assert "computing [30]" in err and "resuming from epoch 10" in err
    assert [path.read_bytes() for path in paths] == [path.read_bytes() for path in trained["checkpoints"]]
    assert len(list(damaged.parent.glob("epoch_30.pt.damaged-*Z"))) == 1  # kept for inspection


def _store_files(state) -> dict:
    """Each checkpoint file of a store: (inode, modification time, bytes)."""
    return {path.relative_to(state): (path.stat().st_ino, path.stat().st_mtime_ns, path.read_bytes())
            for path in sorted(state.glob("*/epoch_*.pt"))}


def train_one(run, data, output_dir, state_dir) -> list:
    """The train stage on one seed: its checkpoints in ``output_dir``."""
    (paths,) = train([run], data, data.with_name("manifest.json"), output_dir, [state_dir]).values()
    return paths


def train_group(runs, data, output_dir, state_dirs) -> dict:
    """The train stage on a seed group: each seed's checkpoints in ``output_dir``."""
    return train(runs, data, data.with_name("manifest.json"), output_dir, state_dirs)


def test_training_longer_continues_from_the_last_checkpoint(trained, tmp_path, capsys):
    """epochs 30 -> 50: only epoch 50 is computed, from 30; 0, 10 and 30 stay the very same files; 50 is the
    file an uninterrupted run to 50 writes."""
    spec = training_run(trained["experiment"])
    state = tmp_path / "state"
    train_one(spec, trained["data"], tmp_path / "ck", state)
    before = _store_files(state)
    capsys.readouterr()
    longer = {**spec, "training": {**spec["training"], "epochs": 50, "save_epochs": [10, 30, 50]}}
    paths = train_one(longer, trained["data"], tmp_path / "ck", state)
    err = capsys.readouterr().err
    assert "computing [50]" in err and "resuming from epoch 30" in err
    after = _store_files(state)
    assert {name: after[name] for name in before} == before
    fresh = train_one(longer, trained["data"], tmp_path / "fresh", tmp_path / "fresh-state")
    assert [path.read_bytes() for path in paths] == [path.read_bytes() for path in fresh]


def test_a_saved_epoch_between_two_is_made_from_the_earlier(trained, tmp_path, capsys):
    """save_epochs [10, 30] -> [10, 20, 30]: extend makes epoch 20 from 10 and nothing else; it is the file an
    uninterrupted run saving 20 writes, and 30 (made before 20 existed) is that run's 30 too."""
    spec = training_run(trained["experiment"])
    state = tmp_path / "state"
    train_one(spec, trained["data"], tmp_path / "ck", state)
    before = _store_files(state)
    capsys.readouterr()
    more = {**spec, "training": {**spec["training"], "save_epochs": [10, 20, 30]}}
    (made,), = extend_training([more], trained["data"], trained["manifest"], 20, tmp_path / "epoch_20", [state]).values()
    err = capsys.readouterr().err
    assert "computing [20]" in err and "resuming from epoch 10" in err
    assert {name: _store_files(state)[name] for name in before} == before
    fresh = train_one(more, trained["data"], tmp_path / "fresh", tmp_path / "fresh-state")
    assert [path.name for path in fresh] == ["epoch_0.pt", "epoch_10.pt", "epoch_20.pt", "epoch_30.pt"]
    assert made.read_bytes() == fresh[2].read_bytes()
    assert next(state.glob("*/epoch_30.pt")).read_bytes() == fresh[3].read_bytes()
    with pytest.raises(CheckpointError, match=r"epoch 25 is not a saved epoch"):
        extend_training([more], trained["data"], trained["manifest"], 25, tmp_path / "epoch_25", [state])


def test_a_checkpoint_record_read_without_torch_has_every_value_but_the_tensors(trained):
    for path in trained["checkpoints"]:
        state, record = load_checkpoint(path), checkpoint_record(path)
        assert record.keys() == state.keys()
        for key in ("format", "epoch", "history", "train_spec", "dataset_sha256", "model_spec"):
            assert record[key] == state[key]
        assert record["model"] == dict.fromkeys(state["model"])  # the tensors' names, each None
        assert record["rng"] == {"torch": None, "batch_order": None, "augmentation": None}


def test_truncated_or_foreign_checkpoint_is_named(trained, tmp_path):
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(trained["checkpoints"][0].read_bytes()[:500])
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    for read in (load_checkpoint, checkpoint_record):
        with pytest.raises(CheckpointError, match=f"checkpoint {truncated} is unreadable"):
            read(truncated)
        with pytest.raises(CheckpointError, match=f"checkpoint {foreign} is not a geomvol checkpoint"):
            read(foreign)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nothing.pt")


# --- seed groups: several seeds of the shallow net trained as one ensemble -------------------------------


def _group_stores(tmp_path, name, seeds) -> list:
    return [tmp_path / f"{name}-s{seed}" for seed in seeds]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("optimizer", [{"name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4},
                                       {"name": "adam", "lr": 0.01, "weight_decay": 1e-4}])
def test_a_seed_group_trains_each_seed_as_it_trains_alone(trained, tmp_path, optimizer, dtype):
    """Three seeds trained as one ensemble: each seed's checkpoints are the files its own run writes (weights,
    optimiser state, RNG states, history), at every saved epoch."""
    experiment = tiny_experiment(optimizer=optimizer, dtype=dtype)
    seeds = [0, 1, 2]
    group = _group_stores(tmp_path, "group", seeds)
    grouped = train_group([training_run(experiment, seed) for seed in seeds], trained["data"], tmp_path / "ck-group",
                          group)
    for seed in seeds:
        alone = train_one(training_run(experiment, seed), trained["data"], tmp_path / f"ck-{seed}", tmp_path / f"s{seed}")
        assert [path.name for path in alone] == [path.name for path in grouped[seed]] == ["epoch_0.pt", "epoch_10.pt",
                                                                                          "epoch_30.pt"]
        for mine, theirs in zip(alone, grouped[seed]):
            assert mine.read_bytes() == theirs.read_bytes(), (seed, mine.name)
    first = load_checkpoint(grouped[1][1])
    assert first["train_spec"]["seed"] == 1 and first["epoch"] == 10


def test_the_first_step_of_a_group_is_each_seeds_own_first_step(trained):
    """One step of the ensemble against one step of each seed's net on its own, to float64 rounding."""
    from geomvol.train.loop import TrainingRun, train_one_epoch

    experiment = tiny_experiment(dtype="float64")
    experiment["training"]["batch_size"] = 60  # one step per epoch
    runs = [training_run(experiment, seed) for seed in (0, 3)]
    group = TrainingRun(runs, trained["data"])
    group.train_epoch()
    for index, run in enumerate(runs):
        alone = TrainingRun([run], trained["data"])
        train_one_epoch(alone.model, alone.objective, alone.optimizer, alone.batches, 60, False, alone.generators)
        member = group.model.member(index)
        for name, weight in alone.model.state_dict().items():
            torch.testing.assert_close(member.state_dict()[name], weight, rtol=0, atol=1e-15)


def test_a_killed_group_resumes_bit_identical(trained, tmp_path, monkeypatch):
    """A group killed inside epoch 3 (epoch 2 saved) and run again: every seed's checkpoints are those of the
    group run that was not killed."""
    from geomvol.train import loop

    experiment = tiny_experiment(epochs=4, save_epochs={"every": 2})
    seeds = [0, 1]
    group = _group_stores(tmp_path, "group", seeds)
    original = loop.train_one_epoch
    calls = {"n": 0}

    def dies_in_epoch_three(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("killed")
        return original(*args, **kwargs)

    monkeypatch.setattr(loop, "train_one_epoch", dies_in_epoch_three)
    runs = [training_run(experiment, seed) for seed in seeds]
    with pytest.raises(KeyboardInterrupt):
        train_group(runs, trained["data"], tmp_path / "ck", group)
    for store in group:
        assert sorted(p.name for p in store.glob("*/epoch_*.pt")) == ["epoch_0.pt", "epoch_2.pt"]
    assert not (tmp_path / "ck").exists()  # nothing published by a killed job
    monkeypatch.setattr(loop, "train_one_epoch", original)
    resumed = train_group(runs, trained["data"], tmp_path / "ck", group)
    uninterrupted = train_group(runs, trained["data"], tmp_path / "whole", _group_stores(tmp_path, "whole", seeds))
    for seed in seeds:
        assert [path.name for path in resumed[seed]] == ["epoch_0.pt", "epoch_2.pt", "epoch_4.pt"]
        for mine, theirs in zip(uninterrupted[seed], resumed[seed]):
            assert mine.read_bytes() == theirs.read_bytes(), (seed, mine.name)


def test_a_group_of_image_nets_augments_each_seed_with_its_own_draws(image_run, tmp_path):
    """The shallow net on MNIST-sized images (784 inputs, 8 units, float32), with crops and flips and a test
    split: each seed of a group draws its own crops, flips and batches, as alone; its weights agree with its
    own run's to float32 rounding (in batches of 10 torch multiplies tiny matrices another way than in
    batches: docs/seed-groups.md)."""
    experiment = image_run["experiment"]
    seeds = [0, 1]
    groups = train_group([training_run(experiment, seed) for seed in seeds], image_run["data"], tmp_path / "g",
                         _group_stores(tmp_path, "group", seeds))
    for seed in seeds:
        grouped = groups[seed]
        alone = train_one(training_run(experiment, seed), image_run["data"], tmp_path / f"a{seed}", tmp_path / f"s{seed}")
        for mine, theirs in zip(alone, grouped):
            mine, theirs = load_checkpoint(mine), load_checkpoint(theirs)
            for name in ("augmentation", "batch_order", "torch"):
                assert torch.equal(mine["rng"][name], theirs["rng"][name]), name
            for name, weight in mine["model"].items():
                torch.testing.assert_close(theirs["model"][name], weight, rtol=1e-5, atol=1e-6)
            assert theirs["history"]["accuracy"] == mine["history"]["accuracy"]
            assert theirs["history"]["loss"] == pytest.approx(mine["history"]["loss"], rel=1e-6)
    assert load_checkpoint(grouped[-1])["history"]["test_accuracy"]


def test_seed_groups_follow_the_config(tmp_path):
    from geomvol.config import seed_group_label, seed_groups

    def experiment(**keys):
        return resolve_config({"experiments": {"e": keys}})["experiments"]["e"]

    assert experiment(seeds=list(range(10)))["seed_group_size"] == 8  # the shallow net: 8 by default
    assert seed_groups(experiment(seeds=list(range(10)))) == [list(range(8)), [8, 9]]
    assert seed_groups(experiment(seeds=[5, 1, 3], seed_group_size=2)) == [[5, 1], [3]]
    assert seed_group_label([0, 1, 2]) == "s0-s1-s2" and seed_group_label([4]) == "s4"
    with pytest.raises(ConfigError, match=r"experiments\.e\.seed_group_size: seeds train together only for the "
                                          r"shallow net with the cross_entropy objective"):
        resolve_config({"experiments": {"e": {"seed_group_size": 2, "dataset": {"name": "cifar10", "synthetic": {
            "n_train": 10, "n_test": 10}}, "model": {"name": "resnet34"}, "probe": {"lines": [{"indices": [0, 1]}]}}}})


@pytest.mark.parametrize("drop_last, batch_size", [(True, 25), (False, 25), (True, 60), (True, 100)])
def test_an_epoch_takes_the_studys_number_of_steps(trained, drop_last, batch_size):
    """The study's MNIST-plane loop (src/run_mnist_plane.py): bs = min(batchsize, N), loops = N // bs steps an
    epoch, the rest of the order left out (6 steps for 1348 digits and batch 200); without drop_last, ceil(N / bs).
    Counted by Adam's own step counter."""
    from geomvol.train.loop import TrainingRun

    experiment = tiny_experiment(batch_size=batch_size, drop_last=drop_last,
                                 optimizer={"name": "adam", "lr": 0.01, "weight_decay": 1e-4})
    run = TrainingRun([training_run(experiment)], trained["data"])
    n = run.batches.x.shape[0]
    assert n == 60
    run.train_epoch()
    bs = min(batch_size, n)
    expected = n // bs if drop_last else -(-n // bs)
    steps = {int(state["step"]) for state in run.optimizer.state.values()}
    assert steps == {expected}
    assert run.runs[0]["training"]["optimizer"]["weight_decay"] == 1e-4
