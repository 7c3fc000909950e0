"""What the volume element and the curvature cost per point for each model of workflow/configs/zoo.yaml,
against the model's own forward pass, measured in one run.

Each model is built as the pipeline builds it (untrained: the cost does not depend on the weights), on
CIFAR-10-sized inputs, and measured on points of a plane through three random images with the zoo's feature
maps, all of a model's from one pass, as a probe job measures them (geomvol.probe_plane's code): seconds per
point of the forward pass (logits), of the subspace volume element on the plane and of the Gaussian
curvature (where the zoo measures it), and their ratios to the forward pass. Run it from the checkout (the zoo's factories are files
under examples/).

    python benchmarks/zoo_costs.py [--resolution 4] [--dtype float32] [--device cpu]
"""

from __future__ import annotations

import argparse
import math

import torch
from curvature_cost import seconds  # the same timer (benchmarks/ is on the path when this runs as a script)

from geomvol.catalogue import class_count, input_shape
from geomvol.config import load_config
from geomvol.models import build_model
from geomvol.models.registry import model_spec
from geomvol.probe.core import curvatures, log10_volumes, network_outputs, notebook_settings, probed_module
from geomvol.probe.planes import plane_frame, plane_points, orthonormal_basis
from geomvol.settings import PlaneSettings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="workflow/configs/zoo.yaml")
    parser.add_argument("--resolution", type=int, default=4, help="points per axis of the plane (points: its square)")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    experiments = load_config(args.config)["experiments"]
    print(f"{'model':<12} {'params':>9} {'forward s/pt':>13} {'volume s/pt':>12} {'ratio':>7} "
          f"{'curvature s/pt':>15} {'ratio':>7}  feature maps")
    for name, experiment in experiments.items():
        shape = input_shape(experiment["dataset"])
        torch.manual_seed(0)
        model = build_model(model_spec(experiment["model"], list(shape), class_count(experiment["dataset"])))
        probe = experiment["probe"]
        entries = [{"node": node, "pool": probe["block_pooling"][node]} for node in probe["feature_maps"]]
        settings = notebook_settings(entries, metric="subspace", dtype=args.dtype, device=args.device,
                                     curvature=probe["curvature"], plane=PlaneSettings(1.0, args.resolution))
        probed = probed_module(model, shape, settings)
        anchors = torch.rand(3, math.prod(shape), dtype=probed.dtype, generator=torch.Generator().manual_seed(0))
        frame = plane_frame(*anchors.to(probed.device))
        axis = torch.linspace(-1, 1, args.resolution, dtype=probed.dtype, device=probed.device)
        points = plane_points(frame, axis, axis).reshape(-1, *shape)
        basis = orthonormal_basis(frame.e_u, frame.e_v)
        n = points.shape[0]
        forward = seconds(lambda: network_outputs(probed, points)) / n
        volume = seconds(lambda: log10_volumes(probed, points, settings, basis)) / n
        parameters = sum(p.numel() for p in model.parameters())
        if settings.curvature:
            curvature = seconds(lambda: curvatures(probed, points, settings, basis), repeats=1) / n
            measured = f"{curvature:>15.2e} {curvature / forward:>7.1f}"
        else:  # the zoo's probe measures none (its config says why)
            measured = f"{'-':>15} {'-':>7}"
        print(f"{name:<12} {parameters:>9} {forward:>13.2e} {volume:>12.2e} {volume / forward:>7.1f} {measured}  "
              f"{', '.join(probe['feature_maps'])}", flush=True)


if __name__ == "__main__":
    main()
