"""The config checks that need torch: a data root has the files torchvision reads, every plane
and line names distinct, non-collinear images that its prepared split has, and a torchvision, timm
or python model builds, takes the data's inputs, gives one logit per class and has the graph nodes
named as its feature maps.

They run once, before any job (the Snakefile's main process, ``geomvol check-config``), after the
torch-free checks of :func:`geomvol.config.resolve_config`; torch is imported only for a config with
image experiments. Errors are :class:`ConfigError` naming the config key.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

from geomvol.catalogue import (
    IMAGE_DATASETS, ROOT_DATASETS, TORCHVISION_DATASETS, class_count, dataset_label, input_shape, torchvision_class, weights_is_file,
)
from geomvol.config import GRAPH_MODELS, imported
from geomvol.errors import ConfigError, DataError


def check_config_data(config: dict, passed: str | Path | None = None) -> dict:
    """Check the data of every image experiment of a resolved config (``resolve_config``'s output); return it.
    A root that torchvision will download (``download: true``, files missing) is left to the prepare job.

    With ``passed`` (a directory: the Snakefile's is ``.snakemake/geomvol/checked``), an experiment whose checks
    read nothing but its config (a synthetic or shipped data set, a model by name, factory or file, each with its
    sha256 in the section) is checked once: a file named by the sha256 of its resolved section, geomvol's code
    and the packages' versions records that it passed, and a later check of the same is skipped (a dry run of an
    unchanged config imports no torch). A data root on disk is checked every time."""
    for name, experiment in config["experiments"].items():
        record = None if passed is None or not _config_only(experiment) else Path(passed) / _check_key(experiment)
        if record is not None and record.exists():
            continue
        if experiment["model"]["name"] in GRAPH_MODELS:
            check_experiment_model(f"experiments.{name}", experiment)
        if experiment["dataset"]["name"] in IMAGE_DATASETS:
            check_experiment_data(f"experiments.{name}", experiment)
        if imported(experiment):
            check_experiment_checkpoints(f"experiments.{name}", experiment)
        if record is not None:
            record.parent.mkdir(parents=True, exist_ok=True)
            record.touch()
    return config


def _config_only(experiment: dict) -> bool:
    """Whether an experiment's checks read nothing but its resolved section: no data root on disk (a synthetic
    stand-in, the sinusoid, the shipped digits) and no checkpoints trained elsewhere (files)."""
    dataset = experiment["dataset"]
    on_disk = dataset["name"] in ROOT_DATASETS and dataset.get("synthetic") is None
    return not on_disk and not imported(experiment)


def _check_key(experiment: dict) -> str:
    """The sha256 of what an experiment's config-only checks depend on: its resolved section, geomvol's code, the
    packages' versions."""
    from geomvol.config import config_sha256
    from geomvol.provenance import code_sha256, package_versions

    return config_sha256([experiment, code_sha256(), package_versions()])


def _check_derivatives(key: str, network, probe: dict, shape, what: str) -> None:
    """The feature maps have the derivatives the probe takes, at one point: first-order forward mode (the volume
    element), and second-order (the curvature, with ``probe.curvature``). An operation torch cannot
    differentiate so (MobileNetV3's hardsigmoid has no second forward-mode derivative) is refused here, not
    after training."""
    import torch
    from torch.func import jvp

    from geomvol.geometry.curvature import derivatives
    from geomvol.models.registry import feature_maps_together, feature_map

    names = probe["feature_maps"]
    features = feature_maps_together(network, names, probe["block_pooling"]) or \
        feature_map(network, names[0], probe["block_pooling"])
    network.requires_grad_(False)
    generator = torch.Generator().manual_seed(0)
    x, e1, e2 = (torch.randn(1, *shape, generator=generator) for _ in range(3))
    try:
        with warnings.catch_warnings():  # torch's first forward-mode use says torch.jit.script is deprecated
            warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)
            jvp(features, (x,), (e1,))
    except (NotImplementedError, RuntimeError) as error:
        raise ConfigError(f"config key {key}.probe.feature_maps: {what}'s feature maps {names} have no forward-mode "
                          f"derivative, which the volume element takes: {type(error).__name__}: {error}") from None
    if probe["curvature"]:
        try:
            derivatives(features, x, e1, e2)
        except (NotImplementedError, RuntimeError) as error:
            raise ConfigError(f"config key {key}.probe.curvature: {what}'s feature maps {names} have no second "
                              f"forward-mode derivative, which the curvature takes ({type(error).__name__}: "
                              f"{str(error).splitlines()[0]}); set probe.curvature false, or probe nodes before "
                              f"that operation") from None


def check_experiment_checkpoints(key: str, experiment: dict) -> None:
    """Each checkpoint trained elsewhere of a resolved experiment exists and fits the model (its keys and
    shapes: :func:`geomvol.train.checkpoint.read_outside_state`), at config key ``key``."""
    from geomvol.errors import CheckpointError
    from geomvol.models.registry import build_model, model_spec
    from geomvol.train.checkpoint import read_outside_state

    dataset = experiment["dataset"]
    network = build_model(model_spec(experiment["model"], list(input_shape(dataset)), class_count(dataset)))
    for epoch, path in experiment["checkpoints"].items():
        try:
            read_outside_state(path, network)
        except CheckpointError as error:
            raise ConfigError(f"config key {key}.checkpoints.{epoch}: {error}") from None


