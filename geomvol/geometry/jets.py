r"""Second-order jets of a plane pushed through a network: the derivatives the curvature needs, in 6 streams.

On the plane :math:`x(u, v) = o + u\,e_1 + v\,e_2` a layer's input :math:`z` has the jet
:math:`(z, z_u, z_v, z_{uu}, z_{uv}, z_{vv})`; at the input it is :math:`(x, e_1, e_2, 0, 0, 0)`. The jet
travels through the network as one tensor of 6B rows, the six parts of the B points stacked along the
batch dimension, and each layer maps it by its own rule:

- a layer linear in its input (convolution, linear layer, average pooling, means, sums, reshapes,
  concatenation, the sum of two jets) maps every part alike, and its constant (bias, batch norm's shift)
  goes to the value rows only;
- an elementwise nonlinearity :math:`\varphi` takes :math:`y = \varphi(z)`,
  :math:`y_a = \varphi'(z) z_a`, :math:`y_{ab} = \varphi''(z) z_a z_b + \varphi'(z) z_{ab}`, with
  :math:`\varphi'` and :math:`\varphi''` from torch's own forward-mode derivatives of :math:`\varphi`.

That is the primal, two first-order and three second-order streams: where nested forward mode
(:func:`torch.func.jvp` of a jvp) carries nine, recomputing the first-order ones and both mixed ones,
and under ``vmap`` multiplies frozen weights' zero tangents through. A network with any other operation
on the jet (a max pool, a product of two jets, an index into the batch) raises
:class:`UnsupportedOperation`, and :mod:`geomvol.geometry.curvature` falls back to nested forward mode,
which handles anything.
"""

from __future__ import annotations

import warnings
import weakref

import torch
import torch.nn.functional as F
from torch.func import jvp
from torch.overrides import TorchFunctionMode

PARTS = 6  # value, d/du, d/dv, d2/du2, d2/dudv, d2/dv2


class UnsupportedOperation(RuntimeError):
    """The network applied to a jet an operation the jet rules do not cover."""


# Operations that map each row of their (first) input alone and linearly, with no constant term: the
# jet goes through them as a batch.
_ROW_LINEAR = {
    F.avg_pool1d, F.avg_pool2d, F.avg_pool3d, F.adaptive_avg_pool1d, F.adaptive_avg_pool2d,
    F.adaptive_avg_pool3d, torch.avg_pool1d, torch.flatten, torch.Tensor.flatten, torch.Tensor.reshape,
    torch.reshape, torch.Tensor.view, torch.Tensor.contiguous, torch.Tensor.clone, torch.Tensor.mean,
    torch.mean, torch.Tensor.sum, torch.sum, torch.neg, torch.Tensor.neg, torch.Tensor.__neg__,
}
# Elementwise nonlinearities, by the function that computes them.
_ELEMENTWISE = {
    torch.sigmoid, torch.Tensor.sigmoid, F.sigmoid, torch.tanh, torch.Tensor.tanh, F.tanh, torch.erf,
    torch.Tensor.erf, F.gelu, F.softplus, F.silu, F.elu, torch.relu, torch.Tensor.relu, F.relu,
}
_ADDITIONS = {torch.add, torch.Tensor.add, torch.Tensor.add_, torch.Tensor.__add__, torch.Tensor.__iadd__,
              torch.Tensor.__radd__}
# Passed through untouched: what reads a tensor's properties (and attributes, ``__get__``), not its values.
_PROPERTIES = {torch.Tensor.dim, torch.Tensor.size, torch.Tensor.is_floating_point}


