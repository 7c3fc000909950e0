r"""Training objectives: what one batch's loss is, for each member of the run (one network, or the seeds of
a group trained as one ensemble, whose batches come one after the other). The training loop is the same
for all.

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
    """Supervised: the network's logits on the augmented batch against its labels. Returns the loss to
    minimise, each member's mean cross-entropy on its batch, and the number each got right.

    For several members (an ensemble, whose batches come one after the other) the loss is the sum of the
    members' mean cross-entropies, whose gradient for each member is bitwise the gradient its mean
    cross-entropy has on its own (each member's log-softmax on its own rows, -1/B at each label); each
    member's reported loss is its own mean, computed as for the network on its own."""

    supervised = True

    def forward(self, model, batches, x, y) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logits = model(batches.inputs(x, train=True))
        members = batches.members
        correct = (logits.argmax(dim=1) == y).reshape(members, -1).sum(dim=1)
        if members == 1:
            loss = nn.functional.cross_entropy(logits, y)
            return loss, loss.detach().reshape(1), correct
        log_probabilities = torch.cat([nn.functional.log_softmax(member, dim=1) for member in logits.chunk(members)])
        picked = log_probabilities.gather(1, y[:, None]).reshape(members, -1)
        loss = (-picked.sum(dim=1) / picked.shape[1]).sum()
        with torch.no_grad():
            losses = torch.stack([nn.functional.nll_loss(member, target) for member, target in
                                  zip(log_probabilities.chunk(members), y.chunk(members))])
        return loss, losses, correct


class BarlowTwins(nn.Module):
    """Self-supervised: two views of each image, the backbone's ``features`` map, the projector, the loss
    (one member: a Barlow Twins run is never grouped)."""

    supervised = False

    def __init__(self, in_features: int, widths: list[int], lambd: float, features: str, blur_kernel: int | None):
        super().__init__()
        self.projector = projector(in_features, widths)
        self.lambd = lambd
        self.features = features
        self.backbone = None  # the model's `features` map, found on the first step (a plain attribute, not a module)
        from geomvol.train.augment import barlow_twins_views  # torchvision: imported for images only

        self.views = barlow_twins_views(blur_kernel)

    def forward(self, model, batches, x, y) -> tuple[torch.Tensor, torch.Tensor, None]:
        view1, view2 = batches.views(x, self.views)
        if self.backbone is None:  # once: a graph model's feature map traces the model
            self.backbone = feature_map(model, self.features)
        backbone = self.backbone
        z1, z2 = self.projector(backbone(view1)), self.projector(backbone(view2))
        with torch.autocast(z1.device.type, enabled=False):  # the cross-correlation in float32 under bf16 autocast
            dtype = torch.promote_types(z1.dtype, torch.float32)  # bf16 up to float32; float64 stays
            loss = barlow_twins_loss(z1.to(dtype), z2.to(dtype), self.lambd)
            return loss, loss.detach().reshape(1), None


def build_objective(objective: dict, feature_width: int) -> nn.Module:
    """The objective of a resolved ``training.objective`` section (its parameters train with the model)."""
    if objective["name"] == "cross_entropy":
        return CrossEntropy()
    return BarlowTwins(feature_width, objective["projector"], objective["lambda"], objective["features"], objective["blur_kernel_size"])
