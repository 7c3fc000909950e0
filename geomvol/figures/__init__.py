"""Figures from combined stores."""

from geomvol.figures.volume_grid import plot_volume_grid

__all__ = ["plot_volume_grid"]
