import json
import math
import warnings
import zipfile

import numpy as np
import pytest
import torch
import xarray as xr

from geomvol.config import config_sha256, result_config
from geomvol.integrity import IntegrityError, is_intact
from geomvol.geometry.analytic import shallow_scalar_curvature_2d
from geomvol.io import atomic_path
from geomvol.probe import input_grid, probe_checkpoint
from geomvol.provenance import sha256_file
from geomvol.probe.core import load_probed_model
from geomvol.stages import combine_probes, prepare_dataset, probe
from geomvol.store import open_store, write_store
from geomvol.train.checkpoint import load_checkpoint
from geomvol.settings import ProbeSettings

from helpers import tiny_experiment, train_with_metrics, training_run


def test_grid_is_row_major_in_x2_x1():
    axis, points = input_grid(-1.0, 1.0, 3)
    assert axis.tolist() == [-1.0, 0.0, 1.0]
    assert points[1].tolist() == [0.0, -1.0]  # row x2 = -1, column x1 = 0
    assert points[3].tolist() == [-1.0, 0.0]


def test_probe_matches_the_closed_form_of_the_checkpoint(trained):
    experiment = trained["experiment"]
    checkpoint = trained["checkpoints"][-1]
    ds = probe_checkpoint(checkpoint, trained["data"], ProbeSettings.from_section(experiment["probe"]))
    assert ds["log10_volume"].dims == ("seed", "epoch", "block", "x2", "x1")
    assert ds["predicted_class"].dims == ("seed", "epoch", "x2", "x1")
    assert ds.sizes == {"seed": 1, "epoch": 1, "block": 1, "x2": 9, "x1": 9, "edge": 2, "eigenvalue": 2, "class_pair": 2}
    assert ds["block"].values.tolist() == ["hidden"] and ds["top_k"].values.tolist() == [2]
    assert ds["epoch"].item() == 30 and ds["seed"].item() == 0
    assert ds["checkpoint_sha256"].item() == sha256_file(checkpoint)

    state = load_checkpoint(checkpoint)
    weight, bias = state["model"]["hidden_layer.weight"].double(), state["model"]["hidden_layer.bias"].double()
    x2, x1 = np.meshgrid(ds["x2"].values, ds["x1"].values, indexing="ij")
    points = torch.tensor(np.stack([x1.ravel(), x2.ravel()], axis=1))
    s = torch.sigmoid(points @ weight.T + bias)
    dphi = s * (1 - s)
    metric = torch.einsum("jm,bj,jv->bmv", weight, dphi**2, weight) / weight.shape[0]
    expected = (0.5 * torch.logdet(metric) / math.log(10)).reshape(9, 9).numpy()
    np.testing.assert_allclose(ds["log10_volume"].values[0, 0, 0], expected, rtol=1e-10)
    # the direction of the stretch: G's eigenvalues and leading eigenvector, against the closed form's
    eigenvalues, vectors = torch.linalg.eigh(metric)
    np.testing.assert_allclose(ds["log10_metric_eigenvalue"].values[0, 0, 0].reshape(81, 2),
                               eigenvalues.flip(1).log10().numpy(), rtol=1e-10)
    leading = vectors[:, :, 1].numpy()
    stretch = ds["stretch_angle"].values[0, 0, 0].ravel()
    np.testing.assert_allclose(np.abs(np.cos(stretch) * leading[:, 0] + np.sin(stretch) * leading[:, 1]), 1.0, rtol=1e-10)
    assert np.all((stretch > -math.pi / 2) & (stretch <= math.pi / 2))

    # the study's readout: (R h + c) / sqrt(n)
    logits = (state["model"]["readout.weight"].double() @ s.T + state["model"]["readout.bias"].double()[:, None]) / math.sqrt(16)
    np.testing.assert_array_equal(ds["predicted_class"].values[0, 0].ravel(), logits.argmax(dim=0).numpy())
    # the margin's gradient, d(z_top1 - z_top2)/dx = sum_j (R_top1,j - R_top2,j) phi'(z_j) w_j / sqrt(n)
    readout = state["model"]["readout.weight"].double()
    top, other = logits.argmax(dim=0), 1 - logits.argmax(dim=0)
    gradient = ((readout[top] - readout[other]) * dphi) @ weight / math.sqrt(16)
    angle = ds["margin_gradient_angle"].values[0, 0].ravel()
    np.testing.assert_allclose(np.stack([np.cos(angle), np.sin(angle)], axis=1),
                               (gradient / gradient.norm(dim=1, keepdim=True)).numpy(), atol=1e-10)
    p = torch.softmax(logits, dim=0)
    np.testing.assert_allclose(ds["entropy"].values[0, 0].ravel(), -(p * p.log()).sum(dim=0).numpy(), rtol=1e-10)
    assert np.all(ds["entropy"].values <= math.log(2) + 1e-12)


