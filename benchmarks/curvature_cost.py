"""What the Gaussian curvature of a plane costs, in forward passes per point, against the full metric.

For the study's MNIST MLP (784 -> 2000 -> 10, sigmoid, its 'hidden' map) and ResNet34-GELU's blocks on
CIFAR-sized inputs (the study's pooling windows; and the four blocks side by side, as the probe measures
them, against block4's forward pass), on points of a plane through random inputs, on the CPU (and CUDA
when present), in float64: seconds per point of a forward pass, of the curvature
(geomvol.geometry.curvature.gaussian_curvature: the plane's jet pushed through the layers), of the nested
forward-mode derivatives it falls back to for operations the jets do not cover, and of the full-metric
volume element (geomvol.geometry.log_volume: the whole Jacobian), as ratios to the forward pass. Measured
in one run.

    python benchmarks/curvature_cost.py [--points 32] [--devices cpu cuda]
"""

from __future__ import annotations

import argparse
import time

import torch

from geomvol.catalogue import STUDY_BLOCK_WINDOWS
from geomvol.geometry import log_volume
from geomvol.geometry.curvature import gaussian_curvature, nested_derivatives
from geomvol.models import build_model, feature_map


def seconds(function, repeats: int = 2) -> float:
    function()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        function()
    return (time.perf_counter() - start) / repeats


def measure(name: str, features, x: torch.Tensor, full: bool, forward_of=None) -> None:
    """Ratios to the forward pass of ``forward_of`` (default: ``features`` itself)."""
    points = x.shape[0]
    d = x[0].numel()
    basis = torch.linalg.qr(torch.randn(d, 2, dtype=x.dtype, generator=torch.Generator().manual_seed(0))).Q.to(x)
    e1, e2 = (basis[:, i].reshape(x.shape[1:]).expand_as(x) for i in range(2))
    with torch.no_grad():
        forward = seconds(lambda: (forward_of or features)(x), repeats=4) / points
    curvature = seconds(lambda: gaussian_curvature(features, x, basis), repeats=3) / points
    nested = seconds(lambda: nested_derivatives(features, x, e1, e2)) / points
    line = (f"{name:<30} forward {forward * 1e3:7.2f} ms/point  curvature {curvature / forward:5.1f}  "
            f"nested forward mode {nested / forward:5.1f} forward passes")
    if full:
        volume = seconds(lambda: log_volume(features, x[:2]), repeats=1) / 2
        line += f"  full metric {volume / forward:7.1f}"
    print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=32)
    parser.add_argument("--devices", nargs="+", default=["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    args = parser.parse_args()
    torch.manual_seed(0)
    for device in args.devices:
        print(f"device {device}, {args.points} points, float64")
        mlp = build_model({"name": "shallow", "width": 2000, "activation": "sigmoid", "weight_std": 1.0,
                           "scale_readout_bias": True, "input_shape": [1, 28, 28], "n_classes": 10})
        mlp = mlp.double().to(device).eval().requires_grad_(False)
        measure("MNIST MLP hidden (n=2000)", feature_map(mlp, "hidden"),
                torch.rand(args.points, 1, 28, 28, dtype=torch.float64, device=device), full=True)
        resnet = build_model({"name": "resnet34", "activation": "gelu", "input_shape": [3, 32, 32], "n_classes": 10})
        resnet = resnet.double().to(device).eval().requires_grad_(False)
        x = torch.randn(args.points, 3, 32, 32, dtype=torch.float64, device=device)
        for block in ("block1", "block2", "block3", "block4"):
            measure(f"ResNet34 {block} (n=512)", feature_map(resnet, block, STUDY_BLOCK_WINDOWS), x,
                    full=block == "block1")
        blocks = ["block1", "block2", "block3", "block4"]
        measure("ResNet34 4 blocks together", resnet.blocks_together(blocks, STUDY_BLOCK_WINDOWS), x, full=False,
                forward_of=feature_map(resnet, "block4", STUDY_BLOCK_WINDOWS))


if __name__ == "__main__":
    main()
