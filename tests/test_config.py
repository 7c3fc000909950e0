import copy
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml

import torch

from geomvol.catalogue import (
    CLASSES, FEATURE_MAPS, IMAGE_DATASETS, INPUT_SHAPES, PIXEL_MAX, STUDY_BLOCK_WINDOWS, block_windows, feature_width,
)
from geomvol.config import config_sha256, load_config, resolve_config, saved_epochs
from geomvol.data.check import check_config_data
from geomvol.data.images import write_synthetic
from geomvol.errors import ConfigError
from geomvol.models import build_model
from geomvol.models.registry import model_spec

from helpers import ROOT


def checked(config: dict) -> dict:
    """A config resolved and its data checked, as the Snakefile and check-config do."""
    return check_config_data(resolve_config(config))


def test_default_config_is_the_study_setting():
    experiment = load_config(ROOT / "config.yaml")["experiments"]["sinusoid"]
    assert experiment["dataset"]["n_points"] == 400
    assert experiment["model"] == {"name": "shallow", "width": 250, "activation": "sigmoid", "weight_std": 1.0,
                                   "scale_readout_bias": True}
    assert experiment["training"]["optimizer"] == {"name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 0.0}
    assert experiment["training"]["epochs"] == 10000
    assert experiment["probe"]["epochs"] == [0, 200, 5000, 10000]
    assert experiment["probe"]["grid"] == {"low": -1.5, "high": 1.5, "resolution": 80}


def test_defaults_fill_a_minimal_experiment():
    experiment = resolve_config({"experiments": {"bare": {}}})["experiments"]["bare"]
    assert experiment["seeds"] == [0]
    assert experiment["dataset"]["amplitude"] == 0.6
    assert experiment["training"]["optimizer"]["name"] == "sgd"
    assert experiment["probe"]["metric"] == "full"
    assert experiment["probe"]["epochs"] == list(range(0, 10001, 1000))


def test_resolve_does_not_mutate_its_input():
    config = {"experiments": {"bare": {}}}
    resolve_config(config)
    assert config == {"experiments": {"bare": {}}}


@pytest.mark.parametrize(
    ("training", "expected"),
    [
        ({"epochs": 45, "save_epochs": {"every": 20}}, [0, 20, 40, 45]),
        ({"epochs": 40, "save_epochs": {"every": 20}}, [0, 20, 40]),
        ({"epochs": 100, "save_epochs": [5, 50]}, [0, 5, 50, 100]),
        ({"epochs": 0, "save_epochs": [0]}, [0]),
    ],
)
def test_saved_epochs_always_include_first_and_last(training, expected):
    assert saved_epochs(training) == expected


def _config_with(path, value):
    """The tiny config with ``value`` set at the dotted ``path`` inside the experiment."""
    experiment = {"training": {"epochs": 100, "save_epochs": [50, 100]}, "probe": {"epochs": [0, 50]}}
    node = experiment
    *parents, leaf = path.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value
    return {"experiments": {"exp": experiment}}


@pytest.mark.parametrize(
    ("path", "value", "key", "reason"),
    [
        ("dataset.name", "imagenet", "experiments.exp.dataset.name", "is not one of"),
        ("training.save_epochs", [50, -1], "experiments.exp.training.save_epochs.1", "-1 is less than the minimum of 0"),
        ("training.save_epochs", [100, 50], "experiments.exp.training.save_epochs", "strictly increasing"),
        ("training.save_epochs", [50, 200], "experiments.exp.training.save_epochs", "after the last training epoch"),
        ("probe.epochs", [0, 70], "experiments.exp.probe.epochs", "never saved"),
        ("probe.epochs", [50, 0], "experiments.exp.probe.epochs", "strictly increasing"),
        ("probe.grid", {"resolution": 0}, "experiments.exp.probe.grid.resolution", "less than the minimum"),
        ("model.width", "wide", "experiments.exp.model.width", "is not of type 'integer'"),
        ("training.batch_sise", 10, "experiments.exp.training", "batch_sise"),
        ("probe.feature_maps", ["block4"], "experiments.exp.probe.feature_maps.0", "has no feature map 'block4'"),
        ("probe.grid", {"low": 1.0, "high": -1.0}, "experiments.exp.probe.grid", "must exceed"),
        ("probe.top_k", 3, "experiments.exp.probe.top_k", "exceeds min(n, d) = 2"),
    ],
)
def test_bad_config_names_the_key(path, value, key, reason):
    with pytest.raises(ConfigError) as info:
        resolve_config(_config_with(path, value))
    message = str(info.value)
    assert message.startswith(f"config key {key}:"), message
    assert reason in message


def test_experiment_names_are_safe_path_components():
    with pytest.raises(ConfigError, match="experiments"):
        resolve_config({"experiments": {"../escape": {}}})


@pytest.mark.parametrize("block_pooling", ["global_mean", STUDY_BLOCK_WINDOWS])
def test_feature_map_table_matches_the_models(block_pooling):
    x = torch.rand(2, 3, 32, 32)
    for name, maps in FEATURE_MAPS.items():
        section = {"name": name, "width": 3, "activation": "tanh" if name == "shallow" else "gelu",
                   "weight_std": 1.0, "scale_readout_bias": True}
        model = build_model(model_spec(section, [3, 32, 32], 10)).eval()
        windows = block_windows(block_pooling) if name == "resnet34" else None
        assert tuple(model.feature_maps(windows)) == maps
        for feature_map, function in model.feature_maps(windows).items():
            assert function(x).shape == (2, feature_width(section, feature_map, (3, 32, 32), block_pooling))


def test_the_catalogue_matches_what_the_loaders_make(mnist_root, tmp_path):
    """Input shapes, classes and pixel ranges in the catalogue are those of the prepared data sets."""
    from geomvol.data.prepare import make_dataset

    write_synthetic("CIFAR10", tmp_path, 20, 10, seed=0)
    sections = {"sinusoid": {}, "digits": {"n_train": 20, "n_test": 10},
                "mnist": {"root": str(mnist_root), "n_train": 20, "n_test": 10},
                "cifar10": {"root": str(tmp_path), "n_train": 20, "n_test": 10}}
    config = {"experiments": {name: {"dataset": {"name": name, **section},
                                     **({} if name == "sinusoid" else {"probe": {"lines": [{"indices": [0, 1]}]}})}
                              for name, section in sections.items()}}
    for name, experiment in resolve_config(config)["experiments"].items():
        data = make_dataset(experiment["dataset"])
        assert tuple(data["x"].shape[1:]) == INPUT_SHAPES[name]
        if name in IMAGE_DATASETS:
            assert data["classes"] == CLASSES[name] and data["pixel_max"] == PIXEL_MAX[name]
            assert int(data["x"].max()) <= PIXEL_MAX[name]


# Made unimportable in a subprocess: what must run without torch fails loudly if it imports it.
WITHOUT_TORCH = "import sys; sys.modules['torch'] = None; "


def test_config_catalogue_stages_and_the_command_import_no_torch():
    modules = ["geomvol.config", "geomvol.catalogue", "geomvol.cli", "geomvol.lineage", "geomvol.stages",
               "geomvol.store", "geomvol.data", "geomvol.data.check", "geomvol.train", "geomvol.train.checkpoint",
               "geomvol.device", "geomvol.measures"]
    code = f"import sys; {'; '.join(f'import {m}' for m in modules)}; print(sorted(m for m in sys.modules if 'torch' in m))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_check_config_without_the_data_runs_without_torch():
    code = WITHOUT_TORCH + "from geomvol.cli import main; sys.exit(main(sys.argv[1:]))"
    result = subprocess.run([sys.executable, "-c", code, "check-config", str(ROOT / "config.yaml"), "--skip-data"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].startswith("sinusoid: dataset sinusoid, model shallow, seeds [0, 1, 2, 3, 4, 5, 6, 7]")
    with_data = subprocess.run([sys.executable, "-m", "geomvol.cli", "check-config", str(ROOT / "config.yaml")],
                               capture_output=True, text=True)
    assert with_data.returncode == 0 and with_data.stdout == result.stdout, with_data.stderr


def test_config_hash_ignores_key_order():
    a = {"b": 1, "a": {"y": [1, 2], "x": 0.5}}
    b = yaml.safe_load("a: {x: 0.5, y: [1, 2]}\nb: 1")
    assert config_sha256(a) == config_sha256(b)
    c = copy.deepcopy(a)
    c["a"]["x"] = 0.25
    assert config_sha256(a) != config_sha256(c)


def test_non_finite_numbers_are_refused_anywhere():
    config = _config_with("training.optimizer", {"lr": float("nan")})
    with pytest.raises(ConfigError, match=r"^config key experiments\.exp\.training\.optimizer\.lr: nan is not a finite number"):
        resolve_config(config)
    config = yaml.safe_load("experiments: {exp: {dataset: {amplitude: .inf}}}")
    with pytest.raises(ConfigError, match=r"experiments\.exp\.dataset\.amplitude: inf is not a finite number"):
        resolve_config(config)


def _image_config(root, **probe):
    probe = {"lines": [{"classes": [7, 6]}], **probe}
    return {"experiments": {"img": {"dataset": {"name": "mnist", "root": str(root), "n_train": 40}, "probe": probe}}}


@pytest.mark.parametrize(
    ("probe", "key", "reason"),
    [
        ({"lines": [{"indices": [3, 40]}]}, "probe.lines.0.indices", "index 40 is beyond the prepared training set (40 images"),
        ({"lines": [{"indices": [3, 3]}]}, "probe.lines.0.indices", "repeat an image"),
        ({"lines": [{"classes": ["7 - seven", "cat"]}]}, "probe.lines.0.classes", "unknown class 'cat'"),
        ({"planes": [{"indices": [0, 1, 2]}], "feature_maps": ["pooled"]}, "probe.feature_maps.0", "has no feature map 'pooled'"),
        ({"lines": []}, "probe", "needs probe.planes or probe.lines"),
        ({"curvature": True}, "probe.curvature", "curvature is measured on planes"),
        ({"lines": [{"indices": [0, 1, 2]}]}, "probe.lines.0.indices", "a line goes through 2 images, not 3"),
        ({"planes": [{"classes": [1, 2]}], "lines": []}, "probe.planes.0.classes", "a plane goes through 3 images, not 2"),
        ({"lines": [{"indices": [0, 1], "seed": 3}]}, "probe.lines.0", None),
    ],
)
def test_bad_anchors_name_the_key(mnist_root, probe, key, reason):
    with pytest.raises(ConfigError) as info:
        checked(_image_config(mnist_root, **probe))
    message = str(info.value)
    assert message.startswith(f"config key experiments.img.{key}"), message
    if reason:
        assert reason in message, message


def test_a_class_with_too_few_images_for_the_anchors(mnist_root):
    config = _image_config(mnist_root, planes=[{"classes": [7, 7, 7], "seed": 0}], lines=[])
    config["experiments"]["img"]["dataset"]["n_train"] = 20  # two images per class
    with pytest.raises(ConfigError, match=r"experiments\.img\.probe\.planes\.0\.classes: class '7 - seven' has 2 images "
                                          r"in the prepared training set, fewer than the 3 asked"):
        checked(config)


def test_equal_or_collinear_anchor_images_are_refused(tmp_path):
    from geomvol.data.images import _write_idx

    write_synthetic("MNIST", tmp_path, 20, 10, seed=0)
    raw = tmp_path / "MNIST" / "raw"
    images = np.zeros((20, 28, 28), dtype=np.uint8)
    images[0, 0, 0], images[1, 0, 0], images[2, 0, 0] = 10, 20, 30  # 0, 1, 2 on one line
    images[3, 5, 5], images[4, 6, 6] = 50, 50
    images[5] = images[3]  # equal to 3
    _write_idx(raw / "train-images-idx3-ubyte", images)
    _write_idx(raw / "train-labels-idx1-ubyte", np.arange(20) % 10)
    base = {"name": "mnist", "root": str(tmp_path)}
    for anchors, reason in (([0, 1, 2], "are collinear"), ([3, 4, 5], "include equal images"), ([3, 5], "equal images")):
        kind = "planes" if len(anchors) == 3 else "lines"
        config = {"experiments": {"img": {"dataset": base, "probe": {kind: [{"indices": anchors}]}}}}
        with pytest.raises(ConfigError) as info:
            checked(config)
        assert str(info.value).startswith(f"config key experiments.img.probe.{kind}.0: the anchor images {anchors}")
        assert reason in str(info.value)
    checked({"experiments": {"img": {"dataset": base, "probe": {"planes": [{"indices": [0, 3, 4]}]}}}})


def test_missing_root_is_refused_naming_directory_and_files(tmp_path):
    config = _image_config(tmp_path / "absent")
    with pytest.raises(ConfigError) as info:
        checked(config)
    message = str(info.value)
    assert message.startswith("config key experiments.img.dataset.root:")
    assert str(tmp_path / "absent") in message and "MNIST/raw/t10k-labels-idx1-ubyte" in message
    config["experiments"]["img"]["dataset"]["download"] = True  # torchvision fetches it in the prepare job
    assert checked(config)["experiments"]["img"]["dataset"]["download"] is True


@pytest.mark.parametrize(
    ("dataset", "model", "key", "reason"),
    [
        ({"name": "mnist", "n_points": 5}, {}, "dataset.n_points", "does not apply to dataset 'mnist'"),
        ({"name": "sinusoid", "root": "x"}, {}, "dataset.root", "does not apply to dataset 'sinusoid'"),
        ({"name": "cifar10", "root": "x", "synthetic": {"n_train": 10, "n_test": 10}}, {"name": "resnet34"},
         "dataset.root", "give either root or synthetic"),
        ({"name": "mnist"}, {}, "dataset.root", "needs a data root"),
        ({"name": "sinusoid"}, {"name": "resnet34"}, "model.name", "resnet34 needs image inputs"),
        ({"name": "cifar10", "synthetic": {"n_train": 10, "n_test": 10}}, {"name": "resnet34", "width": 5},
         "model.width", "does not apply to model 'resnet34'"),
        ({"name": "cifar10", "synthetic": {"n_train": 10, "n_test": 10}}, {"name": "resnet34", "activation": "tanh"},
         "model.activation", "is not one of ['gelu', 'relu']"),
    ],
)
def test_keys_that_do_not_fit_the_data_set_or_model(dataset, model, key, reason):
    probe = {"lines": [{"indices": [0, 1]}]} if dataset["name"] != "sinusoid" else {}
    with pytest.raises(ConfigError) as info:
        resolve_config({"experiments": {"exp": {"dataset": dataset, "model": model, "probe": probe}}})
    assert str(info.value).startswith(f"config key experiments.exp.{key}:"), str(info.value)
    assert reason in str(info.value)


def test_image_defaults_and_synthetic_root():
    config = {"experiments": {"c": {"dataset": {"name": "cifar10", "synthetic": {"n_train": 20, "n_test": 10}},
                                    "model": {"name": "resnet34"},
                                    "probe": {"planes": [{"classes": ["horse", "frog", "automobile"]}]}}}}
    experiment = resolve_config(config)["experiments"]["c"]
    assert experiment["dataset"] == {"name": "cifar10", "seed": 0, "synthetic": {"n_train": 20, "n_test": 10},
                                     "download": False, "split_rule": "torchvision", "n_train": None, "n_test": None,
                                     "normalize": {"mean": [0.4914, 0.4822, 0.4465], "std": [0.2023, 0.1994, 0.2010]},
                                     "root": "results/c/data/synthetic"}
    assert experiment["model"] == {"name": "resnet34", "activation": "gelu", "init": "torchvision"}
    assert experiment["probe"]["feature_maps"] == ["pooled"]
    assert experiment["probe"]["block_pooling"] == {"block1": [16, 8], "block2": [8, 8], "block3": [8, 4],
                                                    "block4": [4, 4]}
    assert experiment["probe"]["planes"] == [{"classes": ["horse", "frog", "automobile"], "split": "train", "seed": 0,
                                              "sampler": "per_class_permutation"}]


def _two_cifar(**bt_probe):
    dataset = {"name": "cifar10", "synthetic": {"n_train": 20, "n_test": 10}}
    plane = [{"classes": ["horse", "frog", "automobile"]}]
    return {"experiments": {
        "sup": {"dataset": dict(dataset), "model": {"name": "resnet34"}, "probe": {"planes": plane, "epochs": [0]},
                "training": {"epochs": 2, "save_epochs": [1]}},
        "bt": {"dataset": dict(dataset), "model": {"name": "resnet34"},
               "training": {"epochs": 2, "save_epochs": [1], "objective": {"name": "barlow_twins"}},
               "probe": {"planes": plane, "compare_with": "sup", **bt_probe}},
    }}


def test_barlow_twins_defaults_and_comparison():
    experiment = resolve_config(_two_cifar())["experiments"]["bt"]
    assert experiment["training"]["objective"] == {"name": "barlow_twins", "lambda": 0.005, "projector": [256],
                                                   "features": "pooled", "blur_kernel_size": None}
    assert resolve_config(_two_cifar())["experiments"]["sup"]["training"]["objective"] == {"name": "cross_entropy"}


@pytest.mark.parametrize(
    ("change", "key", "reason"),
    [
        ({"compare_with": "nobody"}, "probe.compare_with", "'nobody' is not another experiment"),
        ({"compare_with": "bt"}, "probe.compare_with", "'bt' is not another experiment"),
        ({"planes": [{"classes": ["horse", "frog", "cat"]}]}, "probe.compare_with", "must probe the same planes"),
        ({"epochs": [1, 2]}, "probe.compare_with", "no common epoch"),
    ],
)
def test_bad_comparisons_name_the_key(change, key, reason):
    with pytest.raises(ConfigError) as info:
        resolve_config(_two_cifar(**change))
    assert str(info.value).startswith(f"config key experiments.bt.{key}:") and reason in str(info.value), str(info.value)


def test_objective_keys_must_fit():
    config = _two_cifar()
    config["experiments"]["sup"]["training"]["objective"] = {"name": "cross_entropy", "lambda": 0.1}
    with pytest.raises(ConfigError, match=r"experiments\.sup\.training\.objective\.lambda: applies to barlow_twins only"):
        resolve_config(config)
    config = _two_cifar()
    config["experiments"]["bt"]["training"]["objective"]["features"] = "hidden"
    with pytest.raises(ConfigError, match=r"experiments\.bt\.training\.objective\.features: model 'resnet34' has no"):
        resolve_config(config)
    config = _two_cifar()
    config["experiments"]["bt"]["training"]["augmentation"] = {"crop_padding": 4}
    with pytest.raises(ConfigError, match=r"experiments\.bt\.training\.augmentation: barlow_twins draws its own"):
        resolve_config(config)
    with pytest.raises(ConfigError, match=r"experiments\.s\.training\.objective\.name: barlow_twins needs images"):
        resolve_config({"experiments": {"s": {"training": {"objective": {"name": "barlow_twins"}}}}})


@pytest.mark.parametrize(
    ("dataset", "model", "probe", "key", "reason"),
    [
        ({"name": "cifar10", "synthetic": {"n_train": 20, "n_test": 10}}, {"name": "resnet34"},
         {"block_pooling": {"block1": [16, 8], "block2": [8, 8], "block3": [3, 4], "block4": [4, 4]}},
         "probe.block_pooling.block3", "the window [3, 4] does not divide block3's 8 x 8 map"),
        ({"name": "cifar10", "synthetic": {"n_train": 20, "n_test": 10}}, {"name": "resnet34"},
         {"block_pooling": {"block1": [16, 8]}}, "probe.block_pooling", None),
        ({"name": "digits"}, {}, {"block_pooling": "global_mean"}, "probe.block_pooling", "applies to resnet34 only"),
        ({"name": "cifar10", "synthetic": {"n_train": 20, "n_test": 10}, "normalize": {"mean": [0.5], "std": [0.2]}},
         {"name": "resnet34"}, {}, "dataset.normalize.mean", "1 values for the 3 channel(s) of cifar10"),
        ({"name": "digits", "normalize": {"mean": [0.0], "std": [0.0]}}, {}, {}, "dataset.normalize", None),
        ({"name": "digits", "normalize": {"mean": [0.0], "std": [-1.0]}}, {}, {}, "dataset.normalize", None),
        ({"name": "digits", "root": "data"}, {}, {}, "dataset.root", "does not apply to dataset 'digits'"),
        ({"name": "digits", "test_fraction": 1.0}, {}, {}, "dataset.test_fraction", None),
        ({"name": "digits"}, {}, {"planes": [{"classes": [7, 6, 1], "split": "validation"}]}, "probe.planes.0.split",
         "is not one of ['train', 'test', 'all']"),
        ({"name": "cifar10", "synthetic": {"n_train": 20, "n_test": 10}}, {"name": "resnet34"},
         {"planes": [{"classes": [7, 6, 1], "split": "all"}]}, "probe.planes.0.split", "cifar10's torchvision splits are separate files"),
        ({"name": "digits", "split_rule": "kfold"}, {}, {}, "dataset.split_rule", "is not one of"),
        ({"name": "digits", "split_rule": "torchvision"}, {}, {}, "dataset.split_rule", "digits has no torchvision files"),
        ({"name": "mnist", "synthetic": {"n_train": 20, "n_test": 10}, "test_fraction": 0.2}, {}, {},
         "dataset.test_fraction", "applies to split_rule randperm_last or shuffle_split"),
        ({"name": "digits"}, {"init": "pytorch_default"}, {}, "model.init", "does not apply to model 'shallow'"),
        ({"name": "cifar10", "synthetic": {"n_train": 20, "n_test": 10}}, {"name": "resnet34", "init": "kaiming"}, {},
         "model.init", "is not one of"),
        ({"name": "digits"}, {}, {"planes": [{"classes": [7, 6, 1], "sampler": "randperm"}]}, "probe.planes.0.sampler",
         "is not one of"),
        ({"name": "sinusoid", "split_rule": "shuffle_split"}, {}, {"planes": []}, "dataset.split_rule",
         "does not apply to dataset 'sinusoid'"),
        ({"name": "digits"}, {}, {"planes": [{"indices": [1, 2, 3], "sampler": "rejection"}]}, "probe.planes.0", None),
    ],
)
def test_bad_fidelity_settings_name_the_key(dataset, model, probe, key, reason):
    probe = {"planes": [{"indices": [0, 1, 2]}], **probe}
    with pytest.raises(ConfigError) as info:
        resolve_config({"experiments": {"exp": {"dataset": dataset, "model": model, "probe": probe}}})
    message = str(info.value)
    assert message.startswith(f"config key experiments.exp.{key}"), message
    if reason:
        assert reason in message, message


def test_a_test_split_anchor_beyond_the_prepared_test_set_is_refused():
    config = {"experiments": {"d": {"dataset": {"name": "digits", "n_test": 20},
                                    "probe": {"planes": [{"indices": [0, 1, 20], "split": "test"}]}}}}
    with pytest.raises(ConfigError, match=r"experiments\.d\.probe\.planes\.0\.indices: index 20 is beyond the prepared "
                                          r"test set \(20 images"):
        checked(config)


@pytest.mark.slow
def test_a_built_wheel_carries_the_schema_and_the_digits_and_checks_the_default_config(tmp_path):
    """A non-editable install has no workflow/ beside the package: the schema and the digits file ship
    inside it (workflow/schemas/config.schema.yaml links to the package's)."""
    import subprocess
    import sys
    import sysconfig
    import zipfile

    from geomvol.config import DEFAULT_SCHEMA

    assert DEFAULT_SCHEMA.parent == ROOT / "geomvol"
    assert (ROOT / "workflow" / "schemas" / "config.schema.yaml").resolve() == DEFAULT_SCHEMA
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
                           capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("geomvol-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "geomvol/config.schema.yaml" in names and "geomvol/data/digits.csv.gz" in names
    # installed (non-editable) into a new venv whose path file adds the site-packages of the environment these
    # tests run in (a venv, or the machine's own Python), for the dependencies (torch among them: the data checks
    # draw the anchors with torch's generator), it checks the default config, data included, from another
    # directory. Path files in a directory added this way are not read, so the checkout's editable geomvol is not
    # seen: the wheel's is.
    venv = tmp_path / "venv"
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}  # only the venv's geomvol
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    (venv_site,) = venv.glob("lib/python*/site-packages")
    ours = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (venv_site / "dependencies.pth").write_text("".join(f"{path}\n" for path in ours))
    subprocess.run([venv / "bin" / "python", "-m", "pip", "install", "-q", "--no-deps", "--ignore-installed", str(wheel)],
                   check=True, env=env)
    version = subprocess.run([venv / "bin" / "geomvol", "--version"], capture_output=True, text=True, cwd=tmp_path,
                             env=env)
    assert str(venv / "lib") in version.stdout, version.stdout
    checked = subprocess.run([venv / "bin" / "geomvol", "check-config", ROOT / "config.yaml"], capture_output=True,
                             text=True, cwd=tmp_path, env=env)
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.splitlines()[1].startswith("digits-plane: dataset digits, model shallow")


# --- the config as written: integers, 64 bits, duplicate keys, YAML errors, names ------------------------

BAD_CONFIG_TEXTS = {
    # name: (the config's text, what the message says)
    "a float resolution": ("experiments:\n  a:\n    probe: {grid: {resolution: 80.0}}\n",
                           "config key experiments.a.probe.grid.resolution: 80.0 is not of type 'integer' (integers "
                           "are written without a decimal point or exponent: 80, not 80.0)"),
    "a float batch size": ("experiments:\n  a:\n    training: {batch_size: 50.0}\n",
                           "config key experiments.a.training.batch_size: 50.0 is not of type 'integer'"),
    "a float top_k": ("experiments:\n  a:\n    probe: {top_k: 10.0}\n", "experiments.a.probe.top_k: 10.0 is not of type"),
    "a memory budget in exponent form": ("experiments:\n  a:\n    probe: {memory_budget_bytes: 2.0e+9}\n",
                                         "experiments.a.probe.memory_budget_bytes: 2000000000.0 is not of type 'integer'"),
    "float epochs": ("experiments:\n  a:\n    training: {epochs: 200.0}\n", "experiments.a.training.epochs: 200.0 is not"),
    "a seed beyond 64 bits": ("experiments:\n  a:\n    seeds: [100000000000000000000]\n",
                              "config key experiments.a.seeds.0: 100000000000000000000 is beyond 64-bit integers"),
    "a seed of 2^63": ("experiments:\n  a:\n    seeds: [9223372036854775808]\n", "is beyond 64-bit integers"),
    "a key given twice": ("experiments:\n  a:\n    training:\n      optimizer: {lr: 0.1, lr: 0.2}\n",
                          "line 4: key 'lr' is given twice in one mapping (first on line 4); keep one"),
    "a key given twice beside a merge": ("base: &base {lr: 0.1}\nexperiments:\n  a:\n    training:\n      optimizer:\n"
                                         "        <<: *base\n        lr: 0.2\n        lr: 0.3\n",
                                         "line 8: key 'lr' is given twice in one mapping (first on line 7)"),
    "an experiment given twice": ("experiments:\n  a: {seeds: [0]}\n  a: {seeds: [1]}\n",
                                  "line 3: key 'a' is given twice in one mapping (first on line 2)"),
    "an integer experiment name": ("experiments:\n  1: {seeds: [0]}\n",
                                   "config key experiments: 1 is not of type 'string' (experiment names:"),
    "a 300-character experiment name": ("experiments:\n  " + "x" * 300 + ": {seeds: [0]}\n",
                                        "does not match '^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$' (experiment names"),
    "a name with a slash": ("experiments:\n  a/b: {seeds: [0]}\n", "does not match"),
    "a YAML syntax error": ("experiments:\n  a:\n    model: {width: 10\n", "line 4, column 1: not valid YAML"),
    "a list at the top": ("- experiments\n", "the top level must be a mapping"),
}


@pytest.mark.parametrize("name", list(BAD_CONFIG_TEXTS))
def test_a_bad_config_file_is_refused_naming_the_key_or_line(name, tmp_path):
    text, reason = BAD_CONFIG_TEXTS[name]
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert reason in str(info.value)
    if "line" in reason:
        assert str(info.value).startswith(f"config file {path}, line")


def test_a_key_beside_a_yaml_merge_overrides_the_merged_one(tmp_path):
    """YAML merge keys (`<<: *training`, as workflow/configs/zoo.yaml shares one training section): a key written
    in the mapping overrides the merged one, as YAML means, and is not a key given twice."""
    path = tmp_path / "config.yaml"
    path.write_text("experiments:\n  a:\n    training: &training {epochs: 4, batch_size: 5}\n"
                    "  b:\n    training:\n      <<: *training\n      epochs: 6\n")
    experiments = load_config(path)["experiments"]
    assert (experiments["a"]["training"]["epochs"], experiments["b"]["training"]["epochs"]) == (4, 6)
    assert experiments["b"]["training"]["batch_size"] == 5


def test_experiments_sharing_a_yaml_anchor_resolve_each_on_its_own(tmp_path):
    """Two experiments whose dataset and model are one YAML anchor (`dataset: *images`, as the smoke config's
    own-images-smoke and elsewhere-smoke share theirs) each get their own synthetic root and factory sha256."""
    (tmp_path / "net.py").write_text("def build():\n    pass\n")
    path = tmp_path / "config.yaml"
    path.write_text("experiments:\n  a:\n    dataset: &images {name: image_folder, image_size: [8, 8], "
                    "synthetic: {n_train: 20, n_test: 10}}\n    model: &net {name: python, factory: net.py:build}\n"
                    "    probe: &probe {feature_maps: [relu], lines: [{classes: [class_01, class_02]}]}\n"
                    "  b: {dataset: *images, model: *net, probe: *probe}\n")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path)
        experiments = load_config(path)["experiments"]
    assert (experiments["a"]["dataset"]["root"], experiments["b"]["dataset"]["root"]) == (
        "results/a/data/synthetic", "results/b/data/synthetic")
    assert experiments["a"]["model"]["factory_sha256"] == experiments["b"]["model"]["factory_sha256"]


def test_integers_pass_and_a_large_budget_is_an_integer(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("experiments:\n  a:\n    seeds: [9223372036854775807]\n    probe: {memory_budget_bytes: 2000000000}\n")
    experiment = load_config(path)["experiments"]["a"]
    assert experiment["seeds"] == [2**63 - 1] and experiment["probe"]["memory_budget_bytes"] == 2_000_000_000
    assert resolve_config({"experiments": {"a": {"training": {"optimizer": {"lr": 1}}}}})  # a number may be an int


@pytest.mark.slow
@pytest.mark.workflow
def test_check_config_and_a_dry_run_refuse_the_same_configs(tmp_path, capsys):
    """Every bad config above, and the shipped configs: `geomvol check-config` (its main, in this process: the
    command's own run is test_check_config_without_the_data_runs_without_torch's) and `snakemake -n` accept and
    refuse the same ones, each refusal one message (no traceback from geomvol) naming the key or the line."""
    from types import SimpleNamespace

    from geomvol.cli import main
    from helpers import snakemake

    cases = {name: text for name, (text, _) in BAD_CONFIG_TEXTS.items()}
    cases.update({name: (ROOT / path).read_text() for name, path in (
        ("the default config", "config.yaml"), ("the smoke config", "workflow/configs/smoke.yaml"))})
    for name, text in cases.items():
        path = tmp_path / f"{len(os.listdir(tmp_path))}.yaml"
        path.write_text(text)
        capsys.readouterr()
        returncode = main(["check-config", str(path), "--skip-data"])
        check = SimpleNamespace(returncode=returncode, stderr=capsys.readouterr().err)
        dry_run = snakemake(tmp_path / "work", path, "--dry-run")
        bad = name in BAD_CONFIG_TEXTS
        assert (check.returncode != 0) == bad and (dry_run.returncode != 0) == bad, (name, check.stderr, dry_run.stderr)
        if not bad:
            continue
        assert "Traceback" not in check.stderr and check.stderr.startswith("geomvol check-config: error: "), check.stderr
        if name not in ("a YAML syntax error", "a list at the top"):  # Snakemake reads a --configfile before the
            # Snakefile, and refuses these itself (its message names no line: check-config's does)
            reason = BAD_CONFIG_TEXTS[name][1]
            said = dry_run.stdout + dry_run.stderr  # Snakemake prints a Snakefile error on stdout
            assert reason in check.stderr and f"geomvol: {check.stderr.split('error: ', 1)[1].strip()}" in said


def test_a_triangle_or_contour_figure_needs_planes():
    for figures, key in (({"plane_region": "triangle"}, "plane_region"), ({"contour_levels": 12}, "contour_levels")):
        config = {"experiments": {"s": {"figures": figures}}}
        with pytest.raises(ConfigError, match=rf"experiments\.s\.figures\.{key}: .* probes no probe\.planes"):
            resolve_config(config)
    with pytest.raises(ConfigError, match=r"experiments\.d\.figures\.contour_levels"):
        resolve_config({"experiments": {"d": {"dataset": {"name": "digits"}, "figures": {"contour_levels": 1},
                                              "probe": {"planes": [{"indices": [0, 1, 2]}]}}}})


def test_spectra_epochs_must_be_probed():
    config = {"experiments": {"d": {"dataset": {"name": "digits"}, "training": {"epochs": 4, "save_epochs": [0, 2, 4]},
                                    "probe": {"planes": [{"indices": [0, 1, 2]}], "epochs": [0, 4]},
                                    "figures": {"spectra_epochs": [0, 2]}}}}
    with pytest.raises(ConfigError, match=r"experiments\.d\.figures\.spectra_epochs: epoch\(s\) \[2\] are not probed"):
        resolve_config(config)


# --- torchvision and python models ----------------------------------------------------------------------


def graph_experiment(model: dict, feature_maps, **probe) -> dict:
    """An experiment of a torchvision or python model on a synthetic CIFAR-10, probed on one plane."""
    return {"experiments": {"zoo": {
        "dataset": {"name": "cifar10", "synthetic": {"n_train": 20, "n_test": 10}}, "model": model,
        "probe": {"feature_maps": feature_maps, "planes": [{"classes": [0, 1, 2]}], **probe}}}}


RESNET18 = {"name": "torchvision", "builder": "resnet18"}


@pytest.mark.parametrize(("model", "feature_maps", "probe", "key", "message"), [
    ({"name": "torchvision", "builder": "resnet81"}, ["layer1"], {}, "model.builder",
     "torchvision has no classification builder 'resnet81'; the closest: resnet18"),
    (RESNET18, ["layer5"], {}, "probe.feature_maps.0",
     "ResNet has no node or module 'layer5'; the closest it has: layer4, layer3, layer2, layer1"),
    (RESNET18, ["layer1", "layer4.1.conv9"], {}, "probe.feature_maps.1", "the closest it has: layer4.1.conv2, layer4.1.conv1"),
    (RESNET18, [{"node": "layer2", "pool": [3, 3]}], {}, "probe.feature_maps.0",
     "node 'layer2': the pooling window [3, 3] does not divide the 4 x 4 map"),
    (RESNET18, ["layer4"], {"block_pooling": "global_mean"}, "probe.block_pooling",
     "pooled each by its own entry of probe.feature_maps"),
    (RESNET18, None, {}, "probe.feature_maps", "name the ones to probe"),
    (RESNET18, ["layer4", {"node": "layer4"}], {}, "probe.feature_maps.1", "node 'layer4' is named twice"),
    (RESNET18, [{"node": "layer4", "pool": "global_mean"}], {"metric": "full", "top_k": 513}, "probe.top_k",
     "513 exceeds min(n, d) = 512"),
    ({**RESNET18, "kwargs": {"num_classes": 7}}, ["layer4"], {}, "model",
     "gives outputs [1, 7] for one input; the pipeline reads one logit per class of cifar10, [1, 10]"),
    ({**RESNET18, "kwargs": {"colour": 7}}, ["layer4"], {}, "model",
     "resnet18 does not build with kwargs {'colour': 7}: TypeError"),
    ({"name": "python", "factory": "models/absent.py:build"}, ["fc"], {}, "model.factory",
     "no file models/absent.py"),
    ({"name": "python", "factory": "torchvision.models:no_such_builder"}, ["fc"], {}, "model",
     "torchvision.models has no function 'no_such_builder'"),
    ({"name": "python", "factory": "torchvision.no_such_module:build"}, ["fc"], {}, "model.factory",
     "no module torchvision.no_such_module on the Python path"),
    ({"name": "python", "factory": "torchvision.models:resnet18"}, ["fc"], {}, "model",
     "gives outputs [1, 1000] for one input"),
    ({"name": "torchvision", "builder": "mobilenet_v3_small"}, [{"node": "features.3", "pool": "global_mean"}],
     {"curvature": True}, "probe.curvature",
     "have no second forward-mode derivative, which the curvature takes (NotImplementedError: Trying to use forward "
     "AD with aten::hardsigmoid_backward"),
    ({"name": "shallow"}, [{"node": "hidden"}], {}, "probe.feature_maps.0",
     "entries name graph nodes of torchvision, timm and python models"),
    ({"name": "torchvision"}, ["layer4"], {}, "model", "'builder' is a required property"),
])
def test_graph_models_are_refused_before_any_job(model, feature_maps, probe, key, message):
    with pytest.raises(ConfigError) as info:
        checked(graph_experiment(model, feature_maps, **probe))
    assert str(info.value).startswith(f"config key experiments.zoo.{key}: "), str(info.value)
    assert message in str(info.value), str(info.value)


def test_a_graph_models_feature_maps_resolve_to_nodes_and_pools():
    experiment = checked(graph_experiment(RESNET18, ["layer1", {"node": "layer2", "pool": [2, 2]},
                                                     {"node": "avgpool", "pool": "global_mean"}]))["experiments"]["zoo"]
    assert experiment["probe"]["feature_maps"] == ["layer1", "layer2", "avgpool"]
    assert experiment["probe"]["block_pooling"] == {"layer1": "none", "layer2": [2, 2], "avgpool": "global_mean"}
    assert experiment["model"] == {"name": "torchvision", "builder": "resnet18", "kwargs": {}, "leaf_modules": []}
    assert experiment["seed_group_size"] == 1


def test_a_python_models_source_is_part_of_its_lineage(tmp_path, monkeypatch):
    """The factory file's sha256 enters the model section: an edit of the file changes the lineage of every
    checkpoint (and so reruns the training), a move of the same bytes elsewhere does not."""
    from geomvol.config import group_lineage
    from geomvol.provenance import sha256_file

    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    source = tmp_path / "models" / "net.py"
    source.write_text("from torch import nn\n\ndef build(width=8):\n"
                      "    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, width), nn.GELU(), nn.Linear(width, 10))\n")
    model = {"name": "python", "factory": "models/net.py:build", "kwargs": {"width": 8}}

    def lineage():
        experiment = checked(graph_experiment(model, ["2"]))["experiments"]["zoo"]
        return experiment["model"]["factory_sha256"], config_sha256(group_lineage(experiment, [0]))

    sha, before = lineage()
    assert sha == sha256_file(source)
    source.write_text(source.read_text().replace("nn.GELU()", "nn.Tanh()"))
    assert lineage()[1] != before


@pytest.mark.parametrize(("change", "key", "message"), [
    ({"training": {"epochs": 3}}, "training", "this experiment probes checkpoints trained elsewhere (checkpoints); "
                                              "it trains nothing"),
    ({"seeds": [0, 1]}, "seeds", "checkpoints trained elsewhere are one series; give one seed (a label)"),
    ({"checkpoints": {"last": "a.pt"}}, "checkpoints", "'last' does not match any of the regexes"),
    ({"probe": {"epochs": [2], "feature_maps": ["layer4"], "planes": [{"classes": [0, 1, 2]}]}}, "probe.epochs",
     "epoch(s) [2] are never saved; saved epochs are [0, 5] (the epochs of checkpoints)"),
    ({"checkpoints": {0: "absent.pt"}}, "checkpoints.0", "checkpoint absent.pt does not exist"),
])
def test_checkpoints_trained_elsewhere_are_checked_before_any_job(tmp_path, monkeypatch, change, key, message):
    monkeypatch.chdir(tmp_path)
    for epoch in (0, 5):
        torch.save(build_model(model_spec(RESNET18, [3, 32, 32], 10)).state_dict(), tmp_path / f"e{epoch}.pt")
    config = graph_experiment(RESNET18, ["layer4"])
    config["experiments"]["zoo"]["checkpoints"] = {0: "e0.pt", 5: "e5.pt"}
    experiment = checked(copy.deepcopy(config))["experiments"]["zoo"]
    assert experiment["probe"]["epochs"] == [0, 5] and experiment["checkpoints"] == {"0": "e0.pt", "5": "e5.pt"}
    config["experiments"]["zoo"].update(change)
    with pytest.raises(ConfigError) as info:
        checked(config)
    assert str(info.value).startswith(f"config key experiments.zoo.{key}: ") and message in str(info.value), \
        str(info.value)


def test_checks_that_read_the_config_alone_pass_once(tmp_path, monkeypatch, mnist_root):
    """With a record directory (the Snakefile's .snakemake/geomvol/checked), an experiment whose checks read its
    config alone (a synthetic data set, a model by name) is checked at the first call and skipped at the next;
    an edit of its section is checked again, and a data root on disk every time."""
    import geomvol.data.check as check

    checked = []
    original = check.check_experiment_data
    monkeypatch.setattr(check, "check_experiment_data", lambda key, experiment: checked.append(key) or original(key, experiment))
    synthetic = {"dataset": {"name": "cifar10", "synthetic": {"n_train": 20, "n_test": 10}},
                 "model": {"name": "torchvision", "builder": "resnet18"},
                 "probe": {"feature_maps": [{"node": "layer1", "pool": "global_mean"}], "spectra": False,
                           "lines": [{"classes": ["cat", "dog"]}]}}
    on_disk = {"dataset": {"name": "mnist", "root": str(mnist_root)}, "probe": {"lines": [{"classes": [1, 2]}]}}
    config = resolve_config({"experiments": {"synthetic": synthetic, "on-disk": on_disk}})
    records = tmp_path / "checked"
    check_config_data(config, passed=records)
    assert checked == ["experiments.synthetic", "experiments.on-disk"] and len(list(records.iterdir())) == 1
    check_config_data(config, passed=records)
    assert checked[2:] == ["experiments.on-disk"]  # the synthetic one passed before
    edited = {**synthetic, "probe": {**synthetic["probe"], "lines": [{"classes": ["cat", "ship"]}]}}
    check_config_data(resolve_config({"experiments": {"synthetic": edited}}), passed=records)
    assert checked[3:] == ["experiments.synthetic"] and len(list(records.iterdir())) == 2
    check_config_data(config)  # without records: every check
    assert checked[4:] == ["experiments.synthetic", "experiments.on-disk"]
