"""The study's shallow network: one hidden layer, readout scaled by 1/sqrt(n).

    x                                 (d,)   the input, flattened (an image's pixels in order)
    z = W x + b                       (n,)   pre-activations, W: (n, d)
    h = phi(z)                        (n,)   the 'hidden' feature map
    logits = (R h + c) / sqrt(n)      (C,)   the study's (scale_readout_bias, the default)
    logits = R h / sqrt(n) + c        (C,)   with scale_readout_bias false

All weights and biases start i.i.d. N(0, 1), as in the study (for every data
set); ``weight_std`` scales the hidden weights' standard deviation, to keep wide
inputs' pre-activations small. With the pipeline's metric normalisation
g = J^T J / n of the 'hidden' map this is the seed paper's
Phi_j(x) = phi(w_j . x + b_j) / sqrt(n).

Saturation: in float64, sigmoid(z) rounds to exactly 1 for z above about 37, and
its derivative computed from it is exactly 0; such a unit adds nothing to J.
The full volume element over k = min(n, d) singular values is then 0 (log -inf)
wherever fewer than k units are unsaturated; keeping the top k << n (the
study's k = 10 for its digits plane) avoids that.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

ACTIVATIONS = {
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "erf": torch.erf,
    "gelu": nn.functional.gelu,
    "softplus": nn.functional.softplus,
    "relu": torch.relu,
}


@dataclass(frozen=True)
class ShallowConfig:
    in_features: int = 2
    width: int = 250
    n_classes: int = 2
    activation: str = "sigmoid"
    weight_std: float = 1.0
    scale_readout_bias: bool = True


class ShallowNet(nn.Module):
    def __init__(self, config: ShallowConfig):
        super().__init__()
        self.config = config
        self.hidden_layer = nn.Linear(config.in_features, config.width)
        self.readout = nn.Linear(config.width, config.n_classes)
        self.phi = ACTIVATIONS[config.activation]
        for parameter in self.parameters():
            nn.init.normal_(parameter, mean=0.0, std=1.0)
        if config.weight_std != 1.0:
            with torch.no_grad():
                self.hidden_layer.weight.mul_(config.weight_std)

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """The hidden post-activation phi(W x + b): (B, *input) -> (B, n), the input flattened to d values."""
        return self.phi(self.hidden_layer(x.flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits: (B, *input) -> (B, C): (R h + c) / sqrt(n), or R h / sqrt(n) + c."""
        scale = math.sqrt(self.config.width)
        if self.config.scale_readout_bias:
            return self.readout(self.hidden(x)) / scale
        return self.readout(self.hidden(x) / scale)

    def feature_maps(self, block_windows: dict | None = None) -> dict:
        """The named feature maps (``block_windows`` is for models with blocks)."""
        return {"hidden": self.hidden}
