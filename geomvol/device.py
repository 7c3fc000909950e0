"""Choosing the torch device from a config value, and naming it in outputs."""

from __future__ import annotations

import torch

from geomvol.errors import GeomvolError


def resolve_device(name: str) -> torch.device:
    """'auto' is CUDA when available, else CPU; asking for CUDA without one is an error.

    A CUDA device comes back with its index (``cuda:0``), so that outputs name the very card.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise GeomvolError(f"device {name!r} was requested but torch sees no CUDA device")
    device = torch.device(name)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device


def device_label(device: torch.device) -> str:
    """'cpu', or 'cuda:0 (NVIDIA H100 80GB HBM3)': what the store records as the probe's device."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)
