"""Models, built from a config section, each exposing named feature maps."""

from geomvol.models.registry import build_model, feature_map

__all__ = ["build_model", "feature_map"]
