"""Experiment configuration: schema validation, defaults and schedule checks.

The pipeline's config (``config.yaml``) is checked here before Snakemake
schedules any job: first for numbers that are not finite, then against the
JSON Schema in ``geomvol/config.schema.yaml`` (types, ranges, unknown
keys; defaults are filled in), then against the rules a schema cannot state
(sorted epochs, probe epochs that are saved, keys that do not apply to the
data set, feature maps the model lacks). Every error names the config key.
What the data must provide (a data root's files, the plane and line anchors)
is checked beside the data code, by :mod:`geomvol.data.check`. Nothing here
imports torch.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import math
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from geomvol.catalogue import (
    FEATURE_MAPS, IMAGE_DATASETS, ROOT_DATASETS, STUDY_BLOCK_WINDOWS, TORCHVISION_DATASETS, WEIGHTS_FILE_SUFFIXES,
    block_windows, dataset_label, feature_width, input_shape, resnet_block_shape, weights_is_file,
)
from geomvol.data.folders import check_folder_root
from geomvol.errors import ConfigError, DataError
from geomvol.provenance import factory_source, sha256_file

# Shipped inside the package (a non-editable install has no workflow/ beside it); workflow/schemas/ links to it.
DEFAULT_SCHEMA = Path(__file__).resolve().with_name("config.schema.yaml")


_TORCHVISION_KEYS = {"name", "seed", "root", "download", "split_rule", "test_fraction", "n_train", "n_test",
                     "normalize", "synthetic"}
DATASET_KEYS = {
    "sinusoid": {"name", "seed", "n_points", "low", "high", "amplitude", "frequency", "phase"},
    "mnist": _TORCHVISION_KEYS,
    "cifar10": _TORCHVISION_KEYS,
    "torchvision": _TORCHVISION_KEYS | {"class"},
    "digits": {"name", "seed", "split_rule", "test_fraction", "n_train", "n_test", "normalize"},
    "image_folder": (_TORCHVISION_KEYS - {"download"}) | {"image_size", "channels"},
}
MODEL_KEYS = {"shallow": {"name", "width", "activation", "weight_std", "scale_readout_bias"},
              "resnet34": {"name", "activation", "init"},
              "torchvision": {"name", "builder", "kwargs", "leaf_modules", "weights"},
              "timm": {"name", "builder", "kwargs", "leaf_modules", "weights"},
              "python": {"name", "factory", "kwargs", "leaf_modules", "weights"}}
# Models whose feature maps are the nodes of their torch.fx graph, checked against the model itself (with torch,
# by geomvol.data.check); the study's models name theirs (FEATURE_MAPS).
GRAPH_MODELS = ("torchvision", "timm", "python")


# Settings that say how a job runs, not what it computes: the rules pass them as threads and resources, so
# that changing one reruns nothing (Snakemake reruns a job whose params changed).
RUN_TIME_KEYS = {"dataset": ("download",), "training": ("device", "threads"), "probe": ("device", "memory_budget_bytes")}
# The seeds a group job trains and probes together, where seeds can train as one ensemble (benchmarks/seeds.py).
DEFAULT_SEED_GROUP_SIZE = 8
# Training keys that say which checkpoints are kept, not what any one of them is: a checkpoint depends on the
# rest of the training section, the seed, the model and the data, and on its own epoch.
SCHEDULE_KEYS = ("epochs", "save_epochs")


def without_run_time(section_name: str, section: dict) -> dict:
    """A resolved config section without its run-time settings (``RUN_TIME_KEYS``)."""
    return {key: value for key, value in section.items() if key not in RUN_TIME_KEYS.get(section_name, ())}


def result_config(experiment: dict) -> dict:
    """What an experiment's volume store depends on: its seeds and its data set, model, training (or, for
    checkpoints trained elsewhere, ``checkpoints``) and probe sections, without run-time settings and without the
    keys only the figures and measures read (``probe.compare_with``; the ``measures`` and ``figures``
    sections). Stores record it and its sha256."""
    config = {"seeds": experiment["seeds"]}
    for name in ("dataset", "model", "training", "probe"):
        config[name] = without_run_time(name, experiment[name])
    config["probe"].pop("compare_with")
    if imported(experiment):  # probed, not trained
        config.pop("training")
        config["checkpoints"] = experiment["checkpoints"]
    return config


# What a checkpoint trained elsewhere records as its training (its file and that file's sha256 are recorded beside).
IMPORTED_TRAINING = {"origin": "trained elsewhere: the experiment's checkpoints"}


def imported(experiment: dict) -> bool:
    """Whether an experiment probes checkpoints trained elsewhere (``checkpoints``) instead of training."""
    return "checkpoints" in experiment


def imported_lineage(experiment: dict, seed: int) -> dict:
    """What a checkpoint trained elsewhere records as its lineage (its ``train_spec``): the seed label and the
    model; which file it came from, and that file's sha256, it records beside (``imported_from``)."""
    return {"seed": seed, "model": experiment["model"], "training": dict(IMPORTED_TRAINING)}


