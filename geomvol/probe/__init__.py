"""Probing checkpoints: volume element, predicted class and entropy on grids, planes and lines."""

from geomvol.probe.grid import input_grid, probe_grid
from geomvol.probe.planes import probe_images
from geomvol.settings import ProbeSettings


def probe_checkpoint(checkpoint_path, data_path, settings: ProbeSettings):
    """The probe of one checkpoint as an xarray Dataset: the input grid for 2-D data, planes and lines for images."""
    if settings.planes or settings.lines:
        return probe_images(checkpoint_path, data_path, settings)
    return probe_grid(checkpoint_path, settings)


__all__ = ["input_grid", "probe_checkpoint", "probe_grid", "probe_images"]
