"""The real Snakemake workflow on tiny configs, in temporary directories."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest
import xarray as xr
import yaml
from PIL import Image

from geomvol.catalogue import expected_files
from geomvol.config import config_sha256, load_config, result_config
from geomvol.stages import prepare_dataset
from geomvol.provenance import sha256_file, sha256_tree

from helpers import ROOT, SMOKE_CONFIG, smoke_experiments, snakemake, train_with_metrics, training_run

pytestmark = [pytest.mark.slow, pytest.mark.workflow]


def sinusoid_only(tmp_path, **training):
    """The smoke config's sinusoid experiment alone (fast), its training section updated; returns the file."""
    config = yaml.safe_load(SMOKE_CONFIG.read_text())
    config["experiments"] = {"sinusoid-smoke": config["experiments"]["sinusoid-smoke"]}
    config["experiments"]["sinusoid-smoke"]["training"].update(training)
    path = tmp_path / "sinusoid.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_pipeline_produces_a_labelled_store_and_figures(smoke_run, smoke_config):
    results = smoke_run / "results" / "sinusoid-smoke"
    experiment = smoke_config["experiments"]["sinusoid-smoke"]
    ds = xr.open_zarr(results / "volume.zarr")
    assert dict(ds["log10_volume"].sizes) == {"seed": 1, "epoch": 3, "block": 1, "x2": 12, "x1": 12}
    assert ds["epoch"].values.tolist() == [0, 20, 40]
    assert ds.attrs["experiment"] == "sinusoid-smoke"
    assert ds.attrs["config_sha256"] == config_sha256(result_config(experiment))
    assert ds.attrs["dataset_sha256"] == sha256_file(results / "data" / "dataset.pt")
    checkpoints = [results / "s0" / "checkpoints" / f"epoch_{e}.pt" for e in (0, 20, 40)]
    assert ds["checkpoint_sha256"].values[0].tolist() == [sha256_file(p) for p in checkpoints]
    assert ds["log10_volume"].notnull().all()
    assert ds["curvature"].dims == ("seed", "epoch", "block", "x2", "x1") and ds["curvature"].notnull().all()
    assert "saddle" in ds["curvature"].attrs["sign_convention"]
    assert ds["log10_metric_eigenvalue"].dims == ("seed", "epoch", "block", "x2", "x1", "eigenvalue")
    assert (ds["log10_metric_eigenvalue"].sel(eigenvalue=1) >= ds["log10_metric_eigenvalue"].sel(eigenvalue=2)).all()
    assert ds["stretch_angle"].attrs["units"] == "radian" and ds["margin_gradient_angle"].notnull().all()
    for figure in ("volume", "curvature", "stretch"):
        with Image.open(results / "figures" / f"{figure}.png") as image:
            assert image.text["geomvol:store_sha256"] == sha256_tree(results / "volume.zarr")
    assert (results / "figures" / "volume.png").stat().st_size > 10_000
    assert (results / "figures" / "volume.pdf").read_bytes().startswith(b"%PDF")
    for log_file in (smoke_run / "results").glob("*/logs/*.log"):
        log = log_file.read_text()
        assert "Warning" not in log, f"{log_file}: {log}"  # logs carry what a user should read, not library noise
        assert "overlap" not in log, f"{log_file}: {log}"  # every figure's labels read (figures.common)
    for epoch in (0, 20, 40):  # every saved epoch stays in the run's checkpoint store, published as a copy
        (kept,) = (results / "s0" / "train-state").glob(f"*/epoch_{epoch}.pt")
        published = results / "s0" / "checkpoints" / f"epoch_{epoch}.pt"
        assert kept.read_bytes() == published.read_bytes() and not os.path.samefile(kept, published)