def import_spec(experiment: dict, seed: int, epoch: int) -> dict:
    """What importing one checkpoint trained elsewhere computes (the import job's params): the seed label, the
    model, the epoch and the file."""
    return {"seed": seed, "model": experiment["model"], "epoch": epoch, "file": experiment["checkpoints"][str(epoch)]}


def training_run(experiment: dict, seed: int) -> dict:
    """What a training run of one seed computes: the seed, the model and the training section without its
    run-time settings (the train rule's params; checkpoints record it)."""
    return {"seed": seed, "model": experiment["model"], "training": without_run_time("training", experiment["training"])}


def checkpoint_lineage(run: dict) -> dict:
    """What every checkpoint of a training run depends on besides its data set and its epoch: ``training_run``
    without the schedule (``SCHEDULE_KEYS``) and run-time settings. Checkpoints of two runs with equal
    lineages are the same at the same epoch (bitwise on the CPU), so one run can resume from the other's;
    a checkpoint records its lineage as its ``train_spec``."""
    training = {key: value for key, value in run["training"].items()
                if key not in SCHEDULE_KEYS and key not in RUN_TIME_KEYS["training"]}
    return {**run, "training": training}


def group_lineage(experiment: dict, group: list[int]) -> dict:
    """What a seed group's training job computes, whatever its schedule: the seeds of the group (trained as one
    unit) and the lineage every one of them shares (:func:`checkpoint_lineage` without the seed). The train
    and extend rules' params: any edit of it reruns the whole group."""
    lineage = checkpoint_lineage(training_run(experiment, group[0]))
    lineage.pop("seed")
    return {"seeds": list(group), **lineage}


def probe_job_settings(experiment: dict) -> dict:
    """What one probe job computes from its checkpoint and data set: the probe section without run-time
    settings, without the list of probed epochs (each job probes one) and without ``compare_with``."""
    probe = without_run_time("probe", experiment["probe"])
    for key in ("epochs", "compare_with"):
        probe.pop(key)
    return probe


def synthetic_root(experiment_name: str) -> str:
    """Where the pipeline writes an experiment's synthetic data set (relative to the working directory)."""
    return f"results/{experiment_name}/data/synthetic"


def _key(path) -> str:
    return ".".join(str(p) for p in path) or "<config>"


def _is_integer(checker, instance) -> bool:
    """The schema's integers are Python ints: JSON Schema's own rule would take 80.0 for an integer, which then
    reaches torch as a float (the schema's description states the rule)."""
    return isinstance(instance, int) and not isinstance(instance, bool)


