"""Integrity records: what a stage writes carries its sha256, a reader checks it, damage is moved aside and named,
and the Snakefile's plan finds stale outputs from sizes and file lists alone."""

import hashlib
import json

import numpy as np
import pytest
import xarray as xr

from geomvol.integrity import (
    IntegrityError, is_intact, quick_check, recorded_sha256, set_aside, stale_outputs, verify, write_file_record,
    write_tree_record,
)
from geomvol.store import open_store, write_store


def test_a_file_record_holds_size_sha256_and_details(tmp_path):
    path = tmp_path / "epoch_3.pt"
    path.write_bytes(b"weights" * 100)
    sha = write_file_record(path, source="somewhere/epoch_3.pt")
    record = json.loads((tmp_path / "epoch_3.pt.integrity.json").read_text())
    assert sha == hashlib.sha256(b"weights" * 100).hexdigest() == record["sha256"] == recorded_sha256(path)
    assert record == {"file": "epoch_3.pt", "bytes": 700, "sha256": sha, "source": "somewhere/epoch_3.pt"}
    assert is_intact(path) and quick_check(path) == [] and verify(path) == path


def test_a_flipped_byte_is_seen_by_the_sha256_a_truncation_by_the_size(tmp_path):
    path = tmp_path / "a.pt"
    path.write_bytes(bytes(range(200)))
    write_file_record(path)
    path.write_bytes(bytes(range(199)) + b"\x00")  # same size
    assert quick_check(path) == [] and not is_intact(path)
    path.write_bytes(bytes(range(100)))
    assert quick_check(path) == [f"{path} has 100 bytes, its producer wrote 200"]


def test_verify_moves_damage_aside_and_names_it(tmp_path):
    path = tmp_path / "a.pt"
    path.write_bytes(b"x" * 50)
    write_file_record(path)
    path.write_bytes(b"y" * 50)
    with pytest.raises(IntegrityError, match=rf"checkpoint {path} is damaged \({path} does not match the sha256 its "
                                             rf"producer recorded\); moved aside to {path}\.damaged-\d+T\d+Z; run"):
        verify(path, "checkpoint")
    assert not path.exists()
    (moved,) = tmp_path.glob("a.pt.damaged-*Z")
    assert moved.read_bytes() == b"y" * 50 and (tmp_path / f"{moved.name}.integrity.json").is_file()
    with pytest.raises(IntegrityError, match=f"checkpoint {path} is missing"):
        verify(path, "checkpoint")


def test_a_file_without_a_record_is_refused_and_left_in_place(tmp_path):
    path = tmp_path / "old.pt"
    path.write_bytes(b"made by an older geomvol")
    with pytest.raises(IntegrityError, match="has no readable record old.pt.integrity.json"):
        verify(path)
    assert path.exists() and set_aside(path).name.startswith("old.pt.damaged-")


def test_a_tree_record_sees_a_missing_an_added_and_a_changed_file(tmp_path):
    tree = tmp_path / "training"
    (tree / "s0").mkdir(parents=True)
    (tree / "s0" / "epoch_0.pt").write_bytes(b"0" * 10)
    (tree / "manifest.json").write_text("{}")
    write_tree_record(tree)
    record = json.loads((tree / "integrity.json").read_text())["files"]
    assert sorted(record) == ["manifest.json", "s0/epoch_0.pt"] and record["s0/epoch_0.pt"]["bytes"] == 10
    assert is_intact(tree)
    (tree / ".snakemake_timestamp").touch()  # Snakemake's marker is not content
    assert is_intact(tree)
    (tree / "s0" / "epoch_0.pt").write_bytes(b"1" * 10)
    assert quick_check(tree) == [] and not is_intact(tree)
    (tree / "s0" / "epoch_0.pt").unlink()
    (tree / "extra").write_text("?")
    assert quick_check(tree) == [f"{tree / 's0' / 'epoch_0.pt'} is missing", f"{tree / 'extra'} is not in the record"]


def test_a_store_with_a_deleted_chunk_is_an_error_not_nan(tmp_path):
    store = tmp_path / "volume.zarr"
    ds = xr.Dataset({"log10_volume": (("seed", "x"), np.arange(6.0).reshape(2, 3))})
    write_store(ds, store)
    assert is_intact(store)
    np.testing.assert_array_equal(open_store(store)["log10_volume"].values, ds["log10_volume"].values)
    chunk = next(path for path in (store / "log10_volume").rglob("*") if path.is_file() and path.name != "zarr.json")
    chunk.unlink()
    with pytest.raises(IntegrityError, match=f"{chunk} is missing"):
        open_store(store)
    assert open_store(store, verify="none")["log10_volume"].isnull().any()  # what zarr alone would give


def test_a_zip_store_carries_a_record_and_a_corrupt_one_is_named(tmp_path):
    store = tmp_path / "epoch_0.zarr.zip"
    write_store(xr.Dataset({"a": ("x", [1.0, 2.0])}), store)
    assert recorded_sha256(store) == hashlib.sha256(store.read_bytes()).hexdigest()
    store.write_bytes(b"\0" * store.stat().st_size)
    with pytest.raises(IntegrityError, match=f"store {store} is damaged"):
        open_store(store, verify="sha256")
    garbage = tmp_path / "garbage.zarr.zip"
    garbage.write_bytes(b"not a zip")
    with pytest.raises(IntegrityError, match=f"store {garbage} is unreadable"):
        open_store(garbage)


def test_stale_outputs_are_the_damaged_and_those_fed_by_a_missing_input(tmp_path):
    made = {}
    for name in ("data", "checkpoint", "probe", "volume", "figure"):
        made[name] = tmp_path / name
        made[name].write_bytes(name.encode() * 10)
        write_file_record(made[name])
    edges = [(str(made["data"]), [], quick_check), (str(made["checkpoint"]), [str(made["data"])], quick_check),
             (str(made["probe"]), [str(made["checkpoint"])], quick_check),
             (str(made["volume"]), [str(made["probe"])], quick_check), (str(made["figure"]), [str(made["volume"])], None)]
    assert stale_outputs(edges) == {}
    made["probe"].unlink()  # what Snakemake leaves after a failed job
    made["checkpoint"].write_bytes(b"short")  # truncated
    assert stale_outputs(edges) == {
        str(made["checkpoint"]): f"{made['checkpoint']} has 5 bytes, its producer wrote 100",
        str(made["volume"]): f"its input {made['probe']} is missing"}
