"""What the Gaussian curvature of a plane costs, in forward passes per point, against the full metric.

For the study's MNIST MLP (784 -> 2000 -> 10, sigmoid, its 'hidden' map) and ResNet34-GELU's blocks on
CIFAR-sized inputs (the study's pooling windows), on points of a plane through random inputs, on the CPU
(and CUDA when present), in float64: seconds per point of a forward pass, of the curvature
(geomvol.geometry.curvature: three nested forward-mode derivatives) and of the full-metric volume element
(geomvol.geometry.log_volume: the whole Jacobian), and their ratios to the forward pass. Measured in one run.

    python benchmarks/curvature_cost.py [--points 16]
"""

from __future__ import annotations

import argparse
import time

import torch

from geomvol.catalogue import STUDY_BLOCK_WINDOWS
from geomvol.geometry import log_volume
from geomvol.geometry.curvature import gaussian_curvature
from geomvol.models import build_model, feature_map


def seconds(function, repeats: int = 2) -> float:
    function()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        function()
    return (time.perf_counter() - start) / repeats


def measure(name: str, features, x: torch.Tensor, full: bool) -> None:
    points = x.shape[0]
    d = x[0].numel()
    basis = torch.linalg.qr(torch.randn(d, 2, dtype=x.dtype, generator=torch.Generator().manual_seed(0))).Q.to(x)
    with torch.no_grad():
        forward = seconds(lambda: features(x)) / points
    curvature = seconds(lambda: gaussian_curvature(features, x, basis)) / points
    line = f"{name:<28} forward {forward * 1e3:8.2f} ms/point  curvature {curvature / forward:6.1f} forward passes"
    if full:
        volume = seconds(lambda: log_volume(features, x[:2]), repeats=1) / 2
        line += f"  full metric {volume / forward:8.1f} forward passes"
    print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=16)
    args = parser.parse_args()
    torch.manual_seed(0)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
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


if __name__ == "__main__":
    main()
