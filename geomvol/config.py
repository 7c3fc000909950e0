"""Experiment configuration: schema validation, defaults and schedule checks.

The pipeline's config (``config.yaml``) is checked here before Snakemake
schedules any job: first for numbers that are not finite, then against the
JSON Schema in ``workflow/schemas/config.schema.yaml`` (types, ranges, unknown
keys; defaults are filled in), then against the rules a schema cannot state
(sorted epochs, probe epochs that are saved, keys that do not apply to the
data set, feature maps the model lacks, a data root that lacks files, plane
and line anchors that the data cannot provide).  Every error names the config key.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from geomvol.errors import ConfigError

DEFAULT_SCHEMA = Path(__file__).resolve().parent.parent / "workflow" / "schemas" / "config.schema.yaml"


# Feature maps of each model, by name, and their widths n (kept torch-free so the
# Snakefile loads fast; tests check them against the models' own ``feature_maps()``).
FEATURE_MAPS = {"shallow": ("hidden",), "resnet34": ("pooled", "block1", "block2", "block3", "block4")}
RESNET_WIDTHS = {"pooled": 512, "block1": 64, "block2": 128, "block3": 256, "block4": 512}
# Feature maps that are one function under two names (the ResNet's backbone output is its last block).
SAME_FEATURE_MAPS = {"pooled": "block4"}
INPUT_SHAPES = {"sinusoid": (2,), "mnist": (1, 28, 28), "cifar10": (3, 32, 32)}
IMAGE_DATASETS = ("mnist", "cifar10")
# The files torchvision's MNIST and CIFAR10 read under a data root.
EXPECTED_FILES = {
    "mnist": [
        "MNIST/raw/train-images-idx3-ubyte",
        "MNIST/raw/train-labels-idx1-ubyte",
        "MNIST/raw/t10k-images-idx3-ubyte",
        "MNIST/raw/t10k-labels-idx1-ubyte",
    ],
    "cifar10": [
        *(f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6)),
        "cifar-10-batches-py/test_batch",
        "cifar-10-batches-py/batches.meta",
    ],
}
# Figure kinds (geomvol figure KIND): the 2-D input grid; planes and lines through images; planes per block.
FIGURES = ("volume", "planes", "lines", "blocks")
DATASET_KEYS = {
    "sinusoid": {"name", "seed", "n_points", "low", "high", "amplitude", "frequency", "phase"},
    "images": {"name", "seed", "root", "download", "n_train", "n_test", "normalize", "synthetic"},
}
MODEL_KEYS = {"shallow": {"name", "width", "activation", "weight_std"}, "resnet34": {"name", "activation"}}


def synthetic_root(experiment_name: str) -> str:
    """Where the pipeline writes an experiment's synthetic data set (relative to the working directory)."""
    return f"results/{experiment_name}/data/synthetic"


def feature_width(model: dict, feature_map: str) -> int:
    """The flattened width n of a feature map of a (resolved) model section."""
    return model["width"] if model["name"] == "shallow" else RESNET_WIDTHS[feature_map]


def _key(path) -> str:
    return ".".join(str(p) for p in path) or "<config>"


def _validator_with_defaults(schema: dict):
    """A Draft 2020-12 validator that fills in ``default`` values as it validates."""
    base = jsonschema.Draft202012Validator
    validate_properties = base.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema and name not in instance:
                    instance[name] = copy.deepcopy(subschema["default"])
        yield from validate_properties(validator, properties, instance, schema)

    cls = jsonschema.validators.extend(base, {"properties": set_defaults})
    return cls(schema)


def load_schema(path: str | Path = DEFAULT_SCHEMA) -> dict:
    with open(path) as handle:
        return yaml.safe_load(handle)


def saved_epochs(training: dict) -> list[int]:
    """The epochs after which training writes a checkpoint.

    Epoch 0 (the initialisation) and the last epoch are always included.
    """
    last = training["epochs"]
    schedule = training["save_epochs"]
    if isinstance(schedule, dict):
        epochs = set(range(0, last + 1, schedule["every"]))
    else:
        epochs = set(schedule)
    return sorted(epochs | {0, last})


def _check_experiment(name: str, experiment: dict) -> None:
    where = ("experiments", name)
    training = experiment["training"]
    schedule = training["save_epochs"]
    if isinstance(schedule, list):
        key = _key(where + ("training", "save_epochs"))
        if any(b <= a for a, b in zip(schedule, schedule[1:])):
            raise ConfigError(f"config key {key}: epochs must be strictly increasing, got {schedule}")
        if schedule[-1] > training["epochs"]:
            raise ConfigError(
                f"config key {key}: epoch {schedule[-1]} is after the last training epoch "
                f"(training.epochs = {training['epochs']})"
            )
    saved = saved_epochs(training)
    probe = experiment["probe"]
    if probe["epochs"] is None:
        probe["epochs"] = saved
    else:
        key = _key(where + ("probe", "epochs"))
        epochs = probe["epochs"]
        if any(b <= a for a, b in zip(epochs, epochs[1:])):
            raise ConfigError(f"config key {key}: epochs must be strictly increasing, got {epochs}")
        never = [e for e in epochs if e not in saved]
        if never:
            raise ConfigError(
                f"config key {key}: epoch(s) {never} are never saved; saved epochs are {saved} "
                f"(set training.save_epochs)"
            )
    _check_dataset(where, name, experiment)
    _check_probe(where, experiment)