def check_experiment_model(key: str, experiment: dict) -> None:
    """A torchvision, timm or python model of a resolved experiment, at config key ``key``: its builder exists, it
    builds, takes one input of the data set's shape, gives one logit per class, and has every graph node
    named in ``probe.feature_maps`` (and ``training.objective.features``); ``probe.top_k`` fits."""
    import torch

    from geomvol.errors import CheckpointError
    from geomvol.models.nodes import check_nodes
    from geomvol.models.registry import (
        build_model, feature_width, model_spec, pretrained_state, timm_module, torchvision_weights,
    )

    model, dataset, probe = experiment["model"], experiment["dataset"], experiment["probe"]
    if model["name"] in ("torchvision", "timm"):
        import difflib

        if model["name"] == "torchvision":
            import torchvision

            builders, listed = torchvision.models.list_models(module=torchvision.models), "torchvision.models.list_models()"
        else:
            try:
                builders, listed = timm_module().list_models(), "timm.list_models()"
            except ConfigError as error:
                raise ConfigError(f"config key {key}.model.name: {error}") from None
        if model["builder"] not in builders:
            close = difflib.get_close_matches(model["builder"], builders, n=5, cutoff=0.5)
            raise ConfigError(f"config key {key}.model.builder: {model['name']} has no classification builder "
                              f"{model['builder']!r}" + (f"; the closest: {', '.join(close)}" if close else "")
                              + f" ({listed} lists them)")
    shape, n_classes = input_shape(dataset), class_count(dataset)
    spec = model_spec(model, list(shape), n_classes)
    what = model.get("builder") or model["factory"]
    try:
        network = build_model(spec).eval()
    except ConfigError as error:
        raise ConfigError(f"config key {key}.model: {error}") from None
    except Exception as error:  # whatever the builder raises on its kwargs
        raise ConfigError(f"config key {key}.model: {what} does not build with kwargs {model['kwargs']}: "
                          f"{type(error).__name__}: {error}") from None
    try:
        with torch.no_grad():
            logits = network(torch.zeros(1, *shape))
    except Exception as error:
        raise ConfigError(f"config key {key}.model: {what} does not take {dataset_label(dataset)}'s inputs of shape "
                          f"{list(shape)}: {type(error).__name__}: {error}") from None
    if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (1, n_classes):
        given = list(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ConfigError(f"config key {key}.model: {what} gives outputs {given} for one input; the pipeline "
                          f"reads one logit per class of {dataset_label(dataset)}, [1, {n_classes}] (set num_classes in "
                          f"model.kwargs)")
    if "weights" in model:  # a file is fitted to the model here; torchvision's weights by name are only looked up
        try:
            if weights_is_file(model["weights"]):
                pretrained_state(model, network)
            else:
                torchvision_weights(model["builder"], model["weights"])
        except (ConfigError, CheckpointError) as error:
            raise ConfigError(f"config key {key}.model.weights: {error}") from None
    leaf_modules = model["leaf_modules"]
    check_nodes(network, probe["feature_maps"], f"{key}.probe.feature_maps", leaf_modules)
    objective = experiment["training"]["objective"]
    if "features" in objective:
        check_nodes(network, [objective["features"]], f"{key}.training.objective.features", leaf_modules)
    widths = {}
    for index, name in enumerate(probe["feature_maps"]):
        try:
            widths[name] = feature_width(network, spec, name, probe["block_pooling"])
        except ConfigError as error:
            raise ConfigError(f"config key {key}.probe.feature_maps.{index}: node {name!r}: {error}") from None
    _check_derivatives(key, network, probe, shape, what)
    if probe["top_k"] is not None:
        d = math.prod(shape)
        limit, name = min((min(width, d), name) for name, width in widths.items())
        if probe["top_k"] > limit:
            raise ConfigError(f"config key {key}.probe.top_k: {probe['top_k']} exceeds min(n, d) = {limit} "
                              f"(d = {d} inputs, n = {widths[name]} features of {name!r})")


def check_experiment_data(key: str, experiment: dict) -> None:
    """The data checks of one resolved image experiment, at config key ``key``."""
    from geomvol.data.anchors import check_anchor_images, resolve_anchors
    from geomvol.data.images import check_root, folder_pixels, missing_files, prepared_splits
    from geomvol.data.prepare import split_tensors
    from geomvol.settings import AnchorChoice

    dataset, probe = experiment["dataset"], experiment["probe"]
    if dataset["name"] in TORCHVISION_DATASETS and dataset["synthetic"] is None:
        if dataset["download"] and missing_files(torchvision_class(dataset), dataset["root"]):
            return
        try:
            check_root(torchvision_class(dataset), dataset["root"])
        except DataError as error:
            raise ConfigError(f"config key {key}.dataset.root: {error}") from None
    used = {entry["split"] for kind in ("planes", "lines") for entry in probe[kind]}
    folder = dataset["name"] == "image_folder" and dataset["synthetic"] is None  # read: the anchors' files alone
    data = prepared_splits(dataset, {"train", "test"} if "all" in used else used, pixels=not folder)
    splits = {split: split_tensors(data, split) for split in used}  # split -> (images, labels, source indices)
    for kind in ("planes", "lines"):
        where = f"{key}.probe.{kind}"
        choices = tuple(AnchorChoice.from_entry(entry) for entry in probe[kind])
        anchors = resolve_anchors(choices, {split: labels for split, (_, labels, _) in splits.items()},
                                  data["classes"], where)
        images = [splits[choice.split][0][indices] for choice, indices in zip(choices, anchors)]
        check_anchor_images(anchors, [folder_pixels(dataset, files) for files in images] if folder else images, where)
