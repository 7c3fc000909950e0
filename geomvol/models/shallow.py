"""The study's shallow network: one hidden layer, readout scaled by 1/sqrt(n).

    x                                 (d,)   the input, flattened (an image's pixels in order)
    z = W x + b                       (n,)   pre-activations, W: (n, d)
    h = phi(z)                        (n,)   the 'hidden' feature map
    logits = R h / sqrt(n) + c        (C,)

All weights and biases start i.i.d. N(0, 1), as in the study's sinusoid;
``weight_std`` scales the hidden weights' standard deviation for wide inputs
(784 pixels: with N(0, 1) weights most sigmoid units saturate to an exactly
zero derivative in float64, and the volume element is 0). With the
pipeline's metric normalisation g = J^T J / n of the 'hidden' map this is the
seed paper's Phi_j(x) = phi(w_j . x + b_j) / sqrt(n).
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
        """Logits: (B, *input) -> (B, C)."""
        return self.readout(self.hidden(x) / math.sqrt(self.config.width))

    def feature_maps(self) -> dict:
        return {"hidden": self.hidden}