def _check_dataset(where: tuple, name: str, experiment: dict) -> None:
    dataset, model = experiment["dataset"], experiment["model"]
    kind = "sinusoid" if dataset["name"] == "sinusoid" else "images"
    for section, value, allowed in (("dataset", dataset, DATASET_KEYS[kind]), ("model", model, MODEL_KEYS[model["name"]])):
        extra = sorted(set(value) - allowed)
        if extra:
            owner = value["name"]
            raise ConfigError(f"config key {_key(where + (section, extra[0]))}: does not apply to {section} {owner!r} "
                              f"(its keys: {sorted(allowed)})")
    if kind == "sinusoid":
        if dataset["high"] <= dataset["low"]:
            raise ConfigError(
                f"config key {_key(where + ('dataset',))}: high ({dataset['high']}) must exceed low ({dataset['low']})"
            )
    elif dataset["synthetic"] is not None:
        if "root" in dataset:
            raise ConfigError(f"config key {_key(where + ('dataset', 'root'))}: a synthetic data set is written to "
                              f"{synthetic_root(name)}; give either root or synthetic")
        dataset["root"] = synthetic_root(name)
    elif "root" not in dataset:
        raise ConfigError(f"config key {_key(where + ('dataset', 'root'))}: {dataset['name']} needs a data root "
                          f"(a directory in torchvision's layout), or `synthetic` for a generated stand-in")
    objective = experiment["training"]["objective"]
    if objective["name"] == "cross_entropy" and len(objective) > 1:
        extra = sorted(set(objective) - {"name"})[0]
        raise ConfigError(f"config key {_key(where + ('training', 'objective', extra))}: applies to barlow_twins only")
    if objective["name"] == "barlow_twins":
        if dataset["name"] not in IMAGE_DATASETS:
            raise ConfigError(f"config key {_key(where + ('training', 'objective', 'name'))}: barlow_twins needs images")
        augmentation = experiment["training"]["augmentation"]
        if augmentation["crop_padding"] or augmentation["horizontal_flip"]:
            raise ConfigError(f"config key {_key(where + ('training', 'augmentation'))}: barlow_twins draws its own "
                              f"two views of each image; training.augmentation applies to cross_entropy only")
        if objective["features"] not in FEATURE_MAPS[model["name"]]:
            raise ConfigError(f"config key {_key(where + ('training', 'objective', 'features'))}: model "
                              f"{model['name']!r} has no feature map {objective['features']!r}; it has "
                              f"{list(FEATURE_MAPS[model['name']])}")
    if model["name"] == "resnet34" and dataset["name"] == "sinusoid":
        raise ConfigError(f"config key {_key(where + ('model', 'name'))}: resnet34 needs image inputs, "
                          f"not the 2-D sinusoid")


def _check_probe(where: tuple, experiment: dict) -> None:
    dataset, model, probe = experiment["dataset"], experiment["model"], experiment["probe"]
    names = FEATURE_MAPS[model["name"]]
    if probe["feature_maps"] is None:
        probe["feature_maps"] = [names[0]]
    for i, feature_map in enumerate(probe["feature_maps"]):
        if feature_map not in names:
            raise ConfigError(
                f"config key {_key(where + ('probe', 'feature_maps', i))}: model {model['name']!r} "
                f"has no feature map {feature_map!r}; it has {list(names)}"
            )
    grid = probe["grid"]
    if grid["high"] <= grid["low"]:
        raise ConfigError(
            f"config key {_key(where + ('probe', 'grid'))}: high ({grid['high']}) must exceed low ({grid['low']})"
        )
    if dataset["name"] == "sinusoid":
        for key in ("planes", "lines"):
            if probe[key]:
                raise ConfigError(f"config key {_key(where + ('probe', key))}: the sinusoid is probed on its input "
                                  f"grid (probe.grid); planes and lines are for image data sets")
    elif not probe["planes"] and not probe["lines"]:
        raise ConfigError(f"config key {_key(where + ('probe',))}: an image experiment needs probe.planes or "
                          f"probe.lines (anchor images to probe between)")
    for kind, count in (("planes", 3), ("lines", 2)):
        for number, entry in enumerate(probe[kind]):
            given = "indices" if "indices" in entry else "classes"
            if len(entry[given]) != count:
                raise ConfigError(f"config key {_key(where + ('probe', kind, number, given))}: a {kind[:-1]} goes "
                                  f"through {count} images, not {len(entry[given])}")
    line = probe["line"]
    if line["high"] <= line["low"]:
        raise ConfigError(f"config key {_key(where + ('probe', 'line'))}: high ({line['high']}) must exceed low ({line['low']})")
    d = math.prod(INPUT_SHAPES[dataset["name"]])
    if probe["metric"] == "subspace" and probe["top_k"] is not None:
        raise ConfigError(
            f"config key {_key(where + ('probe', 'top_k'))}: top_k applies to metric 'full' only"
        )
    if probe["top_k"] is not None:
        limit, feature_map = min((min(feature_width(model, f), d), f) for f in probe["feature_maps"])
        if probe["top_k"] > limit:
            raise ConfigError(
                f"config key {_key(where + ('probe', 'top_k'))}: {probe['top_k']} exceeds min(n, d) = {limit} "
                f"(d = {d} inputs, n = {feature_width(model, feature_map)} features of {feature_map!r})"
            )