def test_grid_curvature_is_half_the_closed_form_scalar_curvature(trained):
    """probe.curvature stores K on the input grid: R / 2 of the closed form (Brioschi-checked) at each point."""
    settings = ProbeSettings.from_section({**trained["experiment"]["probe"], "curvature": True})
    ds = probe_checkpoint(trained["checkpoints"][-1], trained["data"], settings)
    assert ds["curvature"].dims == ("seed", "epoch", "block", "x2", "x1")
    assert ds["curvature"].attrs["units"] == "1" and "saddle" in ds["curvature"].attrs["sign_convention"]
    state = load_checkpoint(trained["checkpoints"][-1])
    weight, bias = state["model"]["hidden_layer.weight"].double(), state["model"]["hidden_layer.bias"].double()
    _, points = input_grid(settings.grid.low, settings.grid.high, settings.grid.resolution)
    closed = (shallow_scalar_curvature_2d(weight, bias, torch.sigmoid, points) / 2).reshape(9, 9).numpy()
    np.testing.assert_allclose(ds["curvature"].values[0, 0, 0], closed, rtol=0, atol=1e-8 * np.abs(closed).max())
    assert np.abs(closed).max() > 1e-3


def test_a_float64_net_is_probed_with_its_exact_weights(tmp_path):
    """The probe's model takes the checkpoint's float64 weights as they are, not rounded through float32."""
    experiment = tiny_experiment(dtype="float64", epochs=3, save_epochs=[3])
    data = tmp_path / "dataset.pt"
    prepare_dataset(experiment["dataset"], data, tmp_path / "manifest.json")
    checkpoint = train_with_metrics(training_run(experiment), data, tmp_path / "out", tmp_path / "state",
                                    tmp_path / "metrics.tsv")[-1]
    state = load_checkpoint(checkpoint)
    assert state["model"]["hidden_layer.weight"].dtype == torch.float64
    probed = load_probed_model(checkpoint, ProbeSettings.from_section(experiment["probe"]))
    for name, value in probed.model.state_dict().items():
        assert torch.equal(value, state["model"][name]), name


def test_subspace_probe_equals_full_on_the_plane(trained):
    probe = trained["experiment"]["probe"]
    full = probe_checkpoint(trained["checkpoints"][1], trained["data"], ProbeSettings.from_section(probe))
    subspace = probe_checkpoint(trained["checkpoints"][1], trained["data"],
                                ProbeSettings.from_section({**probe, "metric": "subspace"}))
    np.testing.assert_allclose(subspace["log10_volume"].values, full["log10_volume"].values, rtol=1e-12)


def test_every_variable_is_labelled(trained):
    settings = ProbeSettings.from_section({**trained["experiment"]["probe"], "curvature": True})
    ds = probe_checkpoint(trained["checkpoints"][0], trained["data"], settings)
    for name, variable in ds.variables.items():
        assert variable.attrs.get("long_name"), name
        if variable.dtype.kind in "fiu":
            assert "units" in variable.attrs, name


def test_store_round_trip_with_one_chunk_per_epoch(trained, tmp_path):
    ds = probe_checkpoint(trained["checkpoints"][0], trained["data"], ProbeSettings.from_section(trained["experiment"]["probe"]))
    write_store(ds, tmp_path / "probe.zarr")
    back = open_store(tmp_path / "probe.zarr")
    xr.testing.assert_identical(back.load(), ds)
    assert back["log10_volume"].encoding["chunks"] == (1, 1, 1, 9, 9)
    assert back["predicted_class"].encoding["fill_value"] == -1
    with pytest.raises(FileExistsError):
        with atomic_path(tmp_path / "probe.zarr") as tmp:
            ds.to_zarr(tmp, mode="w-", zarr_format=3, consolidated=False)
            raise FileExistsError("simulated failure after writing")
    assert open_store(tmp_path / "probe.zarr")["epoch"].item() == 0, "a failed rewrite must leave the old store"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["probe.zarr"], "no temporary left behind"


