"""Measured costs of the image experiments, and what a config's image experiments will cost before anyone runs them.

    python benchmarks/image_costs.py [--configfile workflow/configs/paper.yaml] [--device cpu|cuda]
                                     [--train-images 256] [--points 2] [--tflops 100]

For each image experiment of the config, on --device (CPU: 2 threads), with random
images of the data set's shape and the config's model, batch size, augmentation,
probe metric, dtype and feature maps:

  - seconds per training image: one epoch over --train-images images through the
    pipeline's own training loop (augmentation, bf16 autocast on CUDA), and per
    test image (evaluation);
  - seconds per probe point for each feature map (the engine, on --points points),
    and per anchor for the spectra (the full Jacobian);
  - floating-point operations of the same work (torch's FlopCounterMode).

Then it extrapolates to the config: training = epochs x (n_train x s/image +
n_test x s/test image); probing = probed epochs x (points on planes and lines x
sum over distinct feature maps of s/point + anchors x s/anchor). It prints the
hours on the measured device, and the hours the counted operations take at
--tflops sustained (a GPU estimate where no GPU is at hand; an H100-class card
sustains very roughly 100 TFLOP/s on this mix of bf16 training and float32 probing).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from geomvol.catalogue import CLASSES, IMAGE_DATASETS, INPUT_SHAPES, PIXEL_MAX, SPLIT_SIZES, block_windows, feature_width, same_feature_maps
from geomvol.config import load_config
from geomvol.data.digits import N_DIGITS, train_test_indices
from geomvol.device import resolve_device
from geomvol.geometry import log_volume, log_volume_and_singular_values
from geomvol.models import build_model, feature_map
from geomvol.models.registry import model_spec
from geomvol.train.loop import Batches, build_optimizer, evaluate, train_one_epoch
from geomvol.train.objectives import build_objective
from probe_speed import timed  # benchmarks/ is the script's own directory

ROOT = Path(__file__).resolve().parent.parent


def counted_flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def timed_and_counted(fn, device: torch.device, count=None) -> tuple[float, int]:
    """(wall seconds, counted flops) of fn() (flops from a second, counted run of ``count`` or fn)."""
    seconds, _ = timed(fn, device)
    return seconds, counted_flops(count or fn)


def reverse_mode_flops(features, x: torch.Tensor) -> int:
    """Flops of one point's full Jacobian by reverse mode, counted as what it is, one forward pass and one
    backward pass per feature (FlopCounterMode cannot follow torch.func's vmapped VJPs through a module
    with nested submodules: its module tracker refuses autograd.grad)."""
    point = x[:1].clone().requires_grad_(True)
    forward = counted_flops(lambda: features(point))

    def one_backward():
        out = features(point)
        out[0, 0].backward()

    backward = counted_flops(one_backward) - forward
    return forward + features(x[:1]).shape[1] * backward


def training_cost(experiment: dict, n_images: int, device: torch.device) -> dict:
    """Seconds and flops per training image and per test image, from one epoch of the pipeline's loop."""
    name = experiment["dataset"]["name"]
    shape = INPUT_SHAPES[name]
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, PIXEL_MAX[name] + 1, (n_images, *shape), dtype=torch.uint8, generator=generator)
    labels = torch.arange(n_images) % 10
    channels = shape[0]
    data = {"x": images, "y": labels, "x_test": images, "y_test": labels, "pixel_max": PIXEL_MAX[name],
            "mean": torch.full((channels,), 0.5), "std": torch.full((channels,), 0.25)}
    training = experiment["training"]
    dtype = getattr(torch, training["dtype"])
    torch.manual_seed(0)
    batches = Batches(data, device, dtype, training["augmentation"], training["mixed_precision"], seeds=[0])
    spec = model_spec(experiment["model"], list(shape), len(CLASSES[name]))
    model = build_model(spec).to(device=device, dtype=dtype, memory_format=batches.memory_format)
    objective_spec = training["objective"]
    width = feature_width(spec, objective_spec["features"], shape) if "features" in objective_spec else 0
    objective = build_objective(objective_spec, width).to(device=device, dtype=dtype)
    optimizer = build_optimizer([*model.parameters(), *objective.parameters()], training["optimizer"])
    batch_size = min(training["batch_size"], n_images)

    def epoch():
        return train_one_epoch(model, objective, optimizer, batches, batch_size, False, [generator])

    epoch()  # warm-up (cuDNN autotuning, allocator)
    seconds, flops = timed_and_counted(epoch, device)
    eval_seconds, eval_flops = timed_and_counted(lambda: evaluate(model, batches), device)
    return {"s_per_image": seconds / n_images, "flops_per_image": flops / n_images,
            "s_per_test_image": eval_seconds / n_images, "flops_per_test_image": eval_flops / n_images,
            "supervised": objective.supervised}


