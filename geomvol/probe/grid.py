"""Probe a checkpoint (or a model in memory) on a square grid over a 2-D input space (the sinusoid)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from geomvol.errors import ConfigError
from geomvol.geometry.boundary import crossing_classes
from geomvol.settings import GridSettings, ProbeSettings
from geomvol.probe.core import (
    CLASS_PAIR_COORD, EIGENVALUE_COORD, ENTROPY_ATTRS, MARGIN_ATTRS, ProbedModel, block_coords, boundary_attrs,
    checkpoint_coords, class_attrs, class_pair_attrs, curvature_attrs, curvatures, learned_boundary, load_probed_model,
    margin_gradients, network_outputs, notebook_settings, predictive_entropy, probability_margin, probed_module,
    stretch_attrs, stretch_fields, top_k_coord, volume_attrs, volumes_and_metrics,
)


def input_grid(low: float, high: float, resolution: int, dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """Axis values (R,) and points (R*R, 2) of the grid, row-major in (x2, x1): point [i*R + j] = (axis[j], axis[i])."""
    axis = torch.linspace(low, high, resolution, dtype=dtype)
    x2, x1 = torch.meshgrid(axis, axis, indexing="ij")
    return axis, torch.stack([x1.reshape(-1), x2.reshape(-1)], dim=1)


def grid_of_checkpoint(checkpoint_path: str | Path, settings: ProbeSettings) -> xr.Dataset:
    """:func:`measure_grid` of one checkpoint (the pipeline's probe of 2-D data)."""
    probed = load_probed_model(checkpoint_path, settings)
    input_shape = probed.state["model_spec"]["input_shape"]
    if input_shape != [2]:
        raise ConfigError(f"grid probing needs 2-D inputs; checkpoint {probed.path} takes inputs of shape {input_shape}")
    print(f"probing {probed.path} (epoch {probed.epoch}), device {probed.device}", file=sys.stderr)
    return measure_grid(probed, settings)


def probe_grid(model, feature_maps: list, *, low: float = -1.5, high: float = 1.5, resolution: int = 80,
               classes: list[str] | None = None, metric: str = "full", top_k: int | None = None,
               curvature: bool = False, dtype: str = "float64", device: str = "cpu",
               memory_budget_bytes: int = 1 << 30, seed: int = 0, epoch: int = 0) -> xr.Dataset:
    """The notebook API on a 2-D input space: :func:`measure_grid` of ``model`` (any ``nn.Module`` taking
    (B, 2) inputs and giving logits) on ``resolution`` x ``resolution`` points from ``low`` to ``high``;
    ``feature_maps``, ``classes``, ``seed`` and ``epoch`` as :func:`geomvol.probe.planes.probe_plane` takes
    them. The same variables as the pipeline's grid stores; the model given is left as it is."""
    settings = notebook_settings(feature_maps, metric=metric, top_k=top_k, dtype=dtype, device=device,
                                 curvature=curvature, memory_budget_bytes=memory_budget_bytes,
                                 grid=GridSettings(low, high, resolution))
    return measure_grid(probed_module(model, [2], settings, seed, epoch), settings, classes)


def measure_grid(probed: ProbedModel, settings: ProbeSettings, classes: list[str] | None = None) -> xr.Dataset:
    """Volume element per feature map, predicted class, entropy and probability margin of a model on the grid of
    ``settings``.

    Returns a Dataset with
    ``log10_volume`` on dims (seed, epoch, block, x2, x1) and the outputs on
    (seed, epoch, x2, x1); the learned decision boundary's crossings ``boundary_crossing`` (seed, epoch, edge,
    x2, x1) and each point's signed distance to it ``boundary_distance`` (:func:`geomvol.probe.core.learned_boundary`);
    seed and epoch of length one; with ``settings.curvature``, the Gaussian curvature ``curvature`` on (seed,
    epoch, block, x2, x1).
    """
    grid = settings.grid
    resolution = grid.resolution
    axis, points = input_grid(grid.low, grid.high, resolution, dtype=probed.dtype)
    points = points.to(probed.device)
    print(f"{points.shape[0]} grid points", file=sys.stderr)
    basis = torch.eye(2, dtype=probed.dtype, device=probed.device)
    volumes, metrics = volumes_and_metrics(probed, points, settings, basis)
    probabilities = network_outputs(probed, points)
    eigenvalues, stretch, gradient = stretch_fields(
        metrics, margin_gradients(probed, points, basis, probabilities.topk(2, dim=1).indices))

    def on_grid(t: torch.Tensor) -> np.ndarray:
        return t.detach().cpu().numpy().reshape(1, 1, resolution, resolution)

    dims = ("seed", "epoch", "x2", "x1")
    volume = np.stack([on_grid(volumes[name]) for name in settings.feature_maps], axis=2)
    predicted = probabilities.argmax(dim=1)
    leading = predicted.cpu().numpy().reshape(resolution, resolution)
    crossings, distance = learned_boundary(probed, axis, axis, leading, lambda coordinates: coordinates, np.eye(2),
                                           probabilities.shape[1])
    crossing_attrs, distance_attrs = boundary_attrs("the input grid", ("x1", "x2"))
    attrs = stretch_attrs("the input grid", "the input axes (x1, x2)")
    blocks = ("seed", "epoch", "block", "x2", "x1")
    variables = {
        "boundary_crossing": (("seed", "epoch", "edge", "x2", "x1"), crossings[None, None], crossing_attrs),
        "boundary_distance": (dims, distance[None, None], distance_attrs),
        "boundary_class_pair": (("seed", "epoch", "edge", "x2", "x1", "class_pair"),
                                crossing_classes(crossings, leading)[None, None], class_pair_attrs("the input grid")),
        "log10_metric_eigenvalue": ((*blocks, "eigenvalue"),
                                    eigenvalues.reshape(1, 1, -1, resolution, resolution, 2),
                                    attrs["log10_metric_eigenvalue"]),
        "stretch_angle": (blocks, stretch.reshape(1, 1, -1, resolution, resolution), attrs["stretch_angle"]),
        "margin_gradient_angle": (dims, gradient.reshape(1, 1, resolution, resolution), attrs["margin_gradient_angle"]),
    }
    if settings.curvature:
        gaussian = curvatures(probed, points, settings, basis)
        variables["curvature"] = (("seed", "epoch", "block", "x2", "x1"),
                                  np.stack([on_grid(gaussian[name]) for name in settings.feature_maps], axis=2),
                                  curvature_attrs("the input plane (u, v) = (x1, x2)"))
    return xr.Dataset(
        {
            "log10_volume": (("seed", "epoch", "block", "x2", "x1"), volume, volume_attrs(settings, 2, "the input plane")),
            "predicted_class": (dims, on_grid(predicted).astype(np.int16),
                                class_attrs(probabilities.shape[1], classes)),
            "entropy": (dims, on_grid(predictive_entropy(probabilities)), ENTROPY_ATTRS),
            "probability_margin": (dims, on_grid(probability_margin(probabilities)), MARGIN_ATTRS),
            **variables,
        },
        coords={
            **checkpoint_coords(probed),
            **block_coords(probed, settings),
            "top_k": top_k_coord(probed, settings, d=2, m=2),
            "x1": ("x1", axis.numpy(), {"long_name": "input coordinate x1", "units": "1"}),
            "x2": ("x2", axis.numpy(), {"long_name": "input coordinate x2", "units": "1"}),
            "edge": ("edge", np.array(["x1", "x2"], dtype=object),
                     {"long_name": "the grid axis a boundary crossing's edge runs along"}),
            "eigenvalue": EIGENVALUE_COORD,
            "class_pair": CLASS_PAIR_COORD,
        },
    )