def _validator_with_defaults(schema: dict):
    """A Draft 2020-12 validator that fills in ``default`` values as it validates, and whose integers are ints."""
    base = jsonschema.validators.extend(
        jsonschema.Draft202012Validator,
        type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_integer))
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
    if imported(experiment):
        _check_imported(where, experiment)
    elif isinstance(schedule, list):
        key = _key(where + ("training", "save_epochs"))
        if any(b <= a for a, b in zip(schedule, schedule[1:])):
            raise ConfigError(f"config key {key}: epochs must be strictly increasing, got {schedule}")
        if schedule[-1] > training["epochs"]:
            raise ConfigError(
                f"config key {key}: epoch {schedule[-1]} is after the last training epoch "
                f"(training.epochs = {training['epochs']})"
            )
    saved = sorted(map(int, experiment["checkpoints"])) if imported(experiment) else saved_epochs(training)
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
                + ("(the epochs of checkpoints)" if imported(experiment) else "(set training.save_epochs)")
            )
    _check_dataset(where, name, experiment)
    _check_probe(where, experiment)
    _check_seed_groups(where, experiment)
    figures = experiment["figures"]
    unprobed = [epoch for epoch in figures["spectra_epochs"] or [] if epoch not in probe["epochs"]]
    if unprobed:
        raise ConfigError(f"config key {_key(where + ('figures', 'spectra_epochs'))}: epoch(s) {unprobed} are not "
                          f"probed; probe.epochs are {probe['epochs']}")
    for key, plain in (("plane_region", "square"), ("contour_levels", None)):
        if figures[key] != plain and not probe["planes"]:
            raise ConfigError(f"config key {_key(where + ('figures', key))}: {figures[key]!r} shapes how planes are "
                              f"drawn (the triangle of their three anchor images), and this experiment probes no "
                              f"probe.planes")


def _check_imported(where: tuple, experiment: dict) -> None:
    """An experiment of checkpoints trained elsewhere has one seed (a label) and is not trained."""
    if len(experiment["seeds"]) != 1:
        raise ConfigError(f"config key {_key(where + ('seeds',))}: checkpoints trained elsewhere are one series; "
                          f"give one seed (a label), not {experiment['seeds']}")


def groupable(experiment: dict) -> bool:
    """Whether an experiment's seeds can train as one ensemble: the shallow net with the cross-entropy objective
    (trained here, not elsewhere)."""
    return (not imported(experiment) and experiment["model"]["name"] == "shallow"
            and experiment["training"]["objective"]["name"] == "cross_entropy")


def _check_seed_groups(where: tuple, experiment: dict) -> None:
    """Resolve ``seed_group_size`` (null: ``DEFAULT_SEED_GROUP_SIZE`` where seeds can train together, else 1)."""
    if experiment["seed_group_size"] is None:
        experiment["seed_group_size"] = DEFAULT_SEED_GROUP_SIZE if groupable(experiment) else 1
    elif experiment["seed_group_size"] > 1 and not groupable(experiment):
        raise ConfigError(f"config key {_key(where + ('seed_group_size',))}: seeds train together only for the shallow "
                          f"net with the cross_entropy objective (model {experiment['model']['name']!r}, objective "
                          f"{experiment['training']['objective']['name']!r}); set 1 or leave it out")


def seed_groups(experiment: dict) -> list[list[int]]:
    """The seeds of a resolved experiment in groups of ``seed_group_size``, in the config's order: the seeds each
    group training job and each probe job take together."""
    seeds, size = experiment["seeds"], experiment["seed_group_size"]
    return [seeds[start:start + size] for start in range(0, len(seeds), size)]


