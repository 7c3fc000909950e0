"""Figures from combined stores (and the measures store), by kind (``geomvol figure KIND``)."""

from geomvol.figures.curvature import plot_curvature
from geomvol.figures.images import plot_blocks, plot_compare, plot_lines, plot_planes, plot_spectra
from geomvol.figures.measures import plot_measures
from geomvol.figures.volume_grid import plot_volume_grid

PLOTS = {"volume": plot_volume_grid, "planes": plot_planes, "lines": plot_lines, "blocks": plot_blocks,
         "spectra": plot_spectra, "curvature": plot_curvature, "measures": plot_measures}

__all__ = ["PLOTS", "plot_blocks", "plot_compare", "plot_curvature", "plot_lines", "plot_measures", "plot_planes", "plot_spectra",
           "plot_volume_grid"]
