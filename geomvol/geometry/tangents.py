r"""Forward-mode rules for layers that are linear in their input, with constant parameters.

A linear layer :math:`y = W x + b` has the tangent :math:`\dot y = W \dot x`
when only :math:`x` carries one. PyTorch's forward-mode formulas compute
:math:`W \dot x + \dot W x` and, under ``torch.func.vmap``, materialise the
missing :math:`\dot W` as a zero tensor and multiply by it: one wasted
matrix product or convolution of the whole batch per layer and direction
chunk, a quarter of the layer work of a plane's two JVPs (1 primal + 2
tangents + 1 wasted). Skipping it makes J V on a plane about 1.3x faster
(ResNet34 and the MNIST net, 128 points, CPU: benchmarks/probe_speed.py).

:func:`constant_parameter_tangents` is a ``TorchFunctionMode`` that routes
``linear``, ``conv1d/2d/3d`` and eval-mode ``batch_norm`` through
``torch.autograd.Function`` s whose ``jvp`` is the layer applied to the
tangent without its bias (for batch norm: scaling by
:math:`\gamma / \sqrt{\sigma^2 + \epsilon}`). It only does so when the
input is being differentiated and the parameters are not (they are not
functorch-wrapped tensors); anything else runs unchanged. The functions are
forward-mode only: inside the mode, use forward-mode AD.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

_CONV_ARGUMENTS = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
_LINEAR_IN_INPUT = {
    F.linear: ("input", "weight", "bias"),
    F.conv1d: _CONV_ARGUMENTS,
    F.conv2d: _CONV_ARGUMENTS,
    F.conv3d: _CONV_ARGUMENTS,
}
_BATCH_NORM_ARGUMENTS = ("input", "running_mean", "running_var", "weight", "bias", "training", "momentum", "eps")


def _differentiated(tensor) -> bool:
    """Whether a torch.func transform is tracking this tensor (it is wrapped)."""
    return isinstance(tensor, torch.Tensor) and torch._C._functorch.is_functorch_wrapped_tensor(tensor)


def _bind(names: tuple[str, ...], args: tuple, kwargs: dict) -> dict:
    bound = dict(zip(names, args))
    bound.update(kwargs)
    return bound


class _LinearInInput(torch.autograd.Function):
    """op(x, W, b, **options) with tangent op(x_t, W, None, **options).

    The parameters come in a tuple, which autograd.Function does not look
    into: as tensor arguments they would be given materialised zero tangents.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(op, x, parameters, options):
        return op(x, *parameters, **options)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.op, _, (ctx.weight, _), ctx.options = inputs

    @staticmethod
    def jvp(ctx, _op_tangent, x_tangent, _parameters_tangent, _options_tangent):
        return ctx.op(x_tangent, ctx.weight, None, **ctx.options)


class _EvalBatchNorm(torch.autograd.Function):
    """Batch norm with running statistics, tangent x_t * weight / sqrt(running_var + eps).

    Parameters and statistics come in a tuple, as for :class:`_LinearInInput`.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(x, parameters, eps):
        return F.batch_norm(x, *parameters, False, 0.0, eps)

    @staticmethod
    def setup_context(ctx, inputs, output):
        _, (_, ctx.running_var, ctx.weight, _), ctx.eps = inputs

    @staticmethod
    def jvp(ctx, x_tangent, _parameters_tangent, _eps_tangent):
        zero_mean = torch.zeros_like(ctx.running_var)
        return F.batch_norm(x_tangent, zero_mean, ctx.running_var, ctx.weight, None, False, 0.0, ctx.eps)


class constant_parameter_tangents(TorchFunctionMode):
    """Within this mode, linear/conv/eval batch-norm layers skip the zero tangents of their parameters."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _LINEAR_IN_INPUT:
            names = _LINEAR_IN_INPUT[func]
            bound = _bind(names, args, kwargs)
            if _differentiated(bound["input"]) and not any(map(_differentiated, (bound["weight"], bound.get("bias")))):
                options = {name: bound[name] for name in names[3:] if name in bound}
                return _LinearInInput.apply(func, bound["input"], (bound["weight"], bound.get("bias")), options)
        elif func is F.batch_norm:
            bound = _bind(_BATCH_NORM_ARGUMENTS, args, kwargs)
            parameters = [bound.get(name) for name in ("running_mean", "running_var", "weight", "bias")]
            if (
                not bound.get("training", False)
                and parameters[0] is not None
                and parameters[1] is not None
                and _differentiated(bound["input"])
                and not any(map(_differentiated, parameters))
            ):
                return _EvalBatchNorm.apply(bound["input"], tuple(parameters), bound.get("eps", 1e-5))
        return func(*args, **kwargs)