def seed_group_label(group: list[int]) -> str:
    """The directory of a group's probe stores under results/<experiment>/: s<seed> for one seed (where a seed's
    own outputs are), s<a>-s<b>-... for several."""
    return "-".join(f"s{seed}" for seed in group)


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
        rule = dataset["split_rule"]
        if rule == "torchvision" and dataset["name"] not in TORCHVISION_DATASETS:
            raise ConfigError(f"config key {_key(where + ('dataset', 'split_rule'))}: {dataset_label(dataset)} has no "
                              f"torchvision files; split it by randperm_last or shuffle_split"
                              + (" or folders" if dataset["name"] == "image_folder" else ""))
        if rule == "folders" and dataset["name"] != "image_folder":
            raise ConfigError(f"config key {_key(where + ('dataset', 'split_rule'))}: folders (train/ and test/ "
                              f"folders) applies to image_folder data sets")
        if rule in ("torchvision", "folders") and "test_fraction" in dataset:
            raise ConfigError(f"config key {_key(where + ('dataset', 'test_fraction'))}: applies to split_rule "
                              f"randperm_last or shuffle_split ({rule}: the {dataset_label(dataset)} files are split "
                              f"already)")
    if dataset["name"] in ROOT_DATASETS:
        _check_root(where, name, dataset)
    if dataset.get("class") == "SVHN" and importlib.util.find_spec("scipy") is None:
        raise ConfigError(f"config key {_key(where + ('dataset', 'class'))}: torchvision reads SVHN's MATLAB files "
                          f"with scipy, which is not installed: pip install 'geomvol[svhn]'")
    if model["name"] == "python":
        try:
            model["factory_sha256"] = sha256_file(factory_source(model["factory"]))
        except ConfigError as error:
            raise ConfigError(f"config key {_key(where + ('model', 'factory'))}: {error}") from None
    if "weights" in model:
        _check_weights(where + ("model", "weights"), model)
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
        if model["name"] not in GRAPH_MODELS and objective["features"] not in FEATURE_MAPS[model["name"]]:
            raise ConfigError(f"config key {_key(where + ('training', 'objective', 'features'))}: model "
                              f"{model['name']!r} has no feature map {objective['features']!r}; it has "
                              f"{list(FEATURE_MAPS[model['name']])}")
    if model["name"] == "resnet34" and dataset["name"] == "sinusoid":
        raise ConfigError(f"config key {_key(where + ('model', 'name'))}: resnet34 needs image inputs, "
                          f"not the 2-D sinusoid")


def _check_weights(where: tuple, model: dict) -> None:
    """Pretrained weights: a file (its sha256 enters the model section, so that a changed file retrains) or
    torchvision's weights by name (checked against the builder with torch, by geomvol.data.check)."""
    weights = model["weights"]
    if weights_is_file(weights):
        if not Path(weights).is_file():
            raise ConfigError(f"config key {_key(where)}: weights file {weights} does not exist (relative to the "
                              f"working directory, {Path.cwd()})")
        model["weights_sha256"] = sha256_file(weights)
    elif model["name"] != "torchvision":
        raise ConfigError(f"config key {_key(where)}: {weights!r} is not a file ({', '.join(WEIGHTS_FILE_SUFFIXES)}); "
                          f"weights by name are torchvision's; a {model['name']} model takes a state dict file")


def _check_root(where: tuple, name: str, dataset: dict) -> None:
    """A torchvision or image-folder data set has a data root, or `synthetic` (whose root the pipeline writes);
    an image folder's root has its class folders (checked here, without torch: the class count comes from them)."""
    if dataset["synthetic"] is not None:
        if "root" in dataset:
            raise ConfigError(f"config key {_key(where + ('dataset', 'root'))}: a synthetic data set is written to "
                              f"{synthetic_root(name)}; give either root or synthetic")
        dataset["root"] = synthetic_root(name)
    elif "root" not in dataset:
        layout = ("a folder of class folders" if dataset["name"] == "image_folder"
                  else "a directory in torchvision's layout")
        raise ConfigError(f"config key {_key(where + ('dataset', 'root'))}: {dataset_label(dataset)} needs a data root "
                          f"({layout}), or `synthetic` for a generated stand-in")
    elif dataset["name"] == "image_folder":
        try:
            check_folder_root(dataset)
        except DataError as error:
            raise ConfigError(f"config key {_key(where + ('dataset', 'root'))}: {error}") from None


def _check_normalize(where: tuple, dataset: dict) -> None:
    """Fixed normalisation constants: one mean and one std per channel of the data set's images."""
    normalize = dataset["normalize"]
    if not isinstance(normalize, dict):
        return
    channels = input_shape(dataset)[0]
    for name in ("mean", "std"):
        if len(normalize[name]) != channels:
            raise ConfigError(f"config key {_key(where + (name,))}: {len(normalize[name])} values for the "
                              f"{channels} channel(s) of {dataset_label(dataset)}")


