"""Figures from combined stores (and the measures store), by kind (``geomvol figure KIND``); the ``draw_*``
functions draw a dataset in memory (a store opened with xarray, or the notebook API's) and return the figure."""

from geomvol.figures.curvature import draw_curvature, plot_curvature
from geomvol.figures.images import (
    draw_blocks, draw_lines, draw_planes, plot_blocks, plot_compare, plot_lines, plot_planes, plot_spectra,
)
from geomvol.figures.measures import draw_profiles, plot_measures, plot_profiles
from geomvol.figures.stretch import draw_stretch, plot_stretch
from geomvol.figures.volume_grid import draw_volume_grid, plot_volume_grid

PLOTS = {"volume": plot_volume_grid, "planes": plot_planes, "lines": plot_lines, "blocks": plot_blocks,
         "spectra": plot_spectra, "curvature": plot_curvature, "stretch": plot_stretch, "measures": plot_measures,
         "profiles": plot_profiles}

__all__ = ["PLOTS", "draw_blocks", "draw_curvature", "draw_lines", "draw_planes", "draw_profiles", "draw_stretch",
           "draw_volume_grid", "plot_blocks", "plot_compare", "plot_curvature", "plot_lines", "plot_measures", "plot_planes",
           "plot_profiles", "plot_spectra", "plot_stretch", "plot_volume_grid"]
