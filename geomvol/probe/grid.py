"""Probe a checkpoint on a square grid over a 2-D input space."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from geomvol.device import device_label, resolve_device
from geomvol.errors import ConfigError
from geomvol.geometry import log_volume
from geomvol.models import build_model, feature_map
from geomvol.provenance import sha256_file
from geomvol.store import metric_definition
from geomvol.train import load_checkpoint


def input_grid(low: float, high: float, resolution: int, dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """Axis values (R,) and points (R*R, 2) of the grid, row-major in (x2, x1): point [i*R + j] = (axis[j], axis[i])."""
    axis = torch.linspace(low, high, resolution, dtype=dtype)
    x2, x1 = torch.meshgrid(axis, axis, indexing="ij")
    return axis, torch.stack([x1.reshape(-1), x2.reshape(-1)], dim=1)


def predictive_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of softmax(logits) in nats, shape (B,)."""
    log_p = torch.log_softmax(logits, dim=1)
    return -(log_p.exp() * log_p).sum(dim=1)


def probe_checkpoint(checkpoint_path: str | Path, spec: dict) -> xr.Dataset:
    """Volume element, predicted class and entropy of one checkpoint on the grid of ``spec``.

    ``spec`` is the resolved ``probe`` config section. Returns a Dataset with
    dims (seed, epoch, x2, x1), seed and epoch of length one.
    """
    checkpoint_path = Path(checkpoint_path)
    state = load_checkpoint(checkpoint_path)
    device = resolve_device(spec["device"])
    dtype = getattr(torch, spec["dtype"])
    model = build_model(state["model_spec"])
    model.load_state_dict(state["model"])
    model.to(device=device, dtype=dtype).eval().requires_grad_(False)
    features = feature_map(model, spec["feature_map"])

    grid = spec["grid"]
    axis, points = input_grid(grid["low"], grid["high"], grid["resolution"], dtype=dtype)
    points = points.to(device)
    if points.shape[1] != state["model_spec"]["in_features"]:
        raise ConfigError(f"grid probing needs 2-D inputs; checkpoint {checkpoint_path} takes {state['model_spec']['in_features']}")
    basis = None if spec["metric"] == "full" else torch.eye(2, dtype=dtype, device=device)
    print(f"probing {checkpoint_path} (epoch {state['epoch']}) on {points.shape[0]} points, device {device}", file=sys.stderr)
    log_vol = log_volume(features, points, basis=basis, top_k=spec["top_k"], memory_budget_bytes=spec["memory_budget_bytes"])
    with torch.no_grad():
        logits = model(points)
    shape = (1, 1, grid["resolution"], grid["resolution"])
    width = math.prod(features(points[:1]).shape[1:])
    kept = min(width, 2) if spec["top_k"] is None else spec["top_k"]
    seed, epoch = state["train_spec"]["seed"], state["epoch"]
    n_classes = state["model_spec"]["n_classes"]

    def grid_values(t: torch.Tensor) -> np.ndarray:
        return t.detach().cpu().numpy().reshape(shape)

    dims = ("seed", "epoch", "x2", "x1")
    per_checkpoint = ("seed", "epoch")
    ds = xr.Dataset(
        {
            "log10_volume": (dims, grid_values(log_vol / math.log(10)), {
                "long_name": "log10 of the volume element sqrt(det g) of the pullback metric",
                "units": "1",
                "description": metric_definition(spec["metric"], spec["feature_map"], width, 2, kept),
                "metric": spec["metric"],
                "top_k": kept,
            }),
            "predicted_class": (dims, grid_values(logits.argmax(dim=1)).astype(np.int16), {
                "long_name": "class predicted by the network",
                "units": "1",
                "flag_values": list(range(n_classes)),
                "flag_meanings": " ".join(f"class_{c}" for c in range(n_classes)),
            }),
            "entropy": (dims, grid_values(predictive_entropy(logits)), {
                "long_name": "entropy of the predicted class distribution (softmax of the logits)",
                "units": "nat",
            }),
        },
        coords={
            "seed": ("seed", [seed], {"long_name": "training seed", "units": "1"}),
            "epoch": ("epoch", [epoch], {"long_name": "training epochs completed", "units": "1"}),
            "x1": ("x1", axis.numpy(), {"long_name": "input coordinate x1", "units": "1"}),
            "x2": ("x2", axis.numpy(), {"long_name": "input coordinate x2", "units": "1"}),
            "checkpoint_sha256": (per_checkpoint, np.array([[sha256_file(checkpoint_path)]], dtype=object),
                                  {"long_name": "sha256 of the probed checkpoint file"}),
            "checkpoint_file": (per_checkpoint, np.array([[str(checkpoint_path)]], dtype=object),
                                {"long_name": "path of the probed checkpoint file"}),
            "probe_device": (per_checkpoint, np.array([[device_label(device)]], dtype=object),
                             {"long_name": "torch device the probe ran on (and the GPU model)"}),
        },
    )
    return ds
