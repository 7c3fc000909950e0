"""Training with a checkpoint per saved epoch and exact resume."""

from geomvol.train.checkpoint import load_checkpoint
from geomvol.train.loop import fit

__all__ = ["fit", "load_checkpoint"]