def test_image_experiments_produce_their_stores_and_figures(smoke_run, smoke_config):
    results = smoke_run / "results"
    cifar = xr.open_zarr(results / "cifar10-smoke" / "volume.zarr")
    assert dict(cifar["plane_log10_volume"].sizes) == {"seed": 1, "epoch": 2, "block": 4, "plane": 1, "v": 6, "u": 6}
    assert cifar["block"].values.tolist() == ["block1", "block2", "block3", "block4"]
    assert cifar["feature_width"].values.tolist() == [512] * 4  # the study's windows pool every block to 512
    assert json.loads(cifar.attrs["block_pooling"]) == {"block1": [16, 8], "block2": [8, 8], "block3": [8, 4],
                                                        "block4": [4, 4]}
    assert cifar["plane_log10_volume"].encoding["chunks"] == (1, 1, 1, 1, 6, 6)
    assert np.isfinite(cifar["plane_log10_volume"].values).all()
    assert dict(cifar["plane_curvature"].sizes) == {"seed": 1, "epoch": 2, "block": 4, "plane": 1, "v": 6, "u": 6}
    assert np.isfinite(cifar["plane_curvature"].values).all()
    assert dict(cifar["plane_log10_metric_eigenvalue"].sizes) == {"seed": 1, "epoch": 2, "block": 4, "plane": 1,
                                                                  "v": 6, "u": 6, "eigenvalue": 2}
    np.testing.assert_allclose(cifar["plane_log10_metric_eigenvalue"].sum("eigenvalue") / 2,  # the subspace metric's
                               cifar["plane_log10_volume"], rtol=1e-4, atol=1e-4)
    assert cifar["plane_axes_in_frame"].sizes == {"plane": 1, "frame_axis": 2, "plane_axis": 2}
    assert "plane_curvature" not in xr.open_zarr(results / "mnist-line-smoke" / "volume.zarr")  # no planes there
    assert cifar["plane_anchor_image"].dtype == np.uint8 and cifar["plane_anchor_image"].shape == (1, 3, 3, 32, 32)
    assert [cifar.attrs["classes"][c] for c in cifar["plane_anchor_class"].values[0]] == ["horse", "frog", "automobile"]
    probabilities = cifar["plane_anchor_probability"].sum("anchor")
    assert float(probabilities.max()) <= 1 + 1e-6
    mnist = xr.open_zarr(results / "mnist-plane-smoke" / "volume.zarr")
    assert dict(mnist["plane_anchor_singular_values"].sizes) == {"seed": 1, "epoch": 2, "block": 1, "plane": 1,
                                                                 "anchor": 3, "k": 32}
    line = xr.open_zarr(results / "mnist-line-smoke" / "volume.zarr")
    assert dict(line["line_log10_volume"].sizes) == {"seed": 1, "epoch": 2, "block": 1, "line": 1, "t": 10}
    assert line["line_anchor_class"].values.tolist() == [[7, 6]]
    manifest = json.loads((results / "mnist-line-smoke" / "data" / "manifest.json").read_text())
    raw = manifest["raw_files"]["sha256"]
    assert sorted(raw) == sorted(expected_files("MNIST"))
    assert raw["MNIST/raw/train-labels-idx1-ubyte"] == sha256_file(
        results / "mnist-line-smoke" / "data" / "synthetic" / "MNIST" / "raw" / "train-labels-idx1-ubyte")
    metrics = (results / "cifar10-smoke" / "s0" / "train_metrics.tsv").read_text().splitlines()
    assert metrics[0] == "epoch\tloss\taccuracy\ttest_loss\ttest_accuracy" and len(metrics) == 3
    for name, figures in {"cifar10-smoke": ["planes", "blocks", "curvature", "stretch"],
                          "mnist-plane-smoke": ["planes", "spectra", "curvature", "stretch"],
                          "mnist-line-smoke": ["lines", "spectra"],
                          "digits-plane-smoke": ["planes", "spectra", "curvature", "stretch"]}.items():
        for figure in figures:
            with Image.open(results / name / "figures" / f"{figure}.png") as image:
                assert image.text["geomvol:store_sha256"] == sha256_tree(results / name / "volume.zarr")
            assert (results / name / "figures" / f"{figure}.pdf").read_bytes().startswith(b"%PDF")
    # each figure says which definitions its numbers follow
    with Image.open(results / "cifar10-smoke" / "figures" / "blocks.png") as image:
        definitions = json.loads(image.text["geomvol:definitions"])
    assert json.loads(definitions["block_pooling"])["block1"] == [16, 8]
    assert definitions["channel_mean"] == pytest.approx([0.4914, 0.4822, 0.4465])
    assert definitions["plane_anchors"] == [{"classes": ["horse", "frog", "automobile"], "seed": 0, "split": "train",
                                             "sampler": "per_class_permutation"}]
    assert definitions["style"] == {"colour_scale": "per_panel", "entropy_units": "hartley", "entropy_scale": "log10",
                                   "plane_region": "square", "contour_levels": None, "spectra_epochs": None}
    assert definitions["epoch_convention"].startswith("epoch E is the network after E passes")
    with Image.open(results / "digits-plane-smoke" / "figures" / "planes.png") as image:
        definitions = json.loads(image.text["geomvol:definitions"])
    assert definitions["style"] == {"colour_scale": "shared_relative_to_median", "entropy_units": "nat",
                                   "entropy_scale": "log10", "plane_region": "square", "contour_levels": None,
                                   "spectra_epochs": [0, 3]}
    with Image.open(results / "mnist-plane-smoke" / "figures" / "planes.png") as image:  # the study's --ternary
        style = json.loads(image.text["geomvol:definitions"])["style"]
    assert (style["plane_region"], style["contour_levels"], style["entropy_scale"]) == ("triangle", 12, "linear")
    assert definitions["plane_anchors"][0]["sampler"] == "rejection"
    assert json.loads(definitions["input_normalisation"]) == {"mean": [0.0], "std": [0.0625]}


