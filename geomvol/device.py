"""Choosing the torch device from a config value."""

from __future__ import annotations

import torch

from geomvol.errors import GeomvolError


def resolve_device(name: str) -> torch.device:
    """'auto' is CUDA when available, else CPU; asking for CUDA without one is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise GeomvolError("device 'cuda' was requested but torch sees no CUDA device")
    return torch.device(name)
