"""Speed and accuracy of geomvol's volume elements against the study's way of computing them.

    python benchmarks/probe_speed.py [--points 5] [--float64-points 2] [--budget-gib 1] [--profile]

For each model (the MNIST shallow net 784 -> 2000 sigmoid, 'hidden'; the CIFAR
ResNet34-GELU, 'pooled' 512-d; random weights) and the same points:

  (a) reference: the study's code path, a Jacobian of the batch-summed features
      by torch.autograd.functional.jacobian (one backward pass per output),
      then singular values
  (b) geomvol full metric (log_volume, basis=None)
  (c) geomvol subspace metric on a 2-D plane through three points
  (d) a plain forward pass

and prints seconds per point, the ratios (a)/(b) and (c)/(d) (also at a
plane grid's batch of --plane-points points, where it also times J V with
torch.func's own forward-mode rules against geomvol's constant-parameter
rules), and the largest |difference| in log10 volume of (a) and (b) against
a float64 computation.
Runs on 2 CPU threads, and again on CUDA when a GPU is visible, where it also
reports points per second at the largest batch the memory budget allows and
the peak memory that batch took (see benchmarks/gpu_check.sh).
"""

from __future__ import annotations

import argparse
import copy
import math
import resource
import subprocess
import sys
import time

import torch
from torch.func import jvp, vmap

from geomvol.geometry import log_volume, plan_chunks, subspace_jacobian
from geomvol.geometry.volume import measure_feature_map
from geomvol.models import build_model, feature_map
from geomvol.models.registry import model_spec
from geomvol.models.resnet import CifarResNet34

LN10 = math.log(10)


def reference_log_volume(features, x: torch.Tensor) -> torch.Tensor:
    """The study's route: jacobian of features(x).sum(0) with the default per-output loop, then SVD."""
    jac = torch.autograd.functional.jacobian(lambda z: features(z).sum(0), x)  # (n, B, *input)
    jac = jac.reshape(jac.shape[0], x.shape[0], -1).transpose(0, 1)  # (B, n, d)
    singular_values = torch.linalg.svdvals(jac)
    return torch.log(singular_values).sum(dim=1) - 0.5 * singular_values.shape[1] * math.log(jac.shape[1])


def plane_basis(x: torch.Tensor) -> torch.Tensor:
    """(d, 2) basis of the plane through the first three points (the study's e_u, e_v)."""
    p1, p2, p3 = (p.reshape(-1) for p in x[:3])
    centroid = (p1 + p2 + p3) / 3
    return torch.stack([p2 - p1, 2 * math.sqrt(3) * ((p1 + p2) / 2 - centroid)], dim=1)


