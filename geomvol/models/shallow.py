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


class MemberwiseLinear(torch.autograd.Function):
    """Each member's linear layer on its own batch: x (S, B, d_in), weight (S, d_out, d_in), bias (S, d_out) ->
    (S, B, d_out), in one batched product, with the gradients a linear layer computes, member by member:
    grad_output^T x for the weight, grad_output W for the input, the sum over the batch for the bias.
    (Autograd's own backward of a batched product computes the weight's as (x^T grad_output)^T, which rounds
    differently in float32 and float64: tests/test_train.py, benchmarks/seeds.py --identity.)"""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        return torch.baddbmm(bias[:, None], x, weight.transpose(1, 2))

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        grad_x = torch.bmm(grad, weight) if ctx.needs_input_grad[0] else None
        return grad_x, torch.bmm(grad.transpose(1, 2), x), grad.sum(dim=1)


# A ShallowNet's parameters, in the order of its parameters() (and of an ensemble's stacked ones).
MEMBER_PARAMETERS = ("hidden_layer.weight", "hidden_layer.bias", "readout.weight", "readout.bias")


class ShallowEnsemble(nn.Module):
    """S shallow nets of one architecture as one model: each layer's weights stacked along a first dimension
    of size S, one batched matrix product per layer for all of them (a small net's step is mostly dispatch,
    not arithmetic: benchmarks/seeds.py measures 8 seeds at 3 times one, against 5.5 as separate processes).

    The input is the members' batches one after the other, (S * B, *input): rows [s B, (s + 1) B) go
    through member s only; so do the logits (S * B, C). ``members`` are the nets it starts from, in order;
    :meth:`member` gives one back as a :class:`ShallowNet` with its current weights. On the CPU a member's
    logits and gradients are bitwise those of the same net on its own (:class:`MemberwiseLinear`; measured
    for batches of 20 and more: below that, torch multiplies tiny matrices another way).
    """

    def __init__(self, members: list[ShallowNet]):
        super().__init__()
        self.config = members[0].config
        self.members = members
        self.phi = ACTIVATIONS[self.config.activation]

        def stacked(name: str) -> nn.Parameter:
            return nn.Parameter(torch.stack([member.get_parameter(name).detach() for member in members]))

        # in the order of MEMBER_PARAMETERS: optimiser states split and join member by member
        self.hidden_weight, self.hidden_bias, self.readout_weight, self.readout_bias = map(stacked, MEMBER_PARAMETERS)
        # (S, n, d), (S, n), (S, C, n), (S, C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (S * B, C) of the members' batches (S * B, *input), as :meth:`ShallowNet.forward` computes them."""
        members = self.hidden_weight.shape[0]
        x = x.flatten(1).reshape(members, -1, self.config.in_features)
        # the activation member by member: torch's vectorised float32 activations round the last elements of a
        # tensor differently from the rest, so a member's must be a tensor of its own to come out as alone
        hidden = torch.stack([self.phi(member) for member in
                              MemberwiseLinear.apply(x, self.hidden_weight, self.hidden_bias).unbind(0)])
        scale = math.sqrt(self.config.width)
        if self.config.scale_readout_bias:
            logits = MemberwiseLinear.apply(hidden, self.readout_weight, self.readout_bias) / scale
        else:
            logits = MemberwiseLinear.apply(hidden / scale, self.readout_weight, self.readout_bias)
        return logits.reshape(-1, logits.shape[-1])

    @torch.no_grad()
    def member(self, index: int) -> ShallowNet:
        """Member ``index`` as a ShallowNet with the ensemble's current weights."""
        net = self.members[index]
        for name, stacked in zip(MEMBER_PARAMETERS, self.parameters()):
            net.get_parameter(name).copy_(stacked[index])
        return net

    @torch.no_grad()
    def load_members(self, state_dicts: list[dict]) -> None:
        """Set every member's weights from its state dict (a ShallowNet's)."""
        for index, state in enumerate(state_dicts):
            self.members[index].load_state_dict(state)
        for name, stacked in zip(MEMBER_PARAMETERS, self.parameters()):
            stacked.copy_(torch.stack([member.get_parameter(name) for member in self.members]))
