"""ResNet34 for CIFAR-10 with GELU, as in the study.

torchvision's ResNet34 with the CIFAR stem (a 3x3 stride-1 convolution and no
max-pool) and, with ``activation='gelu'`` (the default), every ReLU replaced
by GELU; ``'relu'`` keeps torchvision's ReLUs. ``init`` says how its weights start:
``'torchvision'`` keeps torchvision's (convolutions ``kaiming_normal_(mode='fan_out')``, the stem's
PyTorch's default, as it is replaced); ``'pytorch_default'`` gives every convolution PyTorch's own
default, ``kaiming_uniform_(a=sqrt(5))``, i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)), as the study's
kuangliu ResNet (``src/model/ResNet.py``) has it. Batch norms (weight 1, bias 0) and the linear
readout (PyTorch's default) are the same in both. Feature maps, by name:

    pooled          (B, 3, 32, 32) -> (B, 512)   the backbone's output: block4 averaged over its 4 x 4 map
    block1..block4  (B, 3, 32, 32) -> (B, n)     each residual stage's output (C x H x W), average-pooled
                                                 over windows [h, w] (stride = window) and flattened,
                                                 n = C (H / h) (W / w); without windows over the whole
                                                 map (n = 64, 128, 256, 512). The study's windows
                                                 (``geomvol.catalogue.STUDY_BLOCK_WINDOWS``) give n = 512
                                                 for every block.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torchvision
from torch import nn


@dataclass(frozen=True)
class ResNetConfig:
    in_channels: int = 3
    n_classes: int = 10
    activation: str = "gelu"
    init: str = "torchvision"


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
        if config.init == "pytorch_default":
            for module in net.modules():
                if isinstance(module, nn.Conv2d):
                    module.reset_parameters()
        elif config.init != "torchvision":
            raise ValueError(f"resnet34 init must be torchvision or pytorch_default, not {config.init!r}")
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

    def block(self, index: int, window: list[int] | None = None):
        """Feature map of residual stage ``index`` (1-4), average-pooled over ``window`` (None: the whole map)
        and flattened: (B, 3, 32, 32) -> (B, n)."""

        def pooled_block(x: torch.Tensor) -> torch.Tensor:
            return average_pool(self._blocks(x, index)[-1], window)

        return pooled_block

    def blocks_together(self, names: list[str], block_windows: dict | None = None):
        """The named feature maps side by side, (B, 3, 32, 32) -> (B, n_1 + ... + n_P), from one pass
        through the trunk (what the deepest of them costs)."""
        windows = block_windows or {}
        blocks = ["block4" if name == "pooled" else name for name in names]
        indices = [int(block[len("block"):]) for block in blocks]

        def together(x: torch.Tensor) -> torch.Tensor:
            outputs = self._blocks(x, max(indices))
            return torch.cat([average_pool(outputs[i - 1], None if name == "pooled" else windows.get(name))
                              for name, i in zip(names, indices)], dim=1)

        return together

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """The 512-d backbone output: (B, 3, 32, 32) -> (B, 512)."""
        return self.block(4)(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits: (B, 3, 32, 32) -> (B, n_classes)."""
        return self.net.fc(self.pooled(x))

    def feature_maps(self, block_windows: dict | None = None) -> dict:
        """The named feature maps, each block pooled over its window in ``block_windows`` (None: whole maps)."""
        windows = block_windows or {}
        return {"pooled": self.pooled, **{f"block{i}": self.block(i, windows.get(f"block{i}")) for i in range(1, 5)}}


def average_pool(features: torch.Tensor, window: list[int] | None) -> torch.Tensor:
    """(B, C, H, W) -> (B, C (H / h) (W / w)): the mean over each [h, w] window (stride = window), flattened
    channel-major; None, or a window as large as the map, is the mean over the whole map (B, C)."""
    if window is None or tuple(window) == tuple(features.shape[2:]):
        return features.mean(dim=(2, 3))
    height, width = window
    if features.shape[2] % height or features.shape[3] % width:
        raise ValueError(f"pooling window {list(window)} does not divide the {features.shape[2]} x {features.shape[3]} map")
    return nn.functional.avg_pool2d(features, kernel_size=(height, width)).flatten(1)
