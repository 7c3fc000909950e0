r"""Training objectives: what one batch's loss is. The training loop is the same for all.

- ``cross_entropy``: supervised classification of the (augmented) batch.
- ``barlow_twins`` (Zbontar et al. 2021): two random views of each image go
  through the backbone's feature map and a projector; with :math:`\hat z` the
  batch-standardised embeddings of the two views and :math:`C = \hat z_1^\top \hat z_2 / B`
  their cross-correlation,

  .. math::  \mathcal{L} = \sum_i (1 - C_{ii})^2 + \lambda \sum_{i \ne j} C_{ij}^2 .
"""

from __future__ import annotations

import torch
from torch import nn

from geomvol.models import feature_map
from geomvol.train.augment import barlow_twins_views


def barlow_twins_loss(z1: torch.Tensor, z2: torch.Tensor, lambd: float) -> torch.Tensor:
    """The Barlow Twins loss of two views' embeddings z1, z2 of shape (B, D)."""
    batch = z1.shape[0]
    z1 = (z1 - z1.mean(dim=0)) / z1.std(dim=0, unbiased=False)  # BatchNorm1d(affine=False) in training mode
    z2 = (z2 - z2.mean(dim=0)) / z2.std(dim=0, unbiased=False)
    c = z1.T @ z2 / batch  # (D, D) cross-correlation
    on_diag = (torch.diagonal(c) - 1).pow(2).sum()
    off_diag = c.pow(2).sum() - torch.diagonal(c).pow(2).sum()
    return on_diag + lambd * off_diag


def projector(in_features: int, widths: list[int]) -> nn.Sequential:
    """Linear layers to ``widths`` (no bias), BatchNorm1d and ReLU between them, and a final
    BatchNorm1d(affine=False): the study's default [256] is Linear(512, 256, bias=False) + BatchNorm1d."""
    layers, width = [], in_features
    for hidden in widths[:-1]:
        layers += [nn.Linear(width, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU()]
        width = hidden
    layers += [nn.Linear(width, widths[-1], bias=False), nn.BatchNorm1d(widths[-1], affine=False)]
    return nn.Sequential(*layers)


class CrossEntropy(nn.Module):
    """Supervised: the network's logits on the augmented batch against its labels."""

    supervised = True

    def forward(self, model, batches, x, y) -> tuple[torch.Tensor, torch.Tensor]:
        logits = model(batches.inputs(x, train=True))
        return nn.functional.cross_entropy(logits, y), (logits.argmax(dim=1) == y).sum()


class BarlowTwins(nn.Module):
    """Self-supervised: two views of each image, the backbone's ``features`` map, the projector, the loss."""

    supervised = False

    def __init__(self, in_features: int, widths: list[int], lambd: float, features: str, blur_kernel: int | None):
        super().__init__()
        self.projector = projector(in_features, widths)
        self.lambd = lambd
        self.features = features
        self.views = barlow_twins_views(blur_kernel)

    def forward(self, model, batches, x, y) -> tuple[torch.Tensor, None]:
        view1, view2 = batches.views(x, self.views)
        backbone = feature_map(model, self.features)
        z1, z2 = self.projector(backbone(view1)), self.projector(backbone(view2))
        with torch.autocast(z1.device.type, enabled=False):  # the cross-correlation in float32 under bf16 autocast
            dtype = torch.promote_types(z1.dtype, torch.float32)  # bf16 up to float32; float64 stays
            return barlow_twins_loss(z1.to(dtype), z2.to(dtype), self.lambd), None


def build_objective(objective: dict, feature_width: int) -> nn.Module:
    """The objective of a resolved ``training.objective`` section (its parameters train with the model)."""
    if objective["name"] == "cross_entropy":
        return CrossEntropy()
    return BarlowTwins(feature_width, objective["projector"], objective["lambda"], objective["features"], objective["blur_kernel_size"])
