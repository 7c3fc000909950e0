"""Experiment configuration: schema validation, defaults and schedule checks.

The pipeline's config (``config.yaml``) is checked here before Snakemake
schedules any job: first for numbers that are not finite, then against the
JSON Schema in ``geomvol/config.schema.yaml`` (types, ranges, unknown
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

# Shipped inside the package (a non-editable install has no workflow/ beside it); workflow/schemas/ links to it.
DEFAULT_SCHEMA = Path(__file__).resolve().with_name("config.schema.yaml")


# Feature maps of each model, by name, and their shapes (kept torch-free so the
# Snakefile loads fast; tests check them against the models' own ``feature_maps()``).
FEATURE_MAPS = {"shallow": ("hidden",), "resnet34": ("pooled", "block1", "block2", "block3", "block4")}
RESNET_CHANNELS = {"block1": 64, "block2": 128, "block3": 256, "block4": 512}
# The study's average-pooling windows (stride = window): every block of a 32 x 32 input pooled to 512 values
# (block1 64x32x32 -> 64x2x4, block2 128x16x16 -> 128x2x2, block3 256x8x8 -> 256x1x2, block4 512x4x4 -> 512).
STUDY_BLOCK_WINDOWS = {"block1": [16, 8], "block2": [8, 8], "block3": [8, 4], "block4": [4, 4]}
# Feature maps that are one function under two names when block4 is averaged over its whole map.
SAME_FEATURE_MAPS = {"pooled": "block4"}
INPUT_SHAPES = {"sinusoid": (2,), "mnist": (1, 28, 28), "cifar10": (3, 32, 32), "digits": (1, 8, 8)}
TORCHVISION_DATASETS = ("mnist", "cifar10")  # read from a data root through torchvision's classes
SPLIT_NAMES = {"train": "training", "test": "test"}  # the prepared splits anchor images come from
IMAGE_DATASETS = (*TORCHVISION_DATASETS, "digits")  # digits: scikit-learn's load_digits, shipped with geomvol
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
# Figure kinds (geomvol figure KIND): the 2-D input grid; planes and lines through images; planes per block;
# singular-value spectra at the anchor images.
FIGURES = ("volume", "planes", "lines", "blocks", "spectra")
_TORCHVISION_KEYS = {"name", "seed", "root", "download", "n_train", "n_test", "normalize", "synthetic"}
DATASET_KEYS = {
    "sinusoid": {"name", "seed", "n_points", "low", "high", "amplitude", "frequency", "phase"},
    "mnist": _TORCHVISION_KEYS,
    "cifar10": _TORCHVISION_KEYS,
    "digits": {"name", "seed", "test_fraction", "n_train", "n_test", "normalize"},
}
MODEL_KEYS = {"shallow": {"name", "width", "activation", "weight_std", "scale_readout_bias"},
              "resnet34": {"name", "activation"}}


# Settings that say how a job runs, not what it computes: the rules pass them as threads and resources, so
# that changing one reruns nothing (Snakemake reruns a job whose params changed).
RUN_TIME_KEYS = {"dataset": ("download",), "training": ("device", "threads"), "probe": ("device", "memory_budget_bytes")}
# Training keys that say which checkpoints are kept, not what any one of them is: a checkpoint depends on the
# rest of the training section, the seed, the model and the data, and on its own epoch.
SCHEDULE_KEYS = ("epochs", "save_epochs")


def without_run_time(section_name: str, section: dict) -> dict:
    """A resolved config section without its run-time settings (``RUN_TIME_KEYS``)."""
    return {key: value for key, value in section.items() if key not in RUN_TIME_KEYS.get(section_name, ())}


def result_config(experiment: dict) -> dict:
    """What an experiment's volume store depends on: its seeds and its data set, model, training and probe
    sections, without run-time settings and without the keys only the figures and measures read
    (``probe.compare_with``; the ``measures`` and ``figures`` sections). Stores record it and its sha256."""
    config = {"seeds": experiment["seeds"]}
    for name in ("dataset", "model", "training", "probe"):
        config[name] = without_run_time(name, experiment[name])
    config["probe"].pop("compare_with")
    return config


def train_spec(experiment: dict, seed: int) -> dict:
    """What a training run of one seed computes: the seed, the model and the training section without its
    run-time settings (the train rule's params; checkpoints record it)."""
    return {"seed": seed, "model": experiment["model"], "training": without_run_time("training", experiment["training"])}


def checkpoint_lineage(spec: dict) -> dict:
    """What every checkpoint of a training run depends on besides its data set and its epoch: ``train_spec``
    without the schedule (``SCHEDULE_KEYS``) and run-time settings. Checkpoints of two runs with equal
    lineages are the same at the same epoch (bitwise on the CPU), so one run can resume from the other's;
    a checkpoint records its lineage as its ``train_spec``."""
    training = {key: value for key, value in spec["training"].items()
                if key not in SCHEDULE_KEYS and key not in RUN_TIME_KEYS["training"]}
    return {**spec, "training": training}


def probe_spec(experiment: dict) -> dict:
    """What one probe job computes from its checkpoint and data set: the probe section without run-time
    settings, without the list of probed epochs (each job probes one) and without ``compare_with``."""
    probe = without_run_time("probe", experiment["probe"])
    for key in ("epochs", "compare_with"):
        probe.pop(key)
    return probe


def synthetic_root(experiment_name: str) -> str:
    """Where the pipeline writes an experiment's synthetic data set (relative to the working directory)."""
    return f"results/{experiment_name}/data/synthetic"


def resnet_block_shape(block: str, input_shape) -> tuple[int, int, int]:
    """(C, H, W) of a ResNet34 block's output for an input (C_in, H_in, W_in): the CIFAR stem and block1
    keep the size, each later block halves it (3 x 3 convolution, stride 2, padding 1)."""
    height, width = input_shape[1:]
    for _ in range(int(block[len("block"):]) - 1):
        height, width = (height - 1) // 2 + 1, (width - 1) // 2 + 1
    return RESNET_CHANNELS[block], height, width


def block_windows(block_pooling) -> dict | None:
    """The per-block pooling windows of a resolved ``probe.block_pooling``; None: the global mean
    (``global_mean``, or a model without blocks)."""
    return block_pooling if isinstance(block_pooling, dict) else None


def feature_width(model: dict, feature_map: str, input_shape, block_pooling=None) -> int:
    """The flattened width n of a feature map of a (resolved) model section, for inputs of ``input_shape``,
    with the ResNet blocks pooled as ``block_pooling`` says (a resolved ``probe.block_pooling``)."""
    if model["name"] == "shallow":
        return model["width"]
    if feature_map == "pooled":
        return RESNET_CHANNELS["block4"]
    channels, height, width = resnet_block_shape(feature_map, input_shape)
    windows = block_windows(block_pooling)
    if windows is None:
        return channels
    window_height, window_width = windows[feature_map]
    return channels * (height // window_height) * (width // window_width)


def same_feature_maps(model: dict, input_shape, block_pooling=None) -> dict:
    """Feature maps that are one function under two names: the ResNet's ``pooled`` (the global mean of
    block4) is ``block4`` when block4 is averaged over its whole map."""
    if model["name"] != "resnet34":
        return {}
    windows = block_windows(block_pooling)
    if windows is None or tuple(windows["block4"]) == resnet_block_shape("block4", input_shape)[1:]:
        return dict(SAME_FEATURE_MAPS)
    return {}


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
    for section, value, allowed in (("dataset", dataset, DATASET_KEYS[dataset["name"]]),
                                    ("model", model, MODEL_KEYS[model["name"]])):
        extra = sorted(set(value) - allowed)
        if extra:
            owner = value["name"]
            raise ConfigError(f"config key {_key(where + (section, extra[0]))}: does not apply to {section} {owner!r} "
                              f"(its keys: {sorted(allowed)})")
    if dataset["name"] == "sinusoid":
        if dataset["high"] <= dataset["low"]:
            raise ConfigError(
                f"config key {_key(where + ('dataset',))}: high ({dataset['high']}) must exceed low ({dataset['low']})"
            )
    else:
        _check_normalize(where + ("dataset", "normalize"), dataset)
    if dataset["name"] in TORCHVISION_DATASETS:
        _check_root(where, name, dataset)
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


def _check_root(where: tuple, name: str, dataset: dict) -> None:
    """A torchvision data set has a data root, or `synthetic` (whose root the pipeline writes)."""
    if dataset["synthetic"] is not None:
        if "root" in dataset:
            raise ConfigError(f"config key {_key(where + ('dataset', 'root'))}: a synthetic data set is written to "
                              f"{synthetic_root(name)}; give either root or synthetic")
        dataset["root"] = synthetic_root(name)
    elif "root" not in dataset:
        raise ConfigError(f"config key {_key(where + ('dataset', 'root'))}: {dataset['name']} needs a data root "
                          f"(a directory in torchvision's layout), or `synthetic` for a generated stand-in")


def _check_normalize(where: tuple, dataset: dict) -> None:
    """Fixed normalisation constants: one mean and one std per channel of the data set's images."""
    normalize = dataset["normalize"]
    if not isinstance(normalize, dict):
        return
    channels = INPUT_SHAPES[dataset["name"]][0]
    for name in ("mean", "std"):
        if len(normalize[name]) != channels:
            raise ConfigError(f"config key {_key(where + (name,))}: {len(normalize[name])} values for the "
                              f"{channels} channel(s) of {dataset['name']}")


def _check_block_pooling(where: tuple, experiment: dict) -> None:
    """Resolve ``probe.block_pooling`` (null: the study's windows for the ResNet) and check that each
    window divides its block's map."""
    model, probe = experiment["model"], experiment["probe"]
    key = where + ("probe", "block_pooling")
    if model["name"] != "resnet34":
        if probe["block_pooling"] is not None:
            raise ConfigError(f"config key {_key(key)}: applies to resnet34 only (model {model['name']!r} has no blocks)")
        return
    if probe["block_pooling"] is None:
        probe["block_pooling"] = copy.deepcopy(STUDY_BLOCK_WINDOWS)
    windows = block_windows(probe["block_pooling"])
    if windows is None:
        return
    input_shape = INPUT_SHAPES[experiment["dataset"]["name"]]
    for block, window in windows.items():
        _, height, width = resnet_block_shape(block, input_shape)
        if height % window[0] or width % window[1]:
            raise ConfigError(f"config key {_key(key + (block,))}: the window {window} does not divide {block}'s "
                              f"{height} x {width} map (inputs {list(input_shape)})")


def _check_probe(where: tuple, experiment: dict) -> None:
    dataset, model, probe = experiment["dataset"], experiment["model"], experiment["probe"]
    _check_block_pooling(where, experiment)
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
            if given == "classes":
                entry.setdefault("seed", 0)
                entry.setdefault("sampler", "per_class_permutation")
    line = probe["line"]
    if line["high"] <= line["low"]:
        raise ConfigError(f"config key {_key(where + ('probe', 'line'))}: high ({line['high']}) must exceed low ({line['low']})")
    d = math.prod(INPUT_SHAPES[dataset["name"]])
    if probe["metric"] == "subspace" and probe["top_k"] is not None:
        raise ConfigError(
            f"config key {_key(where + ('probe', 'top_k'))}: top_k applies to metric 'full' only"
        )
    if probe["top_k"] is not None:
        input_shape = INPUT_SHAPES[dataset["name"]]

        def width(feature_map):
            return feature_width(model, feature_map, input_shape, probe["block_pooling"])

        limit, feature_map = min((min(width(f), d), f) for f in probe["feature_maps"])
        if probe["top_k"] > limit:
            raise ConfigError(
                f"config key {_key(where + ('probe', 'top_k'))}: {probe['top_k']} exceeds min(n, d) = {limit} "
                f"(d = {d} inputs, n = {width(feature_map)} features of {feature_map!r})"
            )


def _check_data(where: tuple, experiment: dict) -> None:
    """Checks that read the data: the root's files, and that every anchor set names distinct,
    non-collinear images of its prepared split. Skipped where torchvision will download the root."""
    from geomvol.data.images import check_root, missing_files, prepared_split
    from geomvol.errors import DataError
    from geomvol.probe.anchors import check_anchor_images, resolve_anchors

    dataset, probe = experiment["dataset"], experiment["probe"]
    if dataset["name"] in TORCHVISION_DATASETS and dataset["synthetic"] is None:
        if dataset["download"] and missing_files(dataset["name"], dataset["root"]):
            return
        try:
            check_root(dataset["name"], dataset["root"])
        except DataError as error:
            raise ConfigError(f"config key {_key(where + ('dataset', 'root'))}: {error}") from None
    used = sorted({entry["split"] for kind in ("planes", "lines") for entry in probe[kind]})
    splits = {split: prepared_split(dataset, split) for split in used}  # split -> (images, labels, classes)
    classes = next(iter(splits.values()))[2]  # an image experiment has planes or lines: one split at least
    for kind in ("planes", "lines"):
        key = _key(where + ("probe", kind))
        anchors = resolve_anchors(probe[kind], {split: labels for split, (_, labels, _) in splits.items()}, classes, key)
        check_anchor_images(anchors, [splits[entry["split"]][0][indices] for entry, indices in zip(probe[kind], anchors)],
                            key)


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
        # the same images; each model may read them normalised its own way (the study's Barlow Twins uses
        # ImageNet's constants, its supervised net CIFAR-10's), and a synthetic root is each experiment's own
        ignored = {"normalize": None, **({"root": None} if experiment["dataset"].get("synthetic") else {})}
        if {**experiment["dataset"], **ignored} != {**other["dataset"], **ignored}:
            raise ConfigError(f"{key}: {other_name!r} must use the same data set section as {name!r} (normalize "
                              f"aside), so that the planes go through the same images")
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
