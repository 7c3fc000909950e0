"""The 2-D sinusoid data set of the study.

Points are uniform on [low, high]^2; a point is of class 1 iff
x2 > amplitude * sin(frequency * x1 + phase), else class 0.
"""

from __future__ import annotations

import torch


def sinusoid_labels(x: torch.Tensor, amplitude: float, frequency: float, phase: float) -> torch.Tensor:
    """Class of each point, shape (B,) int64, for points x of shape (B, 2)."""
    return (x[:, 1] > amplitude * torch.sin(frequency * x[:, 0] + phase)).long()


def make_sinusoid(dataset: dict) -> dict[str, torch.Tensor]:
    """Draw the data set described by a resolved ``dataset`` config section."""
    generator = torch.Generator().manual_seed(dataset["seed"])
    low, high = dataset["low"], dataset["high"]
    x = low + (high - low) * torch.rand(dataset["n_points"], 2, generator=generator, dtype=torch.float64)
    y = sinusoid_labels(x, dataset["amplitude"], dataset["frequency"], dataset["phase"])
    return {"x": x.float(), "y": y}
