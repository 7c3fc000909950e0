"""Volume elements of pullback metrics (see :mod:`geomvol.geometry.volume`) and
the analytic theory of shallow networks (:mod:`geomvol.geometry.analytic`)."""

from geomvol.geometry.volume import (
    jacobian,
    log_volume,
    log_volume_and_singular_values,
    log_volume_of_parts,
    PlaneMetric,
    plane_metric,
    plan_chunks,
    subspace_jacobian,
)

__all__ = ["jacobian", "log_volume", "log_volume_and_singular_values", "log_volume_of_parts", "plan_chunks",
           "plane_metric", "PlaneMetric", "subspace_jacobian"]
