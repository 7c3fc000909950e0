import json

import pytest
import torch

from geomvol.data.prepare import load_dataset
from geomvol.stages import prepare_dataset
from geomvol.data.sinusoid import sinusoid_labels
from geomvol.errors import DataError
from geomvol.provenance import sha256_file

from helpers import tiny_experiment


def test_sinusoid_labels_follow_the_boundary():
    # boundary at x1 = 0: 0.6 sin(-1) = -0.5049
    x = torch.tensor([[0.0, -0.50], [0.0, -0.51], [0.0, 0.9], [1.0, -0.9]])
    expected = [1, 0, 1, int(-0.9 > 0.6 * torch.sin(torch.tensor(6.0)))]
    assert sinusoid_labels(x, 0.6, 7.0, -1.0).tolist() == expected


def test_prepare_is_deterministic_and_manifest_is_true(tmp_path):
    spec = tiny_experiment()["dataset"]
    first = prepare_dataset(spec, tmp_path / "a.pt", tmp_path / "a.json")
    second = prepare_dataset(spec, tmp_path / "b.pt", tmp_path / "b.json")
    assert first["sha256"] == second["sha256"] == sha256_file(tmp_path / "a.pt")
    assert json.loads((tmp_path / "a.json").read_text()) == first
    data = load_dataset(tmp_path / "a.pt")
    assert data["x"].shape == (60, 2) and data["x"].dtype == torch.float32
    assert data["x"].min() >= -1 and data["x"].max() <= 1
    assert sum(first["class_counts"]) == 60
    assert torch.equal(data["y"], sinusoid_labels(data["x"].double(), 0.6, 7.0, -1.0))


def test_a_different_seed_draws_different_points(tmp_path):
    spec = tiny_experiment()["dataset"]
    a = prepare_dataset(spec, tmp_path / "a.pt", tmp_path / "a.json")
    b = prepare_dataset({**spec, "seed": 1}, tmp_path / "b.pt", tmp_path / "b.json")
    assert a["sha256"] != b["sha256"]


def test_missing_or_foreign_data_names_the_file(tmp_path):
    with pytest.raises(DataError, match=r"missing\.pt does not exist; run `geomvol prepare`"):
        load_dataset(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(DataError, match=r"junk\.pt is unreadable"):
        load_dataset(tmp_path / "junk.pt")