def _check_block_pooling(where: tuple, experiment: dict) -> None:
    """Resolve ``probe.block_pooling`` (null: the study's windows for the ResNet) and check that each
    window divides its block's map."""
    model, probe = experiment["model"], experiment["probe"]
    key = where + ("probe", "block_pooling")
    if model["name"] in GRAPH_MODELS:
        if probe["block_pooling"] is not None:
            raise ConfigError(f"config key {_key(key)}: a {model['name']} model's feature maps are pooled each by "
                              f"its own entry of probe.feature_maps ({{node: layer2, pool: [4, 4]}})")
        return
    if model["name"] != "resnet34":
        if probe["block_pooling"] is not None:
            raise ConfigError(f"config key {_key(key)}: applies to resnet34 only (model {model['name']!r} has no blocks)")
        return
    if probe["block_pooling"] is None:
        probe["block_pooling"] = copy.deepcopy(STUDY_BLOCK_WINDOWS)
    windows = block_windows(probe["block_pooling"])
    if windows is None:
        return
    shape = input_shape(experiment["dataset"])
    for block, window in windows.items():
        _, height, width = resnet_block_shape(block, shape)
        if height % window[0] or width % window[1]:
            raise ConfigError(f"config key {_key(key + (block,))}: the window {window} does not divide {block}'s "
                              f"{height} x {width} map (inputs {list(shape)})")


def _check_probe(where: tuple, experiment: dict) -> None:
    dataset, model, probe = experiment["dataset"], experiment["model"], experiment["probe"]
    _check_block_pooling(where, experiment)
    if model["name"] in GRAPH_MODELS:
        _resolve_graph_feature_maps(where, experiment)
    else:
        names = FEATURE_MAPS[model["name"]]
        if probe["feature_maps"] is None:
            probe["feature_maps"] = [names[0]]
        for i, feature_map in enumerate(probe["feature_maps"]):
            if not isinstance(feature_map, str):
                raise ConfigError(f"config key {_key(where + ('probe', 'feature_maps', i))}: {{node, pool}} entries "
                                  f"name graph nodes of torchvision, timm and python models; {model['name']} names its "
                                  f"feature maps {list(names)}")
            if feature_map in probe["feature_maps"][:i]:
                raise ConfigError(f"config key {_key(where + ('probe', 'feature_maps', i))}: {feature_map!r} is "
                                  f"named twice")
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
    elif probe["curvature"] and not probe["planes"]:
        raise ConfigError(f"config key {_key(where + ('probe', 'curvature'))}: curvature is measured on planes "
                          f"(a surface has a Gaussian curvature, a line none), and this experiment probes no "
                          f"probe.planes")
    for kind, count in (("planes", 3), ("lines", 2)):
        for number, entry in enumerate(probe[kind]):
            given = "indices" if "indices" in entry else "classes"
            if len(entry[given]) != count:
                raise ConfigError(f"config key {_key(where + ('probe', kind, number, given))}: a {kind[:-1]} goes "
                                  f"through {count} images, not {len(entry[given])}")
            if given == "classes":
                entry.setdefault("seed", 0)
                entry.setdefault("sampler", "per_class_permutation")
            if entry["split"] == "all" and dataset["split_rule"] == "torchvision":
                raise ConfigError(f"config key {_key(where + ('probe', kind, number, 'split'))}: 'all' joins the "
                                  f"training and test images of one source (the digits, or a split_rule "
                                  f"randperm_last or shuffle_split of torchvision's training file); "
                                  f"{dataset_label(dataset)}'s torchvision splits are separate files: use train or test")
    line = probe["line"]
    if line["high"] <= line["low"]:
        raise ConfigError(f"config key {_key(where + ('probe', 'line'))}: high ({line['high']}) must exceed low ({line['low']})")
    d = math.prod(input_shape(dataset))
    if probe["metric"] == "subspace" and probe["top_k"] is not None:
        raise ConfigError(
            f"config key {_key(where + ('probe', 'top_k'))}: top_k applies to metric 'full' only"
        )
    if probe["top_k"] is not None and model["name"] not in GRAPH_MODELS:  # a graph model's widths: with torch
        def width(feature_map):
            return feature_width(model, feature_map, input_shape(dataset), probe["block_pooling"])

        limit, feature_map = min((min(width(f), d), f) for f in probe["feature_maps"])
        if probe["top_k"] > limit:
            raise ConfigError(
                f"config key {_key(where + ('probe', 'top_k'))}: {probe['top_k']} exceeds min(n, d) = {limit} "
                f"(d = {d} inputs, n = {width(feature_map)} features of {feature_map!r})"
            )


