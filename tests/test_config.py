import copy

import pytest
import yaml

import torch

from geomvol.config import FEATURE_MAPS, config_sha256, feature_width, load_config, resolve_config, saved_epochs
from geomvol.errors import ConfigError
from geomvol.models import build_model
from geomvol.models.registry import model_spec

from conftest import ROOT


def test_default_config_is_the_study_setting():
    experiment = load_config(ROOT / "config.yaml")["experiments"]["sinusoid"]
    assert experiment["dataset"]["n_points"] == 400
    assert experiment["model"] == {"name": "shallow", "width": 250, "activation": "sigmoid", "weight_std": 1.0}
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


def test_feature_map_table_matches_the_models():
    x = torch.rand(2, 3, 32, 32)
    for name, maps in FEATURE_MAPS.items():
        section = {"name": name, "width": 3, "activation": "tanh" if name == "shallow" else "gelu"}
        model = build_model(model_spec(section, [3, 32, 32], 10)).eval()
        assert tuple(model.feature_maps()) == maps
        for feature_map, function in model.feature_maps().items():
            assert function(x).shape == (2, feature_width(section, feature_map))


def test_config_hash_ignores_key_order():
    a = {"b": 1, "a": {"y": [1, 2], "x": 0.5}}
    b = yaml.safe_load("a: {x: 0.5, y: [1, 2]}\nb: 1")
    assert config_sha256(a) == config_sha256(b)
    c = copy.deepcopy(a)
    c["a"]["x"] = 0.25
    assert config_sha256(a) != config_sha256(c)
