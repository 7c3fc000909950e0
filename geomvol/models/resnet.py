"""ResNet34 for CIFAR-10 with GELU, as in the study.

torchvision's ResNet34 with the CIFAR stem (a 3x3 stride-1 convolution and no
max-pool) and, with ``activation='gelu'`` (the default), every ReLU replaced
by GELU; ``'relu'`` keeps torchvision's ReLUs. Feature maps, by name:

    pooled          (B, 3, 32, 32) -> (B, 512)   average-pooled output of the backbone
    block1..block4  (B, 3, 32, 32) -> (B, 64 / 128 / 256 / 512)   each residual stage, average-pooled
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torchvision
from torch import nn

from geomvol.config import SAME_FEATURE_MAPS


@dataclass(frozen=True)
class ResNetConfig:
    in_channels: int = 3
    n_classes: int = 10
    activation: str = "gelu"


def _replace_relu(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, nn.ReLU):
            setattr(module, name, nn.GELU())
        else:
            _replace_relu(child)


class CifarResNet34(nn.Module):
    def __init__(self, config: ResNetConfig = ResNetConfig()):
        super().__init__()
        self.config = config
        net = torchvision.models.resnet34(num_classes=config.n_classes)
        net.conv1 = nn.Conv2d(config.in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
        if config.activation == "gelu":
            _replace_relu(net)
        elif config.activation != "relu":
            raise ValueError(f"resnet34 activation must be gelu or relu, not {config.activation!r}")
        self.net = net

    def _blocks(self, x: torch.Tensor, last: int) -> list[torch.Tensor]:
        """Outputs of the residual stages 1..last, each (B, C, H, W)."""
        net = self.net
        x = net.relu(net.bn1(net.conv1(x)))
        outputs = []
        for stage in (net.layer1, net.layer2, net.layer3, net.layer4)[:last]:
            x = stage(x)
            outputs.append(x)
        return outputs

    def block(self, index: int):
        """Feature map of residual stage ``index`` (1-4), average-pooled: (B, 3, 32, 32) -> (B, C)."""

        def pooled_block(x: torch.Tensor) -> torch.Tensor:
            return self._blocks(x, index)[-1].mean(dim=(2, 3))

        return pooled_block

    def blocks_together(self, names: list[str]):
        """The named feature maps side by side, (B, 3, 32, 32) -> (B, n_1 + ... + n_P), from one pass
        through the trunk (what the deepest of them costs)."""
        indices = [int(self.feature_map_aliases.get(name, name)[len("block"):]) for name in names]

        def together(x: torch.Tensor) -> torch.Tensor:
            outputs = self._blocks(x, max(indices))
            return torch.cat([outputs[i - 1].mean(dim=(2, 3)) for i in indices], dim=1)

        return together

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """The 512-d backbone output: (B, 3, 32, 32) -> (B, 512)."""
        return self.block(4)(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits: (B, 3, 32, 32) -> (B, n_classes)."""
        return self.net.fc(self.pooled(x))

    def feature_maps(self) -> dict:
        return {"pooled": self.pooled, **{f"block{i}": self.block(i) for i in range(1, 5)}}

    # Feature maps that are the same function under two names: probes compute them once.
    feature_map_aliases = SAME_FEATURE_MAPS