def _resolve_graph_feature_maps(where: tuple, experiment: dict) -> None:
    """A torchvision, timm or python model names its feature maps by graph nodes, each a name or {node, pool}:
    resolved to the list of node names and ``probe.block_pooling`` node -> pool (none, global_mean or a
    window). Whether the model has the nodes is checked with torch (:mod:`geomvol.data.check`)."""
    model, probe = experiment["model"], experiment["probe"]
    key = where + ("probe", "feature_maps")
    if probe["feature_maps"] is None:
        raise ConfigError(f"config key {_key(key)}: a {model['name']} model's feature maps are nodes of its graph "
                          f"(layer3, avgpool, encoder.layers.encoder_layer_1, ...); name the ones to probe")
    try:
        probe["feature_maps"], probe["block_pooling"] = graph_feature_maps(probe["feature_maps"])
    except ConfigError as error:
        raise ConfigError(f"config key {_key(key)}.{error}") from None


def graph_feature_maps(entries: list) -> tuple[list[str], dict]:
    """Feature maps named as graph nodes, each a name or {node, pool}: the node names, and node -> pool (a
    name alone: none). A node named twice raises :class:`ConfigError` '<index>: ...'."""
    names, pools = [], {}
    for i, entry in enumerate(entries):
        node, pool = (entry, "none") if isinstance(entry, str) else (entry["node"], entry.get("pool", "none"))
        if node in pools:
            raise ConfigError(f"{i}: node {node!r} is named twice")
        names.append(node)
        pools[node] = pool
    return names, pools