def _check_data(where: tuple, experiment: dict) -> None:
    """Checks that read the data: the root's files, and that every anchor set names distinct,
    non-collinear images of the prepared training set. Skipped where torchvision will download the root."""
    from geomvol.data.images import check_root, missing_files, training_split
    from geomvol.errors import DataError
    from geomvol.probe.anchors import check_anchor_images, resolve_anchors

    dataset, probe = experiment["dataset"], experiment["probe"]
    if dataset["synthetic"] is None:
        if dataset["download"] and missing_files(dataset["name"], dataset["root"]):
            return
        try:
            check_root(dataset["name"], dataset["root"])
        except DataError as error:
            raise ConfigError(f"config key {_key(where + ('dataset', 'root'))}: {error}") from None
    images, labels, classes = training_split(dataset)
    for kind in ("planes", "lines"):
        key = _key(where + ("probe", kind))
        anchors = resolve_anchors(probe[kind], labels, classes, key)
        check_anchor_images(anchors, images, key)


def resolve_config(config: dict, schema: dict | str | Path = DEFAULT_SCHEMA, check_data: bool = True) -> dict:
    """Validate a pipeline config and return a resolved copy.

    The copy has every default filled in, ``probe.epochs`` expanded to an
    explicit list, ``probe.feature_maps`` to the model's default and a
    synthetic data set's ``root`` set. With ``check_data``, image data roots
    are read (relative paths from the working directory) to check them and the
    anchors. Raises :class:`ConfigError` naming the first bad key.
    """
    if not isinstance(schema, dict):
        schema = load_schema(schema)
    resolved = copy.deepcopy(dict(config))
    validator = _validator_with_defaults(schema)
    _check_finite(resolved, ())
    errors = sorted(validator.iter_errors(resolved), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if errors:
        error = errors[0]
        # oneOf failures: report the most specific sub-error.
        best = jsonschema.exceptions.best_match([error])
        raise ConfigError(f"config key {_key(best.absolute_path)}: {best.message}")
    for name, experiment in resolved["experiments"].items():
        _check_experiment(name, experiment)
    _check_comparisons(resolved["experiments"])
    if check_data:
        for name, experiment in resolved["experiments"].items():
            if experiment["dataset"]["name"] in IMAGE_DATASETS:
                _check_data(("experiments", name), experiment)
    return resolved


def _check_comparisons(experiments: dict) -> None:
    """``probe.compare_with`` names another experiment on the same planes of the same data, probed at a common epoch."""
    for name, experiment in experiments.items():
        other_name = experiment["probe"]["compare_with"]
        if other_name is None:
            continue
        key = f"config key experiments.{name}.probe.compare_with"
        if other_name == name or other_name not in experiments:
            raise ConfigError(f"{key}: {other_name!r} is not another experiment of this config "
                              f"(they are {sorted(set(experiments) - {name})})")
        other = experiments[other_name]
        if not experiment["probe"]["planes"] or experiment["probe"]["planes"] != other["probe"]["planes"]:
            raise ConfigError(f"{key}: {other_name!r} must probe the same planes (probe.planes) as {name!r}")
        if experiment["dataset"] != other["dataset"] and not (
            experiment["dataset"]["synthetic"] and {**experiment["dataset"], "root": None} == {**other["dataset"], "root": None}
        ):
            raise ConfigError(f"{key}: {other_name!r} must use the same data set section as {name!r}, so that the "
                              f"planes go through the same images")
        if not set(experiment["probe"]["epochs"]) & set(other["probe"]["epochs"]):
            raise ConfigError(f"{key}: {name!r} and {other_name!r} are probed at no common epoch")


def _check_finite(value, path: tuple) -> None:
    """Refuse NaN and infinite numbers anywhere (YAML's .nan, .inf), naming the key."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"config key {_key(path)}: {value} is not a finite number")
    if isinstance(value, dict):
        for key, item in value.items():
            _check_finite(item, path + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_finite(item, path + (index,))


def load_config(path: str | Path, schema: dict | str | Path = DEFAULT_SCHEMA, check_data: bool = True) -> dict:
    """Read a YAML config file and resolve it (see :func:`resolve_config`)."""
    with open(path) as handle:
        config = yaml.safe_load(handle) or {}
    return resolve_config(config, schema, check_data)


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: the form that is hashed."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def config_sha256(value: Any) -> str:
    """sha256 of the canonical JSON of a (resolved) config section."""
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()