def test_torchvision_and_python_models_are_probed_on_one_plane(smoke_run):
    """resnet18-smoke (a torchvision builder) and vit-smoke (torchvision's VisionTransformer from a python
    factory) on a CIFAR-100 stand-in read by torchvision's CIFAR100 class: feature maps named by graph nodes, each
    pooled to its width, measured on the same plane through the same images, and drawn side by side."""
    results = smoke_run / "results"
    resnet = xr.open_zarr(results / "resnet18-smoke" / "volume.zarr")
    vit = xr.open_zarr(results / "vit-smoke" / "volume.zarr")
    assert len(resnet.attrs["classes"]) == 100 and resnet.attrs["classes"][7] == "class_07"  # from the meta file
    assert [resnet.attrs["classes"][c] for c in resnet["plane_anchor_class"].values[0]] == ["class_03", "class_07",
                                                                                            "class_11"]
    assert int(resnet["plane_predicted_class"].max()) < 100
    assert resnet["block"].values.tolist() == ["layer2", "layer4"]
    assert resnet["feature_width"].values.tolist() == [128, 512]  # the global means of 128 x 4 x 4 and 512 x 1 x 1
    assert vit["block"].values.tolist() == ["encoder.layers.encoder_layer_0", "encoder.ln"]
    assert vit["feature_width"].values.tolist() == [32, 17 * 32]  # the tokens' mean; 16 patches + class token
    for ds in (resnet, vit):
        assert dict(ds["plane_log10_volume"].sizes) == {"seed": 1, "epoch": 2, "block": 2, "plane": 1, "v": 5, "u": 5}
        assert np.isfinite(ds["plane_log10_volume"].values).all() and np.isfinite(ds["plane_curvature"].values).all()
        np.testing.assert_array_equal(ds["plane_anchor_source_index"].values, resnet["plane_anchor_source_index"].values)
    model = json.loads(vit.attrs["experiment_config"])["model"]
    assert model["factory"] == "torchvision.models.vision_transformer:VisionTransformer"
    import torchvision

    assert model["factory_sha256"] == sha256_file(Path(torchvision.__file__).parent / "models" / "vision_transformer.py")
    assert json.loads(resnet.attrs["experiment_config"])["model"] == {"name": "torchvision", "builder": "resnet18",
                                                                      "kwargs": {}, "leaf_modules": []}
    with Image.open(results / "vit-smoke" / "figures" / "compare.png") as image:
        assert image.text["geomvol:other_store"] == "results/resnet18-smoke/volume.zarr"