def resolve_config(config: dict, schema: dict | str | Path = DEFAULT_SCHEMA) -> dict:
    """Validate a pipeline config and return a resolved copy, reading no data (and importing no torch).

    The copy has every default filled in, ``probe.epochs`` expanded to an
    explicit list, ``probe.feature_maps`` to the model's default and a
    synthetic data set's ``root`` set. Raises :class:`ConfigError` naming the
    first bad key. The checks that read the data (a data root's files, the
    anchors) are :func:`geomvol.data.check.check_config_data`'s.
    """
    if not isinstance(schema, dict):
        schema = load_schema(schema)
    resolved = copy.deepcopy(dict(config))
    if isinstance(resolved.get("experiments"), dict):  # experiments sharing a YAML anchor (`model: *cnn`) share a
        # dict: one copy each, since resolving fills in each one's own keys (a synthetic root, a factory's sha256)
        resolved["experiments"] = {name: copy.deepcopy(experiment) for name, experiment in resolved["experiments"].items()}
    validator = _validator_with_defaults(schema)
    _check_numbers(resolved, ())
    _checkpoints_by_epoch(resolved)
    errors = sorted(validator.iter_errors(resolved), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if errors:
        error = errors[0]
        # oneOf failures: report the most specific sub-error.
        best = jsonschema.exceptions.best_match([error])
        message = best.message
        if isinstance(best.instance, float) and best.instance.is_integer() and '"integer"' in json.dumps(best.schema):
            message = (f"{best.instance} is not of type 'integer' (integers are written without a decimal point or "
                       f"exponent: {int(best.instance)}, not {best.instance})")
        elif list(best.absolute_path) == ["experiments"] and best.validator in ("type", "pattern"):
            message += " (experiment names: letters, digits, '_' and '-', starting with a letter or digit, at most 64)"
        raise ConfigError(f"config key {_key(best.absolute_path)}: {message}")
    for name, experiment in resolved["experiments"].items():
        _check_experiment(name, experiment)
    _check_comparisons(resolved["experiments"])
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


def _checkpoints_by_epoch(config: dict) -> None:
    """``checkpoints`` (epoch -> file) keyed by the epoch's digits, as JSON keys it (YAML reads ``0:`` as an
    integer); an experiment with checkpoints trained elsewhere has no training section."""
    experiments = config.get("experiments")
    if not isinstance(experiments, dict):
        return
    for name, experiment in experiments.items():
        if not isinstance(experiment, dict) or not isinstance(experiment.get("checkpoints"), dict):
            continue
        if "training" in experiment:
            raise ConfigError(f"config key experiments.{name}.training: this experiment probes checkpoints trained "
                              f"elsewhere (checkpoints); it trains nothing")
        experiment["checkpoints"] = {str(epoch) if isinstance(epoch, int) and not isinstance(epoch, bool) else epoch:
                                     path for epoch, path in experiment["checkpoints"].items()}


INTEGER_LIMIT = 2**63  # torch's int64: seeds, sizes and byte counts beyond it overflow inside jobs


def _check_numbers(value, path: tuple) -> None:
    """Refuse NaN and infinite numbers (YAML's .nan, .inf) and integers beyond 64 bits anywhere, naming the key."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"config key {_key(path)}: {value} is not a finite number")
    if isinstance(value, int) and not isinstance(value, bool) and not -INTEGER_LIMIT <= value < INTEGER_LIMIT:
        raise ConfigError(f"config key {_key(path)}: {value} is beyond 64-bit integers (|n| < 2^63)")
    if isinstance(value, dict):
        for key, item in value.items():
            _check_numbers(item, path + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_numbers(item, path + (index,))


class _StrictLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (PyYAML keeps the last silently)."""


def _mapping_without_duplicates(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    """A mapping, refusing a key written twice in it; a key given here overrides one merged in (``<<: *anchor``),
    as YAML's merge keys mean."""
    written = [(key_node, value) for key_node, value in node.value if key_node.tag != "tag:yaml.org,2002:merge"]
    loader.flatten_mapping(node)
    lines = {}
    for key_node, _ in written:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        try:
            if key in lines:
                raise ConfigError(f"config file {loader.name}, line {line}: key {key!r} is given twice in one mapping "
                                  f"(first on line {lines[key]}); keep one")
            lines[key] = line
        except TypeError:  # a key YAML allows and no config has (a list, a mapping): the schema refuses it
            continue
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def read_config_file(path: str | Path) -> dict:
    """A YAML (or JSON) config file as a dict, read strictly: a duplicate key, a YAML syntax error or a top level
    that is not a mapping raises :class:`ConfigError` naming the file and the line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"config file {path} cannot be read: {error.strerror or error}") from error
    loader = _StrictLoader(text)
    loader.name = str(path)
    try:
        config = loader.get_single_data()
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"config file {path}{where}: not valid YAML: "
                          f"{' '.join(part for part in (error.context, error.problem) if part)}") from error
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path}: not valid YAML: {error}") from error
    finally:
        loader.dispose()
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise ConfigError(f"config file {path}: the top level must be a mapping (experiments: ...), not a "
                          f"{type(config).__name__}")
    return config


def load_config(path: str | Path, schema: dict | str | Path = DEFAULT_SCHEMA) -> dict:
    """Read a YAML config file strictly (:func:`read_config_file`) and resolve it (see :func:`resolve_config`)."""
    return resolve_config(read_config_file(path), schema)


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: the form that is hashed."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def config_sha256(value: Any) -> str:
    """sha256 of the canonical JSON of a (resolved) config section."""
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()