def plain_subspace_jacobian(features, x: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """J V by torch.func's own forward-mode rules (vmap over directions of jvp), without geomvol's
    constant-parameter rules; for the speed-up those rules give."""
    def along(direction: torch.Tensor) -> torch.Tensor:
        return jvp(features, (x,), (direction.reshape(x.shape[1:]).expand_as(x),))[1].reshape(x.shape[0], -1)

    return vmap(along, in_dims=1, out_dims=2)(basis)


def timed(fn, device: torch.device, repeats: int = 1):
    """(best wall time over repeats, last result)."""
    best, result = math.inf, None
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        result = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best, result


def bench(name: str, model: torch.nn.Module, map_name: str, x: torch.Tensor, args, device: torch.device) -> None:
    model = model.to(device).eval().requires_grad_(False)
    features = feature_map(model, map_name)
    x = x.to(device)
    budget = int(args.budget_gib * 2**30)
    basis = plane_basis(x)
    points = x.shape[0]

    # warm-up: forward-mode AD loads its decompositions on first use
    log_volume(features, x[:1], basis=basis, memory_budget_bytes=budget)
    t_a, ref = timed(lambda: reference_log_volume(features, x), device)
    t_b, full = timed(lambda: log_volume(features, x, memory_budget_bytes=budget), device)
    t_c, _ = timed(lambda: log_volume(features, x, basis=basis, memory_budget_bytes=budget), device, repeats=3)
    with torch.no_grad():
        t_d, _ = timed(lambda: features(x), device, repeats=3)

    exact_model = copy.deepcopy(model).double()
    m = min(args.float64_points, points)
    exact = log_volume(feature_map(exact_model, map_name), x[:m].double(), memory_budget_bytes=budget)
    err_a = ((ref[:m].double() - exact).abs().max() / LN10).item()
    err_b = ((full[:m].double() - exact).abs().max() / LN10).item()
    diff_ab = ((ref - full).abs().max() / LN10).item()

    print(f"\n{name} on {device} ({points} points, float32, memory budget {args.budget_gib:g} GiB)")
    for label, seconds in [("(a) reference", t_a), ("(b) geomvol full", t_b), ("(c) geomvol subspace", t_c), ("(d) forward", t_d)]:
        print(f"  {label:<22}{seconds / points:>12.4f} s/point")
    print(f"  (a)/(b) = {t_a / t_b:.2f}    (c)/(d) = {t_c / t_d:.2f}")
    plane = (x[torch.arange(args.plane_points, device=device) % points]
             + 0.01 * torch.randn(args.plane_points, *x.shape[1:], device=device))
    t_c_plane, _ = timed(lambda: log_volume(features, plane, basis=basis, memory_budget_bytes=budget), device, repeats=3)
    with torch.no_grad():
        t_d_plane, _ = timed(lambda: features(plane), device, repeats=3)
    print(f"  (c)/(d) at {args.plane_points} points (a plane grid): {t_c_plane / t_d_plane:.2f}")
    t_rules, _ = timed(lambda: subspace_jacobian(features, plane, basis), device, repeats=3)
    t_plain, _ = timed(lambda: plain_subspace_jacobian(features, plane, basis), device, repeats=3)
    print(f"  J V at {args.plane_points} points: torch.func's rules / geomvol's constant-parameter rules = {t_plain / t_rules:.2f}")
    print(f"  max |log10 vol (a) - (b)| = {diff_ab:.2e}; against float64 on {m} points: (a) {err_a:.2e}, (b) {err_b:.2e}")

    if device.type == "cuda":
        # the largest batch whose Jacobians fit the budget in one go, and whether the peak stays under it
        n, activations = measure_feature_map(features, x)
        plan = plan_chunks(n, math.prod(x.shape[1:]), activations, x.element_size(), budget, batch=2**20)
        xs = x[torch.arange(plan.points, device=device) % points]
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        t, _ = timed(lambda: log_volume(features, xs, memory_budget_bytes=budget), device)
        peak = (torch.cuda.max_memory_allocated() - before) / 2**30
        print(f"  full metric, {plan.points} points (what the budget allows at once): {plan.points / t:.1f} points/s; "
              f"peak memory above the model {peak:.2f} GiB of the {args.budget_gib:g} GiB budget")

    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        with profile(activities=activities) as prof:
            log_volume(features, x[:1], memory_budget_bytes=budget)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=8))


def memory_probe(budget_gib: float) -> None:
    """In this (fresh) process: peak RSS growth of the ResNet's full metric on 2 points under a budget."""
    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = CifarResNet34().eval().requires_grad_(False)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        model.pooled(x)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    log_volume(model.pooled, x, memory_budget_bytes=int(budget_gib * 2**30))
    seconds = time.perf_counter() - start
    growth = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 2**20  # KiB -> GiB
    print(f"  budget {budget_gib:5.2f} GiB: peak RSS grew {growth:.2f} GiB, {seconds / 2:.2f} s/point")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=5, help="points per batch (the study used 5)")
    parser.add_argument("--float64-points", type=int, default=2, help="points checked against float64")
    parser.add_argument("--budget-gib", type=float, default=1.0, help="memory budget of geomvol's Jacobians")
    parser.add_argument("--plane-points", type=int, default=128, help="points for (c)/(d) at plane-grid scale")
    parser.add_argument("--models", default="mlp,resnet", help="comma-separated: mlp, resnet")
    parser.add_argument("--devices", default=None, help="comma-separated: cpu, cuda (default: cpu, and cuda when visible)")
    parser.add_argument("--profile", action="store_true", help="print the top operations of (b) on one point")
    parser.add_argument("--memory", action="store_true", help="peak memory of (b) on the ResNet under several budgets")
    parser.add_argument("--memory-probe", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_probe is not None:
        return memory_probe(args.memory_probe)
    if args.memory:
        print("CIFAR ResNet34-GELU full metric, each budget in a fresh process (CPU):")
        for budget in (0.25, 1.0, 4.0):
            subprocess.run([sys.executable, __file__, "--memory-probe", str(budget)], check=True)
        return
    torch.set_num_threads(2)

    generator = torch.Generator().manual_seed(0)
    if args.devices is None:
        devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    else:
        devices = [torch.device(name) for name in args.devices.split(",")]
    for device in devices:
        if "mlp" in args.models:
            torch.manual_seed(0)
            mlp = build_model(model_spec({"name": "shallow", "width": 2000, "activation": "sigmoid"}, [784], 10))
            bench("MNIST shallow net 784 -> 2000 sigmoid, 'hidden'", mlp, "hidden",
                  torch.rand(args.points, 784, generator=generator), args, device)
        if "resnet" in args.models:
            torch.manual_seed(0)
            bench("CIFAR ResNet34-GELU, 'pooled' (512-d)", CifarResNet34(), "pooled",
                  torch.randn(args.points, 3, 32, 32, generator=generator), args, device)


if __name__ == "__main__":
    main()
