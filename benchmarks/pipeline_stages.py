"""Time a pipeline config (default: config.yaml) from an empty results/ directory, stage by stage.

    python benchmarks/pipeline_stages.py [--cores 2] [--configfile workflow/configs/smoke.yaml]

Runs the real Snakemake workflow in a temporary directory and prints, per
experiment and rule, the wall time Snakemake's `benchmark:` files recorded
(summed over the rule's jobs) next to the whole run's wall time and the 90 s
target of the default config.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
TARGET_S = 90.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--configfile", type=Path, default=ROOT / "config.yaml")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="geomvol-bench-") as workdir:
        command = [
            sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", workdir,
            "--configfile", str(args.configfile.resolve()), "--cores", str(args.cores), "--workflow-profile", "none", "--quiet",
        ]
        start = time.perf_counter()
        subprocess.run(command, check=True)
        total = time.perf_counter() - start

        per_rule = defaultdict(lambda: [0, 0.0, 0.0])  # jobs, summed wall s, max RSS MB
        for tsv in sorted(Path(workdir, "results").glob("*/benchmarks/*.tsv")):
            rule = tsv.stem.split("_s")[0] if tsv.stem.startswith(("train", "probe", "publish")) else tsv.stem
            rule = {"publish": "publish_checkpoint"}.get(rule, rule)
            row = pd.read_csv(tsv, sep="\t").iloc[0]
            entry = per_rule[(tsv.parent.parent.name, rule)]
            entry[0] += 1
            entry[1] += float(row["s"])
            entry[2] = max(entry[2], float(row["max_rss"]) if row["max_rss"] != "-" else 0.0)

    print(f"{'experiment':<20}{'stage':<20}{'jobs':>5}{'wall s (sum)':>14}{'max RSS MB':>12}")
    order = ("synthesize_dataset", "prepare_dataset", "train", "publish_checkpoint", "probe", "combine_probes", "measure")
    for (experiment, rule), (jobs, seconds, rss) in sorted(
        per_rule.items(), key=lambda item: (item[0][0], order.index(item[0][1]) if item[0][1] in order else len(order))
    ):
        print(f"{experiment:<20}{rule:<20}{jobs:>5}{seconds:>14.1f}{rss:>12.0f}")
    print(f"{'whole run':<40}{'':>5}{total:>14.1f}   (--cores {args.cores}; target of the default config "
          f"{TARGET_S:.0f} s: {total / TARGET_S:.2f}x of it)")


if __name__ == "__main__":
    main()