def probe_cost(experiment: dict, n_points: int, device: torch.device) -> dict:
    """Seconds and flops per point of each distinct feature map (volume element), and per anchor (spectrum)."""
    name = experiment["dataset"]["name"]
    probe = experiment["probe"]
    dtype = getattr(torch, probe["dtype"])
    torch.manual_seed(0)
    shape = INPUT_SHAPES[name]
    model = build_model(model_spec(experiment["model"], list(shape), 10))
    model = model.to(device=device, dtype=dtype).eval().requires_grad_(False)
    x = torch.randn(n_points, *shape, dtype=dtype, device=device)
    basis = torch.linalg.qr(torch.randn(x[0].numel(), 2, dtype=dtype, device=device)).Q
    basis = basis if probe["metric"] == "subspace" else None
    aliases = same_feature_maps(experiment["model"], shape, probe["block_pooling"])
    distinct = sorted({aliases.get(f, f) for f in probe["feature_maps"]})
    costs = {}
    for function in distinct:
        features = feature_map(model, function, block_windows(probe["block_pooling"]))
        budget = probe["memory_budget_bytes"]
        log_volume(features, x[:1], basis=basis, memory_budget_bytes=budget)  # warm-up
        reverse = basis is None and features(x[:1]).shape[1] < x[0].numel()
        with torch.enable_grad():
            full_flops = reverse_mode_flops(features, x) if reverse or probe["spectra"] else None
        seconds, flops = timed_and_counted(lambda: log_volume(features, x, basis=basis, top_k=probe["top_k"],
                                                     memory_budget_bytes=budget), device,
                                  count=(lambda: None) if reverse else None)
        cost = {"s_per_point": seconds / n_points, "flops_per_point": full_flops if reverse else flops / n_points}
        if probe["spectra"]:
            seconds, _ = timed(lambda: log_volume_and_singular_values(features, x[:1], memory_budget_bytes=budget), device)
            cost.update(s_per_anchor=seconds, flops_per_anchor=full_flops)
        costs[function] = cost
    return costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configfile", type=Path, default=ROOT / "workflow" / "configs" / "paper.yaml")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--train-images", type=int, default=256, help="images of the timed training epoch")
    parser.add_argument("--points", type=int, default=2, help="probe points timed per feature map")
    parser.add_argument("--tflops", type=float, default=100.0, help="sustained TFLOP/s assumed for the GPU estimate")
    args = parser.parse_args()
    torch.set_num_threads(2)
    device = resolve_device(args.device)
    config = load_config(args.configfile)
    print(f"device {device}; config {args.configfile}")
    print(f"{'experiment':<14}{'s/train img':>12}{'train h':>10}{'probe h':>10}"
          f"{'total h':>10}{'PFLOP':>10}{f'h @{args.tflops:g}TF':>10}")
    for name, experiment in config["experiments"].items():
        dataset, probe, training = experiment["dataset"], experiment["probe"], experiment["training"]
        if dataset["name"] not in IMAGE_DATASETS:
            continue
        train = training_cost(experiment, args.train_images, device)
        probes = probe_cost(experiment, args.points, device)
        if dataset["split_rule"] == "torchvision":
            splits = SPLIT_SIZES[dataset["name"]]
        else:  # a split of one source: the digits, or torchvision's training file
            source = N_DIGITS if dataset["name"] == "digits" else SPLIT_SIZES[dataset["name"]][0]
            splits = tuple(len(part) for part in train_test_indices(source, dataset["test_fraction"], dataset["seed"],
                                                                      dataset["split_rule"]))
        n_train, n_test = dataset["n_train"] or splits[0], dataset["n_test"] or splits[1]
        epochs = training["epochs"]
        # supervised runs evaluate the test split every epoch; self-supervised ones encode both splits for the
        # linear probe at every probed epoch (a forward pass each, what evaluation costs)
        evaluated = epochs * n_test if train["supervised"] else 0
        encoded = 0 if train["supervised"] else len(probe["epochs"]) * (n_train + n_test)
        train_s = epochs * n_train * train["s_per_image"] + evaluated * train["s_per_test_image"]
        train_flops = epochs * n_train * train["flops_per_image"] + evaluated * train["flops_per_test_image"]
        points = len(probe["planes"]) * probe["plane"]["resolution"] ** 2 + len(probe["lines"]) * probe["line"]["points"]
        anchors = (3 * len(probe["planes"]) + 2 * len(probe["lines"])) if probe["spectra"] else 0
        probed = len(probe["epochs"])
        probe_s = probed * sum(points * c["s_per_point"] + anchors * c.get("s_per_anchor", 0) for c in probes.values())
        probe_flops = probed * sum(points * c["flops_per_point"] + anchors * c.get("flops_per_anchor", 0)
                                   for c in probes.values())
        probe_s += encoded * train["s_per_test_image"]
        probe_flops += encoded * train["flops_per_test_image"]
        per_map = ", ".join(f"{f} {c['s_per_point']:.3g}" for f, c in probes.items())
        flops = train_flops + probe_flops
        print(f"{name:<14}{train['s_per_image']:>12.2e}{train_s / 3600:>10.2f}{probe_s / 3600:>10.2f}"
              f"{(train_s + probe_s) / 3600:>10.2f}{flops / 1e15:>10.3g}{flops / (args.tflops * 1e12) / 3600:>10.3g}")
        print(f"    one epoch: {train_s / max(epochs, 1):.1f} s "
              f"({n_train} training{f' + {n_test} test' if evaluated else ''} images, batch {training['batch_size']}), "
              f"{train['flops_per_image'] / 1e9:.2f} GFLOP per training image")
        print(f"    probing: {points} points x {probed} epochs, metric {probe['metric']}, s/point per distinct map: "
              f"{per_map}; training {train_flops / 1e15:.3g} PFLOP, probing {probe_flops / 1e15:.3g} PFLOP")


if __name__ == "__main__":
    main()
