"""Probing: volume element, curvature, predicted class and entropy on grids, planes and lines, of a
checkpoint (the pipeline's probe jobs, :func:`probe_checkpoint`) or of a model in memory (the notebook API:
:func:`probe_plane`, :func:`probe_line`, :func:`probe_grid`, also as ``geomvol.probe_plane`` etc.). Both
measure with the same code and return the same variables."""

from geomvol.probe.grid import grid_of_checkpoint, input_grid, probe_grid
from geomvol.probe.planes import images_of_checkpoint, probe_line, probe_plane
from geomvol.settings import ProbeSettings


def probe_checkpoint(checkpoint_path, data_path, settings: ProbeSettings):
    """The probe of one checkpoint as an xarray Dataset: the input grid for 2-D data, planes and lines for images."""
    if settings.planes or settings.lines:
        return images_of_checkpoint(checkpoint_path, data_path, settings)
    return grid_of_checkpoint(checkpoint_path, settings)


__all__ = ["grid_of_checkpoint", "images_of_checkpoint", "input_grid", "probe_checkpoint", "probe_grid", "probe_line",
           "probe_plane"]