class _JetMode(TorchFunctionMode):
    """Within this mode, tensors marked as jets of ``batch`` points follow the jet rules."""

    def __init__(self, batch: int):
        super().__init__()
        self.batch = batch
        self.jets: dict[int, weakref.ref] = {}  # by id: tensors compare by value, not identity

    def mark(self, tensor: torch.Tensor) -> torch.Tensor:
        self.jets[id(tensor)] = weakref.ref(tensor)
        return tensor

    def _is_jet(self, value) -> bool:
        if not isinstance(value, torch.Tensor):
            return False
        reference = self.jets.get(id(value))
        return reference is not None and reference() is value

    def _value_rows(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor[: self.batch]

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        flat = list(args) + list(kwargs.values())
        if isinstance(args[0] if args else None, (list, tuple)):
            flat += list(args[0])
        if not any(self._is_jet(value) for value in flat):
            return func(*args, **kwargs)
        if func in _PROPERTIES or getattr(func, "__name__", None) == "__get__":
            result = func(*args, **kwargs)
            if isinstance(result, torch.Tensor):  # an attribute that is a view of the jet (.T, .data, ...)
                raise UnsupportedOperation(f"the tensor attribute {func} of a jet")
            return result
        if func in _ROW_LINEAR:
            return self._rows_kept(args[0], func(*args, **kwargs), func)
        if func is torch.cat:
            tensors = args[0]
            dim = kwargs.get("dim", args[1] if len(args) > 1 else 0)
            if all(self._is_jet(t) for t in tensors) and dim % tensors[0].dim() != 0:
                return self.mark(func(*args, **kwargs))
        elif func in _ADDITIONS:
            return self._add(func, *args, **kwargs)
        elif func in (F.linear, torch.conv2d, F.conv2d, torch.conv1d, F.conv1d):
            return self._affine(func, *args, **kwargs)
        elif func is F.batch_norm:
            return self._batch_norm(*args, **kwargs)
        elif func in _ELEMENTWISE:
            return self._elementwise(func, *args, **kwargs)
        raise UnsupportedOperation(f"{getattr(func, '__name__', func)} on a jet")

    def _rows_kept(self, x: torch.Tensor, out: torch.Tensor, func) -> torch.Tensor:
        """``out`` of a row-linear operation on the jet ``x``, if it kept the rows apart (no reduction over, or
        reshape of, the batch dimension)."""
        if out.dim() == 0 or out.shape[0] != x.shape[0]:
            raise UnsupportedOperation(f"{getattr(func, '__name__', func)} across the batch dimension")
        return self.mark(out)

    def _add(self, func, first, second, *rest, **kwargs):
        if rest or kwargs or not (self._is_jet(first) and self._is_jet(second)):
            raise UnsupportedOperation("an addition other than of two jets")
        return self.mark(func(first, second))

    def _affine(self, func, x, weight, bias=None, *options, **kwargs):
        if not self._is_jet(x) or self._is_jet(weight) or self._is_jet(bias):
            raise UnsupportedOperation(f"{func.__name__} whose weights are a jet")
        kwargs.pop("bias", None)
        out = func(x, weight, None, *options, **kwargs)
        if bias is not None:
            value = self._value_rows(out)
            value += bias.reshape(-1, *([1] * (out.dim() - 2)))
        return self.mark(out)

    def _batch_norm(self, x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1,
                    eps=1e-5):
        if training or running_mean is None or running_var is None:
            raise UnsupportedOperation("batch norm with batch statistics (a model in training mode)")
        out = F.batch_norm(x, torch.zeros_like(running_mean), running_var, weight, None, False, 0.0, eps)
        scale = torch.rsqrt(running_var + eps) * (1 if weight is None else weight)
        shift = -running_mean * scale + (0 if bias is None else bias)
        value = self._value_rows(out)
        value += shift.reshape(-1, *([1] * (out.dim() - 2)))
        return self.mark(out)

    def _elementwise(self, func, z, *options, **kwargs):
        value, z_u, z_v, z_uu, z_uv, z_vv = z.chunk(PARTS)
        ones = torch.ones_like(value)
        kwargs.pop("inplace", None)  # the jet's value is read again below

        def phi(t):
            return func(t, *options, **kwargs)

        # (phi, phi') and their derivatives (phi', phi''), elementwise, by torch's own rules for phi
        (y, d1), (_, d2) = jvp(lambda t: jvp(phi, (t,), (ones,)), (value,), (ones,))
        out = torch.cat([y, d1 * z_u, d1 * z_v, d2 * z_u * z_u + d1 * z_uu, d2 * z_u * z_v + d1 * z_uv,
                         d2 * z_v * z_v + d1 * z_vv])
        return self.mark(out)


def plane_jet_derivatives(feature_map, x: torch.Tensor, e1: torch.Tensor, e2: torch.Tensor):
    """f_u, f_v, f_uu, f_uv, f_vv (B, n) of ``feature_map`` along the plane directions ``e1``, ``e2`` at ``x``
    (B, *input), by pushing the plane's jet through it; :class:`UnsupportedOperation` if it does something
    the jet rules do not cover."""
    batch = x.shape[0]
    zeros = torch.zeros_like(x)
    with warnings.catch_warnings(), _JetMode(batch) as mode:
        # the first forward-mode use loads torch's decompositions through the deprecated torch.jit.script
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)
        out = feature_map(mode.mark(torch.cat([x, e1, e2, zeros, zeros, zeros])))
        if not mode._is_jet(out):
            raise UnsupportedOperation("the feature map's output is not the jet of its input")
    parts = out.reshape(PARTS, batch, -1)
    return parts[1], parts[2], parts[3], parts[4], parts[5]
