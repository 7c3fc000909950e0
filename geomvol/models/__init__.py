"""Models, built from a config section (the study's two, torchvision's and timm's builders by name, a python
factory), with feature maps by name: the study's own, or nodes of the model's torch.fx graph."""

from geomvol.models.registry import build_model, feature_map

__all__ = ["build_model", "feature_map"]
