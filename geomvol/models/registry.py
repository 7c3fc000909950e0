"""Build a model from its config section; look up its feature maps by name.

The registry, by ``model.name``:

    shallow       the study's one-hidden-layer net (:mod:`geomvol.models.shallow`)
    resnet34      the study's CIFAR ResNet34 (:mod:`geomvol.models.resnet`)
    torchvision   any torchvision classification builder, ``torchvision.models.get_model(builder, **kwargs)``
                  (``num_classes`` defaults to the data set's class count)
    timm          any timm model, ``timm.create_model(builder, **kwargs)`` (likewise; the optional extra
                  ``geomvol[timm]``)
    python        a user's module: ``factory`` ("package.module:build" or "path/to/file.py:build") called
                  with ``kwargs``; the factory's source file and its sha256 (``factory_sha256``) are part of
                  the model's section, so an edit of the file reruns what depends on it, and a checkpoint
                  whose file has changed since is refused

Pretrained ``weights`` (torchvision's by name, or a state dict file of any of the last three) are where
training starts: :func:`pretrained_state`, loaded by the trainer, not by :func:`build_model`.

Feature maps: the study's models name theirs (``hidden``; ``pooled``, ``block1``..``block4``); any other
model's are the nodes of its torch.fx graph (:mod:`geomvol.models.nodes`).
"""

from __future__ import annotations

import importlib
import importlib.util
import math
from typing import Callable

import torch
from torch import nn

from geomvol.catalogue import feature_width as catalogue_feature_width
from geomvol.errors import CheckpointError, ConfigError
from geomvol.models.nodes import node_feature_map
from geomvol.models.shallow import ShallowConfig, ShallowNet
from geomvol.provenance import factory_parts, factory_source, sha256_file

STUDY_MODELS = ("shallow", "resnet34")  # name their own feature maps


def model_spec(model: dict, input_shape: list[int], n_classes: int) -> dict:
    """Everything needed to rebuild the model: the config section plus the data's shapes."""
    return {**model, "input_shape": list(input_shape), "n_classes": n_classes}


