"""Volume elements of pullback metrics (see :mod:`geomvol.geometry.volume`)."""

from geomvol.geometry.volume import jacobian, log_volume, log_volume_and_singular_values, subspace_jacobian

__all__ = ["jacobian", "log_volume", "log_volume_and_singular_values", "subspace_jacobian"]