def test_combine_joins_epochs_and_records_provenance(trained, tmp_path):
    experiment = trained["experiment"]
    paths = []
    for checkpoint in trained["checkpoints"]:
        path = tmp_path / f"{checkpoint.stem}.zarr.zip"  # as the pipeline writes them: one zip file each
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            probe([checkpoint], trained["data"], trained["manifest"], experiment["probe"], path)
        assert zipfile.ZipFile(path).testzip() is None
        paths.append(path)
    combine_probes(paths, "tiny", result_config(experiment), trained["data"], trained["manifest"], tmp_path / "volume.zarr")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a plain open_zarr must be quiet
        ds = xr.open_zarr(tmp_path / "volume.zarr")
    assert ds["probe_store_file"].values[0].tolist() == [str(p) for p in paths]
    assert ds["probe_store_sha256"].values[0].tolist() == [sha256_file(p) for p in paths]
    assert ds.attrs["dataset_file"] == str(trained["data"]) and ds.attrs["dataset_manifest_file"] == str(trained["manifest"])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(  # each probe store with its integrity record
        [p.name for p in paths] + [f"{p.name}.integrity.json" for p in paths] + ["volume.zarr"])
    assert is_intact(tmp_path / "volume.zarr") and all(is_intact(p) for p in paths)
    assert ds.sizes == {"seed": 1, "epoch": 3, "block": 1, "x2": 9, "x1": 9, "edge": 2, "eigenvalue": 2, "class_pair": 2, "point": 60}
    assert ds["epoch"].values.tolist() == [0, 10, 30]
    assert ds["checkpoint_sha256"].values[0].tolist() == [sha256_file(p) for p in trained["checkpoints"]]
    assert ds.attrs["config_sha256"] == config_sha256(result_config(experiment))
    assert ds.attrs["dataset_sha256"] == sha256_file(trained["data"])
    assert ds.attrs["metric"] == "full" and ds.attrs["top_k"] == "min(n, d)" and ds["top_k"].values.tolist() == [2]
    assert ds["feature_width"].values.tolist() == [16] and ds.attrs["feature_maps"] == ["hidden"]
    assert "memory_budget_bytes" not in ds.attrs  # run-time settings are not what the results depend on
    assert json.loads(ds.attrs["experiment_config"]) == result_config(experiment)
    assert "g = J^T J / n" in ds.attrs["metric_definition"] and "d = 2 inputs" in ds.attrs["metric_definition"]
    assert ds.attrs["device"] == "cpu" and ds.attrs["seeds"] == [0]
    for key in ("geomvol_version", "git_commit", "package_versions", "experiment_config", "Conventions", "history"):
        assert ds.attrs[key], key
    assert set(ds.attrs["package_versions"]) >= {"torch", "xarray", "zarr"}
    assert ds["data_class"].values.tolist() == torch.load(trained["data"], weights_only=True)["y"].tolist()
    assert ds["log10_volume"].encoding["chunks"] == (1, 1, 1, 9, 9)


def test_combine_refuses_data_that_does_not_match_its_manifest(trained, tmp_path):
    store = tmp_path / "probe.zarr"
    probe([trained["checkpoints"][0]], trained["data"], trained["manifest"], trained["experiment"]["probe"], store)
    other = tmp_path / "other.pt"
    prepare_dataset({**trained["experiment"]["dataset"], "seed": 5}, other, tmp_path / "other.json")
    with pytest.raises(IntegrityError, match=f"data set {other} does not match the sha256 its manifest "
                                             f"{trained['manifest']} recorded; moved aside to {other}.damaged-"):
        combine_probes([store], "tiny", result_config(trained["experiment"]), other, trained["manifest"], tmp_path / "volume.zarr")
    assert not (tmp_path / "volume.zarr").exists() and not other.exists()


def test_a_probe_is_taken_from_another_groups_store_only_for_the_same_code(trained, tmp_path, capsys, monkeypatch):
    """A seed's probe is reused from another group's store of the same epoch when the checkpoint, the probe
    settings and the code (geomvol's sha256 and the package versions) are the same; other code probes again."""
    import geomvol.stages
    from geomvol.provenance import record

    checkpoint, section = trained["checkpoints"][-1], trained["experiment"]["probe"]
    name = checkpoint.name.replace(".pt", ".zarr.zip")
    first = probe([checkpoint], trained["data"], trained["manifest"], section, tmp_path / "s0-s1" / "probes" / name)
    again = probe([checkpoint], trained["data"], trained["manifest"], section, tmp_path / "s0" / "probes" / name)
    assert f"is taken from {tmp_path / 's0-s1' / 'probes' / name}" in capsys.readouterr().err
    assert again["log10_volume"].equals(first["log10_volume"]) and again.attrs["code_sha256"] == record()["code_sha256"]

    other_code = {**record(), "code_sha256": "0" * 64}
    monkeypatch.setattr(geomvol.stages, "record", lambda: other_code)
    probe([checkpoint], trained["data"], trained["manifest"], section, tmp_path / "s0-s2" / "probes" / name)
    assert "is taken from" not in capsys.readouterr().err
