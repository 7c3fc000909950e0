r"""A linear probe: multinomial logistic regression on frozen features, for self-supervised checkpoints.

Features are standardised with the mean and standard deviation of the
*training* features (or, with ``standardize=False``, taken as they are, as the
study's scikit-learn ``LogisticRegression()`` takes them), and exactly that map
is applied to every other feature it classifies (test images, points on a
plane); then

.. math::  \text{logits} = W \hat f + b, \qquad
           \min_{W, b} \; \frac{1}{N} \sum_n \text{CE}(W \hat f_n + b, y_n) + \frac{\alpha}{2} \lVert W \rVert^2 ,

solved full-batch by L-BFGS in float64 (deterministic for given features), at most ``max_iter``
iterations (scikit-learn's default, which the study's ``LogisticRegression()`` keeps, is 100). The bias is
not penalised; scikit-learn's ``LogisticRegression(C)`` minimises the same objective
with :math:`\alpha = 1 / (C N)` for N training features.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class LinearProbe:
    mean: torch.Tensor  # (D,) of the training features
    std: torch.Tensor  # (D,)
    weight: torch.Tensor  # (C, D)
    bias: torch.Tensor  # (C,)

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """(B, D) -> (B, C), in the dtype of ``features``."""
        standardised = (features - self.mean.to(features)) / self.std.to(features)
        return standardised @ self.weight.to(features).T + self.bias.to(features)

    def accuracy(self, features: torch.Tensor, labels: torch.Tensor) -> float:
        return (self.logits(features).argmax(dim=1) == labels.to(features.device)).double().mean().item()


def fit_linear_probe(features: torch.Tensor, labels: torch.Tensor, n_classes: int,
                     weight_decay: float = 1e-4, standardize: bool = True, max_iter: int = 500) -> LinearProbe:
    """Fit the probe on training features (N, D) and labels (N,)."""
    x = features.detach().double()
    labels = labels.to(x.device)
    if standardize:
        mean, std = x.mean(dim=0), x.std(dim=0).clamp_min(1e-12)
    else:
        mean, std = torch.zeros_like(x[0]), torch.ones_like(x[0])
    standardised = (x - mean) / std
    weight = torch.zeros(n_classes, x.shape[1], dtype=x.dtype, device=x.device, requires_grad=True)
    bias = torch.zeros(n_classes, dtype=x.dtype, device=x.device, requires_grad=True)
    # max_iter counts iterations, as scikit-learn's does, whatever its line searches evaluate (25 at most each)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=max_iter, max_eval=25 * max_iter, tolerance_grad=1e-9,
                                  tolerance_change=1e-12, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(standardised @ weight.T + bias, labels)
        loss = loss + 0.5 * weight_decay * weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return LinearProbe(mean, std, weight.detach(), bias.detach())