def test_zoo_config_dry_runs_three_architectures_and_a_module_of_ones_own(tmp_path):
    shutil.copytree(ROOT / "examples", tmp_path / "examples")  # its factories' paths are relative to the run
    result = snakemake(tmp_path, ROOT / "workflow" / "configs" / "zoo.yaml", "--dry-run")
    assert result.returncode == 0, result.stdout + result.stderr
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", result.stdout, flags=re.M))
    assert jobs["train"] == "4" and jobs["probe"] == str(4 * 4) and jobs["figure_compare"] == "3"


def test_barlow_twins_runs_beside_the_supervised_net(smoke_run):
    results = smoke_run / "results"
    metrics = (results / "barlow-twins-smoke" / "s0" / "train_metrics.tsv").read_text().splitlines()
    assert metrics[0] == "epoch\tloss" and len(metrics) == 3
    ds = xr.open_zarr(results / "barlow-twins-smoke" / "volume.zarr")
    supervised = xr.open_zarr(results / "cifar10-smoke" / "volume.zarr")
    assert ds["plane_anchor_index"].values.tolist() == supervised["plane_anchor_index"].values.tolist()
    np.testing.assert_array_equal(ds["plane_anchor_image"].values, supervised["plane_anchor_image"].values)
    assert dict(ds["line_log10_volume"].sizes) == {"seed": 1, "epoch": 2, "block": 1, "line": 2, "t": 8}
    assert ds["block"].values.tolist() == ["pooled"]
    for split in ("train", "test"):
        accuracy = ds[f"linear_probe_{split}_accuracy"]
        assert accuracy.dims == ("seed", "epoch") and ((accuracy >= 0) & (accuracy <= 1)).all()
    assert np.isfinite(ds["plane_log10_volume"].values).all()
    # each experiment reads the same images normalised its own way, and says which in its store
    assert supervised.attrs["channel_mean"] == pytest.approx([0.4914, 0.4822, 0.4465])
    assert supervised.attrs["channel_std"] == pytest.approx([0.2023, 0.1994, 0.2010])
    assert ds.attrs["channel_mean"] == pytest.approx([0.485, 0.456, 0.406])
    np.testing.assert_allclose(ds["channel_std"].values, [0.229, 0.224, 0.225])
    assert json.loads(ds.attrs["input_normalisation"]) == {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    assert "their 'epoch E' is epoch E + 1 here" in ds.attrs["epoch_convention"]
    assert ds["line_anchor_split"].values.tolist() == ["train", "train"]
    # its maps' agreement with the supervised net's on their plane (pooled is block4), in its measures
    agreement = xr.open_zarr(results / "barlow-twins-smoke" / "measures.zarr")["plane_compared_agreement_correlation"]
    assert agreement.dims == ("compared_seed_pair", "epoch", "block", "plane")
    assert agreement.attrs["compared_experiment"] == "cifar10-smoke"
    assert agreement["compared_seed_pair"].values.tolist() == ["0-0"]
    assert np.isfinite(agreement.values).all() and (np.abs(agreement.values) <= 1).all()
    for figure in ("planes", "lines", "compare"):
        with Image.open(results / "barlow-twins-smoke" / "figures" / f"{figure}.png") as image:
            assert image.text["geomvol:store_sha256"] == sha256_tree(results / "barlow-twins-smoke" / "volume.zarr")


def test_paper_config_dry_runs_the_whole_study(tmp_path):
    result = snakemake(tmp_path, ROOT / "workflow" / "configs" / "paper.yaml", "--dry-run")
    assert result.returncode == 0, result.stdout + result.stderr
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", result.stdout, flags=re.M))
    assert jobs["train"] == "6" and jobs["prepare_dataset"] == "6"
    # volume + curvature + stretch; lines + spectra; planes + spectra + curvature + stretch; planes + lines (Figure
    # 4's blocks on the horse-to-frog line) + blocks + spectra + curvature + stretch; planes + spectra + curvature +
    # stretch; lines + spectra. The Barlow Twins plane is its own command's (seed 401), not the supervised net's:
    # nothing to compare.
    assert jobs["figure"] == str(3 + 2 + 4 + 6 + 4 + 2) and "figure_compare" not in jobs
    # probed epochs: the untrained net and the study's checkpoints (its epoch E is E + 1 here) of the sinusoid,
    # MNIST line, digits plane (and its spectra's epoch 51), CIFAR-10, Barlow Twins planes and lines
    assert jobs["probe"] == str(4 + 8 + 13 + 5 + 6 + 6)
    # each command's own seed (commands/*.sh)
    for experiment, seed in (("sinusoid", 401), ("mnist-line", 5), ("digits-plane", 6), ("cifar10", 501),
                             ("barlow-twins", 401), ("barlow-twins-lines", 501)):
        assert f"results/{experiment}/s{seed}/checkpoints/epoch_1.pt" in result.stdout, experiment
    assert "results/cifar10/s501/checkpoints/epoch_501.pt" in result.stdout
    assert jobs["publish_checkpoint"] == jobs["probe"]  # each probed checkpoint, its own declared output
    assert jobs["measure"] == jobs["figure_measures"] == "6"


def test_a_configfile_is_the_whole_config(tmp_path):
    """--configfile replaces config.yaml: a run of two smoke experiments in a checkout that has config.yaml
    plans them and nothing of the default ones."""
    (tmp_path / "config.yaml").write_text((ROOT / "config.yaml").read_text())
    given = smoke_experiments(tmp_path / "two.yaml", "sinusoid-smoke", "mnist-line-smoke")
    result = snakemake(tmp_path, given, "--dry-run")
    assert result.returncode == 0, result.stdout + result.stderr
    planned = set(re.findall(r"results/([\w-]+)/", result.stdout)) - {"logs", "benchmarks"}  # the summary's
    assert planned == {"sinusoid-smoke", "mnist-line-smoke"}, planned
    default = snakemake(tmp_path, None, "--dry-run")  # no --configfile: config.yaml
    assert set(re.findall(r"results/([\w-]+)/", default.stdout)) - {"logs", "benchmarks"} == {"sinusoid", "digits-plane"}, \
        default.stderr


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
    """A published checkpoint damaged in place (same size: only its sha256 tells) fails its probe, naming it and
    moving it aside; the other probes run; the next run publishes it again (tests/test_faults.py)."""
    configfile = sinusoid_only(tmp_path)
    trained = snakemake(tmp_path, configfile, *(f"results/sinusoid-smoke/s0/checkpoints/epoch_{e}.pt" for e in (0, 20, 40)))
    assert trained.returncode == 0, trained.stderr
    results = tmp_path / "results" / "sinusoid-smoke"
    checkpoint = results / "s0" / "checkpoints" / "epoch_20.pt"
    data = bytearray(checkpoint.read_bytes())
    data[300] ^= 0xFF
    checkpoint.write_bytes(bytes(data))
    result = snakemake(tmp_path, configfile, "--keep-going")
    assert result.returncode != 0
    log = (results / "logs" / "probe_s0_epoch_20.log").read_text()
    assert f"checkpoint {checkpoint.relative_to(tmp_path)} is damaged" in log and "moved aside to" in log
    assert "Traceback" not in log
    assert (results / "s0" / "probes" / "epoch_40.zarr.zip").exists()
    assert not (results / "s0" / "probes" / "epoch_20.zarr.zip").exists()
    assert not (results / "volume.zarr").exists()
    assert not (results / "figures").exists()
    assert not list((results / "s0" / "probes").glob(".*tmp*")), "no temporary store left behind"


def test_killed_training_job_resumes_in_the_pipeline(tmp_path):
    configfile = sinusoid_only(tmp_path, epochs=1500, batch_size=10, save_epochs={"every": 250})
    config = yaml.safe_load(configfile.read_text())
    config["experiments"]["sinusoid-smoke"]["probe"]["epochs"] = [1500]
    configfile.write_text(yaml.safe_dump(config))
    state = tmp_path / "results" / "sinusoid-smoke" / "s0" / "train-state"

    run = snakemake(tmp_path, configfile, wait=False)
    deadline = time.monotonic() + 120
    while not list(state.glob("*/epoch_250.pt")):
        assert run.poll() is None and time.monotonic() < deadline, run.communicate()[0]
        time.sleep(0.01)
    train_jobs = [
        p for p in psutil.Process(run.pid).children(recursive=True)
        if "train" in p.cmdline() and "geomvol.cli" in p.cmdline()
    ]
    assert len(train_jobs) == 1
    train_jobs[0].send_signal(signal.SIGKILL)
    assert run.wait(timeout=60) != 0
    assert not (tmp_path / "results" / "sinusoid-smoke" / "s0" / "training").exists()
    assert list(state.glob("*/epoch_250.pt")), "the resume state survives the failed job"

    rerun = snakemake(tmp_path, configfile)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    log = (tmp_path / "results" / "sinusoid-smoke" / "logs" / "train_s0.log").read_text()
    assert "resuming from epoch" in log and "resuming from epoch 0 " not in log

    resolved = load_config(configfile)["experiments"]["sinusoid-smoke"]
    reference = tmp_path / "reference"
    prepare_dataset(resolved["dataset"], reference / "data.pt", reference / "manifest.json")
    expected = train_with_metrics(training_run(resolved), reference / "data.pt", reference / "ck", reference / "state", reference / "m.tsv")
    got = tmp_path / "results" / "sinusoid-smoke" / "s0" / "training" / "s0"
    assert [sha256_file(got / p.name) for p in expected] == [sha256_file(p) for p in expected]


def test_every_experiment_gets_its_magnification_measures(smoke_run, smoke_config):
    results = smoke_run / "results"
    fields = {"sinusoid-smoke": [""], "mnist-line-smoke": ["line_"], "mnist-plane-smoke": ["plane_"],
              "digits-plane-smoke": ["plane_"], "cifar10-smoke": ["plane_"], "barlow-twins-smoke": ["plane_", "line_"],
              "resnet18-smoke": ["plane_"], "vit-smoke": ["plane_"], "own-images-smoke": ["plane_"],
              "elsewhere-smoke": ["plane_"]}
    assert set(fields) == set(smoke_config["experiments"])
    for name, prefixes in fields.items():
        measures = xr.open_zarr(results / name / "measures.zarr")
        volume = xr.open_zarr(results / name / "volume.zarr")
        assert measures.attrs["source_store_sha256"] == sha256_tree(results / name / "volume.zarr")
        assert measures.attrs["config_sha256"] == volume.attrs["config_sha256"]
        for prefix in prefixes:
            span = prefix.rstrip("_")
            for measure in ("entropy_correlation", "boundary_ratio", "learned_boundary_correlation", "distance_ratio"):
                per_seed = measures[prefix + measure]
                assert per_seed.dims == ("seed", "epoch", "block", *([span] if span else []))
                assert per_seed.sizes["block"] == volume.sizes["block"]
                assert measures[f"{prefix}{measure}_interval"].dims == ("bound", *per_seed.dims[1:])
                assert per_seed.attrs["definition"] and per_seed.attrs["units"] == "1"
                # every NaN is explained
                assert int(per_seed.isnull().sum()) == len(per_seed.attrs["undefined"]), per_seed.attrs["undefined"]
        with Image.open(results / name / "figures" / "measures.png") as image:
            assert image.width > 500
    sinusoid = xr.open_zarr(results / "sinusoid-smoke" / "measures.zarr")
    assert "boundary_distance_correlation" in sinusoid
    assert sinusoid["boundary_location_error"].dims == ("seed", "epoch")
    error = sinusoid["boundary_location_error"]  # NaN where no crossing is inside the training square, said why
    assert bool((error.isel(epoch=-1) > 0).all()) and int(error.isnull().sum()) == len(error.attrs["undefined"])
    # the profiles of every field kind where the network's boundary was located (own-images-smoke's two-epoch CNN
    # leads with one class all over its plane: no boundary, no profile), and one summary table of all: a row per
    # experiment, field, block and epoch
    for name, prefixes in fields.items():
        measures = xr.open_zarr(results / name / "measures.zarr")
        volume = xr.open_zarr(results / name / "volume.zarr")
        for prefix in prefixes:
            located = bool(np.isfinite(volume[f"{prefix}boundary_distance"].values).any())
            assert (f"{prefix}log10_volume_profile" in measures) == located, name
            if located:
                assert measures[f"{prefix}log10_volume_profile"].dims[-1] == f"{prefix}distance_bin", name
    summary = pd.read_csv(results / "summary.tsv", sep="\t", comment="#")
    assert set(summary["experiment"]) == set(fields)
    # measures.boundary_delta (sinusoid-smoke's 0.3) from the config to the measures and the table
    delta = xr.open_zarr(results / "sinusoid-smoke" / "measures.zarr")["delta_ratio"]
    assert delta.attrs["boundary_delta"] == 0.3 and delta.dims == ("seed", "epoch", "block")
    sinusoid = summary[summary["experiment"] == "sinusoid-smoke"]
    np.testing.assert_allclose(sinusoid["delta_ratio"], delta.sel(seed=0, block="hidden").values, rtol=1e-5)
    assert summary.loc[summary["experiment"] != "sinusoid-smoke", "delta_ratio"].isna().all()
    cifar = xr.open_zarr(results / "cifar10-smoke" / "measures.zarr")
    assert len(summary[summary["experiment"] == "cifar10-smoke"]) == 2 * 4  # epochs 0, 2; four blocks; one plane
    row = summary[(summary["experiment"] == "cifar10-smoke") & (summary["block"] == "block2") & (summary["epoch"] == 2)]
    assert row["field"].tolist() == ["plane 0"] and row["n_seeds"].tolist() == [1]
    expected = float(cifar["plane_distance_ratio_mean"].sel(block="block2", epoch=2, plane=0))
    assert row["distance_ratio"].iloc[0] == pytest.approx(expected, rel=1e-5, nan_ok=True)


def test_report_holds_every_figure_with_its_caption(smoke_run):
    report = smoke_run / "report.html"
    result = snakemake(smoke_run, SMOKE_CONFIG, "--report", str(report))
    assert result.returncode == 0, result.stdout + result.stderr
    html = report.read_text()
    figures = sorted((smoke_run / "results").glob("*/figures/*.png"))
    # 1 sinusoid, 2 + 2 MNIST, 2 digits, 2 CIFAR-10, 3 Barlow Twins, 2 ResNet18 (planes, blocks), 3 ViT (and its
    # comparison), 2 own images, 3 checkpoints trained elsewhere (and their comparison); curvature of the grid and
    # of the six experiments with planes that measure it; the stretch on the grid and on the planes of the nine
    # experiments that have them; measures and profiles of each
    assert len(figures) == 12 + 5 + 5 + 7 + 10 + 10 + 9
    for figure in figures:
        assert figure.name in html and figure.parent.parent.name in html, figure
    for words in ("ternary plot", "images along the line", "one row per feature map", "at the epochs both probed",
                  "percentile bootstrap interval", "square roots of the eigenvalues of g", "the study's epoch E is E + 1",
                  "curved like a sphere", "a peak at 0 that grows with training", "One table across the experiments",
                  "the metric's unit circle (its indicatrix)"):
        assert words in html, words
    assert "summary.tsv" in html


def test_workflow_is_snakefmt_clean():
    result = subprocess.run([sys.executable, "-m", "snakefmt", "--check", "Snakefile", "workflow"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_workflow_is_lint_clean(tmp_path):
    result = snakemake(tmp_path, smoke_experiments(tmp_path / "lint.yaml", "sinusoid-smoke"), "--lint")
    assert "Congratulations, your workflow is in a good condition!" in result.stdout + result.stderr, result.stdout