def load_factory(factory: str) -> Callable[..., nn.Module]:
    """The function a ``python`` model's ``factory`` names, imported (a file by its path)."""
    where, name = factory_parts(factory)
    path = factory_source(factory)
    try:
        if where.endswith(".py"):
            spec = importlib.util.spec_from_file_location(f"geomvol_model_{path.stem}", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(where)
    except Exception as error:  # whatever the user's module raises on import
        raise ConfigError(f"model factory {factory!r}: {path} fails to import: {type(error).__name__}: "
                          f"{error}") from error
    function = getattr(module, name, None)
    if not callable(function):
        raise ConfigError(f"model factory {factory!r}: {where} has no function {name!r}")
    return function


def timm_module():
    """timm, an optional dependency: :class:`ConfigError` saying how to install it when it is not."""
    try:
        import timm
    except ImportError:
        raise ConfigError("model name timm needs timm: pip install 'geomvol[timm]'") from None
    return timm


def build_model(architecture: dict) -> nn.Module:
    """Build an (untrained) model from :func:`model_spec`'s output (keys it lacks take the config's defaults,
    which the model configs' own defaults are)."""
    name = architecture["name"]
    if name == "shallow":
        given = {key: architecture[key] for key in ("width", "activation", "weight_std", "scale_readout_bias") if key in architecture}
        return ShallowNet(ShallowConfig(in_features=math.prod(architecture["input_shape"]), n_classes=architecture["n_classes"], **given))
    if name == "resnet34":
        from geomvol.models.resnet import CifarResNet34, ResNetConfig  # torchvision: imported only for it

        given = {key: architecture[key] for key in ("activation", "init") if key in architecture}
        return CifarResNet34(ResNetConfig(in_channels=architecture["input_shape"][0], n_classes=architecture["n_classes"],
                                          **given))
    if name == "torchvision":
        import torchvision

        kwargs = {"num_classes": architecture["n_classes"], **architecture.get("kwargs", {})}
        model = torchvision.models.get_model(architecture["builder"], **kwargs)
    elif name == "timm":
        kwargs = {"num_classes": architecture["n_classes"], **architecture.get("kwargs", {})}
        model = timm_module().create_model(architecture["builder"], **kwargs)
    elif name == "python":
        factory = architecture["factory"]
        recorded, source = architecture.get("factory_sha256"), factory_source(factory)
        if recorded is not None and sha256_file(source) != recorded:
            raise CheckpointError(f"model factory {factory!r}: {source} has changed since this model was specified "
                                  f"(sha256 {recorded[:12]}..., now {sha256_file(source)[:12]}...); rerun the "
                                  f"pipeline")
        model = load_factory(factory)(**architecture.get("kwargs", {}))
        if not isinstance(model, nn.Module):
            raise ConfigError(f"model factory {factory!r} returned a {type(model).__name__}, not a torch.nn.Module")
    else:
        raise ValueError(f"unknown model {name!r}")
    model.geomvol_leaf_modules = tuple(architecture.get("leaf_modules", ()))
    return model


def torchvision_weights(builder: str, name: str):
    """torchvision's weights of ``builder`` called ``name``, by member (``IMAGENET1K_V1``, ``DEFAULT``) or in full
    (``ResNet18_Weights.IMAGENET1K_V1``); a name it does not have raises :class:`ConfigError` listing those it
    has. Nothing is downloaded here."""
    import torchvision

    weights = torchvision.models.get_model_weights(builder)
    prefix, _, member = name.rpartition(".")
    if prefix not in ("", weights.__name__) or member not in weights.__members__:
        raise ConfigError(f"torchvision's {builder} has no weights {name!r}; it has "
                          f"{', '.join(f'{weights.__name__}.{key}' for key in weights.__members__)}")
    return weights[member]


def pretrained_tensors(model: dict) -> tuple[dict, str]:
    """The tensors by name of a model section's ``weights``, and where they come from: a state dict file, or
    torchvision's weights by name, read from torch's cache or downloaded into it (torchvision's
    ``get_state_dict``) where the machine is online."""
    from geomvol.catalogue import weights_is_file
    from geomvol.train.checkpoint import read_state_file

    weights = model["weights"]
    if weights_is_file(weights):
        loaded, source = read_state_file(weights), f"weights file {weights}"
    else:
        member = torchvision_weights(model["builder"], weights)
        try:
            loaded = member.get_state_dict(progress=False)
        except OSError as error:  # offline: urllib's URLError
            raise CheckpointError(f"torchvision's weights {member} are not in torch's cache ({torch.hub.get_dir()}) "
                                  f"and could not be downloaded from {member.url}: {error}; run once where the "
                                  f"machine is online, or give model.weights a state dict file") from error
        source = f"torchvision's weights {member}"
    return loaded, source


def pretrained_state(model: dict, network: nn.Module,
                     tensors: tuple[dict, str] | None = None) -> tuple[dict, list[str]]:
    """The state dict that a model section's ``weights`` (:func:`pretrained_tensors`, read here unless ``tensors``
    gives them) gives ``network`` (:func:`geomvol.train.checkpoint.fit_state`), and the tensors of another shape
    (a head for other classes) that keep ``network``'s own."""
    from geomvol.train.checkpoint import fit_state

    loaded, source = tensors or pretrained_tensors(model)
    return fit_state(loaded, network, source, keep_misshaped=True)


def _named_feature_maps(model: nn.Module) -> bool:
    """Whether the model names its feature maps itself (``feature_maps``), or they are its graph's nodes."""
    return hasattr(model, "feature_maps")


def feature_map(model: nn.Module, name: str, block_windows: dict | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """The model's feature map called ``name``: a function (B, *input) -> (B, n). ``block_windows`` (block name ->
    pooling) pools the blocks (the ResNet's: [height, width] windows, None: over the whole map; a graph node's:
    :mod:`geomvol.models.nodes`' pools)."""
    if not _named_feature_maps(model):
        return node_feature_map(model, [name], block_windows, getattr(model, "geomvol_leaf_modules", None))
    maps = model.feature_maps(block_windows)
    if name not in maps:
        raise ConfigError(f"model {type(model).__name__} has no feature map {name!r}; it has {sorted(maps)}")
    return maps[name]


def feature_maps_together(model: nn.Module, names: list[str], block_windows: dict | None = None):
    """The named feature maps side by side, (B, *input) -> (B, n_1 + ... + n_P), from one pass through a model
    that computes several in one (a graph's nodes, or the ResNet's ``blocks_together``); None for a model that
    does not, or for a single map."""
    if len(names) < 2:
        return None
    if not _named_feature_maps(model):
        return node_feature_map(model, names, block_windows, getattr(model, "geomvol_leaf_modules", None))
    if hasattr(model, "blocks_together"):
        return model.blocks_together(names, block_windows)
    return None


@torch.no_grad()
def feature_width(model: nn.Module, architecture: dict, name: str, block_windows: dict | None = None) -> int:
    """The flattened width n of feature map ``name``: the study's models' from the catalogue; any other's from
    one pass of a zero input through it (in eval mode, which changes no state and draws no random numbers)."""
    if architecture["name"] in STUDY_MODELS:
        return catalogue_feature_width(architecture, name, architecture["input_shape"], block_windows)
    parameter = next(model.parameters(), None)
    zeros = torch.zeros(1, *architecture["input_shape"], dtype=parameter.dtype if parameter is not None else None,
                        device=parameter.device if parameter is not None else None)
    training = model.training
    model.eval()
    try:
        return feature_map(model, name, block_windows)(zeros).shape[1]
    finally:
        model.train(training)
