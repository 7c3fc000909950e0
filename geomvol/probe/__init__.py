"""Probing checkpoints: volume element, predicted class and entropy on grids, planes and lines."""

from geomvol.probe.grid import input_grid, probe_grid
from geomvol.probe.planes import probe_images


def probe_checkpoint(checkpoint_path, data_path, spec: dict):
    """The probe of one checkpoint as an xarray Dataset: the input grid for 2-D data, planes and lines for images."""
    if spec["planes"] or spec["lines"]:
        return probe_images(checkpoint_path, data_path, spec)
    return probe_grid(checkpoint_path, spec)


__all__ = ["input_grid", "probe_checkpoint", "probe_grid", "probe_images"]
