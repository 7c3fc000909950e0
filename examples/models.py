"""Model factories of your own, as the pipeline calls them: ``model: {name: python, factory:
"examples/models.py:small_cnn", kwargs: {...}}``. A factory returns a ``torch.nn.Module`` whose forward gives
one logit per class; its feature maps are the nodes of its torch.fx graph (``probe.feature_maps: [features.1,
...]``). The sha256 of this file is part of every checkpoint's and store's lineage: edit it, and the next run
retrains and reprobes what uses it.
"""

from torch import nn
from torchvision.models import VisionTransformer


class SmallCNN(nn.Module):
    """Two GELU convolutions, a global average and a linear readout: (B, C, H, W) -> (B, num_classes). Its
    nodes: features.1 and features.3 (after each GELU), features.5 (the pooled vector), classifier."""

    def __init__(self, width: int, num_classes: int, in_channels: int):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, kernel_size=3, padding=1), nn.GELU(),
            nn.Conv2d(width, 2 * width, kernel_size=3, stride=2, padding=1), nn.GELU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.classifier = nn.Linear(2 * width, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x))


def small_cnn(width: int = 16, num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """A :class:`SmallCNN`."""
    return SmallCNN(width, num_classes, in_channels)


def small_vit(image_size: int = 32, patch_size: int = 8, num_layers: int = 2, num_heads: int = 2,
              hidden_dim: int = 32, mlp_dim: int = 64, num_classes: int = 10) -> nn.Module:
    """torchvision's VisionTransformer, small (torchvision's own builders fix ViT-B/16's size). Nodes:
    encoder.layers.encoder_layer_0 .. _{num_layers - 1} (B, 1 + (image_size / patch_size)^2, hidden_dim),
    encoder.ln, heads."""
    return VisionTransformer(image_size=image_size, patch_size=patch_size, num_layers=num_layers, num_heads=num_heads,
                             hidden_dim=hidden_dim, mlp_dim=mlp_dim, num_classes=num_classes)
