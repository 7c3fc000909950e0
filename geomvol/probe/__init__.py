"""Probing checkpoints: volume element, predicted class and entropy on a grid."""

from geomvol.probe.grid import input_grid, probe_checkpoint

__all__ = ["input_grid", "probe_checkpoint"]
