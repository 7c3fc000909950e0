"""Feature maps of any PyTorch model, named as torchvision names a model's layers: by the nodes of its
torch.fx graph (``torchvision.models.feature_extraction``), e.g. ``layer3``, ``layer4.1.conv2``,
``encoder.layers.encoder_layer_1``, ``avgpool``.

A node's output becomes a vector per input by its ``pool``:

    none          flattened as it is: (B, *shape) -> (B, prod(shape))
    global_mean   the mean over the positions: a (B, C, H, W) map's over H and W -> (B, C); a
                  (B, T, D) token sequence's over its T tokens -> (B, D); a (B, n) output as it is
    [h, w]        a (B, C, H, W) map average-pooled over h x w windows (stride = window), flattened
                  channel-major -> (B, C (H / h) (W / w))

Several nodes come from one pass through the model (one extractor returns them all). A model that
defines ``feature_maps(block_windows) -> {name: function}`` itself (the study's ``shallow`` and
``resnet34``, or a user's module that torch.fx cannot trace) is used through that method instead.
"""

from __future__ import annotations

import contextlib
import difflib
from typing import Callable

import torch
from torch import nn

from geomvol.errors import ConfigError

def _leaf_classes(model: nn.Module, leaf_modules) -> list[type]:
    """The classes of ``model``'s submodules whose class names are in ``leaf_modules`` (the tracer keeps
    them whole instead of tracing into them)."""
    wanted = set(leaf_modules or ())
    return sorted({type(module) for module in model.modules() if type(module).__name__ in wanted}, key=str)


def _tracer_kwargs(model: nn.Module, leaf_modules) -> dict:
    classes = _leaf_classes(model, leaf_modules)
    return {"leaf_modules": classes} if classes else {}


def node_names(model: nn.Module, leaf_modules=None) -> list[str]:
    """The names of the nodes of ``model``'s graph in eval mode, in order; a model torch.fx cannot trace
    raises :class:`ConfigError` saying what to do."""
    from torchvision.models.feature_extraction import get_graph_node_names

    try:
        return get_graph_node_names(model, tracer_kwargs=_tracer_kwargs(model, leaf_modules))[1]
    except Exception as error:  # the tracer's errors have no common class (TraceError, TypeError, ...)
        raise ConfigError(
            f"torch.fx cannot trace {type(model).__name__} to name its feature maps ({type(error).__name__}: "
            f"{error}). Name the submodule classes that do this in model.leaf_modules (the tracer keeps them "
            f"whole), or give the model a method feature_maps(block_windows) that returns {{name: function}}"
        ) from None


def feature_map_names(model: nn.Module, leaf_modules=None) -> list[str]:
    """Every name a feature map of ``model`` can have: its graph's nodes and each dotted prefix of them (a
    module, ``layer1``: the output of its last node), as torchvision's ``create_feature_extractor`` reads them."""
    names = {}
    for node in node_names(model, leaf_modules):
        parts = node.split(".")
        for end in range(1, len(parts) + 1):
            names.setdefault(".".join(parts[:end]))
    return list(names)


def check_nodes(model: nn.Module, nodes: list[str], key: str, leaf_modules=None) -> None:
    """Refuse a node ``model`` does not have, naming the config ``key`` and the closest names it does have."""
    names = feature_map_names(model, leaf_modules)
    for index, node in enumerate(nodes):
        if node not in names:
            close = difflib.get_close_matches(node, names, n=5, cutoff=0.5) or names[-5:]
            raise ConfigError(f"config key {key}.{index}: {type(model).__name__} has no node or module {node!r}; "
                              f"the closest it has: {', '.join(close)} (torchvision.models.feature_extraction."
                              f"get_graph_node_names lists its {len(names)} nodes)")


def pool_features(features: torch.Tensor, pool) -> torch.Tensor:
    """One node's output (B, ...) as a vector per input (B, n), by ``pool`` (module docstring)."""
    if pool == "none":
        return features.flatten(1)
    if pool == "global_mean":
        if features.dim() == 4:
            return features.mean(dim=(2, 3))
        if features.dim() == 3:
            return features.mean(dim=1)
        return features.flatten(1)
    if features.dim() != 4:
        raise ConfigError(f"a pooling window {list(pool)} needs a (B, C, H, W) map, not an output of shape "
                          f"{list(features.shape)}")
    height, width = pool
    if features.shape[2] % height or features.shape[3] % width:
        raise ConfigError(f"the pooling window {list(pool)} does not divide the {features.shape[2]} x "
                          f"{features.shape[3]} map")
    return nn.functional.avg_pool2d(features, kernel_size=(height, width)).flatten(1)


@contextlib.contextmanager
def differentiable_attention():
    """Attention computed by operations that have forward-mode derivatives: multi-head attention's fused fast
    path and the fused (flash, memory-efficient) scaled dot-product kernels have none, so they are switched off
    (torch's math kernel gives the same values)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with sdpa_kernel(SDPBackend.MATH):
            yield
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)


class NodeFeatures:
    """The outputs of some nodes of a model's graph, each pooled and flattened, side by side:
    (B, *input) -> (B, n_1 + ... + n_P), from one pass (of the graph of the model's mode when called: train or
    eval), attention computed as :func:`differentiable_attention` says."""

    def __init__(self, model: nn.Module, nodes: list[str], pools: list, leaf_modules=None):
        from torchvision.models.feature_extraction import create_feature_extractor

        self.model, self.nodes, self.pools = model, list(nodes), list(pools)
        self.extractor = create_feature_extractor(model, return_nodes=self.nodes,
                                                  tracer_kwargs=_tracer_kwargs(model, leaf_modules))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.extractor.training != self.model.training:  # the model's mode: its train or eval graph
            self.extractor.train(self.model.training)
        with differentiable_attention():
            outputs = self.extractor(x)
        return torch.cat([pool_features(outputs[node], pool) for node, pool in zip(self.nodes, self.pools)], dim=1)


def node_feature_map(model: nn.Module, nodes: list[str], pools: dict | None,
                     leaf_modules=None) -> Callable[[torch.Tensor], torch.Tensor]:
    """The named nodes' pooled outputs side by side, from one pass; ``pools`` maps a node to its pool
    (a node it lacks: ``none``)."""
    pools = pools or {}
    return NodeFeatures(model, nodes, [pools.get(node, "none") for node in nodes], leaf_modules)
