"""Many seeds for the price of one: seconds per epoch of S seeds of the default sinusoid net (2 -> 250 -> 2,
400 points, batches of 50, SGD with momentum, float32, one thread per process), trained as one group (one
process, one ensemble: geomvol.train.loop.TrainingRun) and as S separate processes side by side, and each
against one seed alone; and grouped with as many threads as the machine has cores. Prints one table,
measured in one run.

    python benchmarks/seeds.py [--seeds 1 4 8 16 32] [--epochs 40] [--device cpu]
    python benchmarks/seeds.py --identity [--identity-epochs N]

On a machine with C cores, S separate processes share C cores: their seconds per epoch is the wall time of
all S from the first one's start to the last one's end (process start-up left out), over the epochs.

--identity instead trains each default shallow experiment (the sinusoid, the digits plane) for its seeds
0..G-1 in groups of G = 2, 4, 8 and each seed alone, and prints, after epoch 1 and after the last epoch
(the config's, or --identity-epochs), whether every seed's checkpoint file is the same bytes grouped as
alone, and else the largest difference of a weight.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from geomvol.config import load_config
from geomvol.stages import prepare_dataset
from geomvol.train.loop import TrainingRun

ROOT = Path(__file__).resolve().parent.parent

# One seed's training in its own process: built, then (once every process is built) timed.
SOLO = """
import json, sys, time
from pathlib import Path
from geomvol.train.loop import TrainingRun
run, data, epochs, barrier = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
training = TrainingRun([run], data)
training.train_epoch()  # warm-up
print("ready", flush=True)
while not barrier.exists():
    time.sleep(0.001)
start = time.time()
for _ in range(epochs):
    training.train_epoch()
print(json.dumps([start, time.time()]), flush=True)
"""


def grouped_seconds(runs: list[dict], data: Path, epochs: int, threads: int = 1) -> float:
    runs = [{**run, "training": {**run["training"], "threads": threads}} for run in runs]
    training = TrainingRun(runs, data)
    training.train_epoch()  # warm-up
    start = time.perf_counter()
    for _ in range(epochs):
        training.train_epoch()
    return (time.perf_counter() - start) / epochs


def separate_seconds(runs: list[dict], data: Path, epochs: int, directory: Path) -> float:
    barrier = directory / f"go-{len(runs)}"
    processes = [subprocess.Popen([sys.executable, "-c", SOLO, json.dumps(run), str(data), str(epochs), str(barrier)],
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) for run in runs]
    for process in processes:
        assert process.stdout.readline().strip() == "ready"
    barrier.touch()
    spans = [json.loads(process.stdout.readline()) for process in processes]
    for process in processes:
        process.wait()
    return (max(end for _, end in spans) - min(start for start, _ in spans)) / epochs


def identity(epochs: int | None, device: str) -> None:
    from geomvol.train.checkpoint import fill_stores, load_checkpoint

    config = load_config(ROOT / "config.yaml")["experiments"]
    print(f"{'experiment':<14} {'group':>5} {'epoch':>6}  same files  largest |weight difference|")
    for name in ("sinusoid", "digits-plane"):
        experiment = config[name]
        last = epochs or experiment["training"]["epochs"]
        experiment["training"].update(device=device, threads=1, epochs=last, save_epochs=[1, last])
        with tempfile.TemporaryDirectory() as directory:
            directory = Path(directory)
            data = directory / "dataset.pt"
            prepare_dataset(experiment["dataset"], data, directory / "manifest.json")

            def runs(count):
                return [{"seed": seed, "model": experiment["model"], "training": experiment["training"]}
                        for seed in range(count)]

            alone = [fill_stores([run], data, [directory / f"alone-{run['seed']}"], [1, last])[0] for run in runs(8)]
            for size in (2, 4, 8):
                grouped = fill_stores(runs(size), data, [directory / f"g{size}-{seed}" for seed in range(size)],
                                      [1, last])
                for epoch in (1, last):
                    same = all(alone[seed][epoch].read_bytes() == grouped[seed][epoch].read_bytes()
                               for seed in range(size))
                    largest = max(float((load_checkpoint(alone[seed][epoch])["model"][key]
                                         - load_checkpoint(grouped[seed][epoch])["model"][key]).abs().max())
                                  for seed in range(size) for key in load_checkpoint(alone[seed][epoch])["model"])
                    print(f"{name:<14} {size:>5} {epoch:>6}  {'yes' if same else 'no':>10}  {largest:.3g}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 4, 8, 16, 32])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--identity", action="store_true", help="compare grouped and lone seeds' checkpoints instead")
    parser.add_argument("--identity-epochs", type=int, default=None, help="(--identity) epochs (default: the config's)")
    args = parser.parse_args()
    if args.identity:
        identity(args.identity_epochs, args.device)
        return
    experiment = load_config(ROOT / "config.yaml")["experiments"]["sinusoid"]
    experiment["training"].update(device=args.device, threads=1)
    with tempfile.TemporaryDirectory() as directory:
        directory = Path(directory)
        data = directory / "dataset.pt"
        prepare_dataset(experiment["dataset"], data, directory / "manifest.json")
        runs = [{"seed": seed, "model": experiment["model"], "training": experiment["training"]}
                for seed in range(max(args.seeds))]
        one = grouped_seconds(runs[:1], data, args.epochs)
        print(f"sinusoid net, {args.epochs} epochs, device {args.device}; one seed alone: {one * 1e3:.1f} ms per epoch")
        cores = os.cpu_count()
        print(f"{'seeds':>5}  {'grouped s/epoch':>15}  {'x one seed':>10}  {f'grouped, {cores} threads':>19}  "
              f"{'x one seed':>10}  {'separate s/epoch':>16}  {'x one seed':>10}")
        for count in args.seeds:
            grouped = grouped_seconds(runs[:count], data, args.epochs)
            threaded = grouped_seconds(runs[:count], data, args.epochs, threads=cores)
            separate = separate_seconds(runs[:count], data, args.epochs, directory)
            print(f"{count:>5}  {grouped:>15.4f}  {grouped / one:>10.2f}  {threaded:>19.4f}  {threaded / one:>10.2f}  "
                  f"{separate:>16.4f}  {separate / one:>10.2f}", flush=True)


if __name__ == "__main__":
    main()
