"""The study's shallow network: one hidden layer, readout scaled by 1/sqrt(n).

    z = W x + b                       (n,)   pre-activations, W: (n, d)
    h = phi(z)                        (n,)   the 'hidden' feature map
    logits = R h / sqrt(n) + c        (C,)

All weights and biases start i.i.d. N(0, 1), as in the study. With the
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


class ShallowNet(nn.Module):
    def __init__(self, config: ShallowConfig):
        super().__init__()
        self.config = config
        self.hidden_layer = nn.Linear(config.in_features, config.width)
        self.readout = nn.Linear(config.width, config.n_classes)
        self.phi = ACTIVATIONS[config.activation]
        for parameter in self.parameters():
            nn.init.normal_(parameter, mean=0.0, std=1.0)

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """The hidden post-activation phi(W x + b): (B, d) -> (B, n)."""
        return self.phi(self.hidden_layer(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits: (B, d) -> (B, C)."""
        return self.readout(self.hidden(x) / math.sqrt(self.config.width))

    def feature_maps(self) -> dict:
        return {"hidden": self.hidden}
