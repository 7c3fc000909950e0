"""Build a model from its config section; look up its feature maps by name."""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from geomvol.errors import ConfigError

from geomvol.models.shallow import ShallowConfig, ShallowNet


def model_spec(model: dict, input_shape: list[int], n_classes: int) -> dict:
    """Everything needed to rebuild the model: the config section plus the data's shapes."""
    return {**model, "input_shape": list(input_shape), "n_classes": n_classes}


def build_model(architecture: dict) -> nn.Module:
    """Build an (untrained) model from :func:`model_spec`'s output (keys it lacks take the config's defaults,
    which the model configs' own defaults are)."""
    if architecture["name"] == "shallow":
        given = {key: architecture[key] for key in ("width", "activation", "weight_std", "scale_readout_bias") if key in architecture}
        return ShallowNet(ShallowConfig(in_features=math.prod(architecture["input_shape"]), n_classes=architecture["n_classes"], **given))
    if architecture["name"] == "resnet34":
        from geomvol.models.resnet import CifarResNet34, ResNetConfig  # torchvision: imported only for it

        given = {key: architecture[key] for key in ("activation", "init") if key in architecture}
        return CifarResNet34(ResNetConfig(in_channels=architecture["input_shape"][0], n_classes=architecture["n_classes"],
                                          **given))
    raise ValueError(f"unknown model {architecture['name']!r}")


def feature_map(model: nn.Module, name: str, block_windows: dict | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """The model's feature map called ``name``: a function (B, *input) -> (B, n). ``block_windows`` (block name ->
    [height, width]) average-pools the ResNet's blocks over those windows; None: over their whole maps."""
    maps = model.feature_maps(block_windows)
    if name not in maps:
        raise ConfigError(f"model {type(model).__name__} has no feature map {name!r}; it has {sorted(maps)}")
    return maps[name]
