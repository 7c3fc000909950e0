"""The ``geomvol`` command: one subcommand per pipeline stage (the Snakemake rules call these; each calls one
function of :mod:`geomvol.stages`), plus ``check-config`` and ``trace``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from geomvol import __version__
from geomvol.catalogue import FIGURES, OTHER_FIGURES, TORCHVISION_DATASETS
from geomvol.errors import GeomvolError


def _json(text: str) -> dict:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"not valid JSON: {error}") from error


def _boolean(text: str) -> bool:
    if text not in ("true", "false"):
        raise argparse.ArgumentTypeError(f"{text!r} is not true or false")
    return text == "true"


def cmd_check_config(args) -> None:
    from geomvol.config import load_config

    config = load_config(args.config, args.schema)
    if not args.skip_data:
        from geomvol.data.check import check_config_data

        check_config_data(config)
    for name, experiment in config["experiments"].items():
        print(f"{name}: dataset {experiment['dataset']['name']}, model {experiment['model']['name']}, "
              f"seeds {experiment['seeds']}, probe epochs {experiment['probe']['epochs']}")


def cmd_prepare(args) -> None:
    from geomvol.stages import prepare_dataset

    downloads = args.dataset["name"] in TORCHVISION_DATASETS
    record = prepare_dataset({**args.dataset, **({"download": args.download} if downloads else {})},
                             args.output, args.manifest)
    print(f"wrote {args.output} ({record['n_points']} points, classes {record['class_counts']}, sha256 {record['sha256']})")


def cmd_synthesize(args) -> None:
    from geomvol.stages import synthesize_dataset

    spec = args.spec
    files = synthesize_dataset(spec, args.root)
    shown = ", ".join(files) if len(files) <= 10 else f"{len(files)} files ({files[0]} ... {files[-1]})"
    print(f"wrote a synthetic {spec['format']} data set ({spec['n_train']} training, {spec['n_test']} test images) "
          f"in its on-disk layout to {args.root}: {shown}")


def _training_runs(args) -> list[dict]:
    """The training runs of a seed group's train or extend job: from its lineage (--lineage: the seeds, the model
    and the training section without its schedule and run-time settings), schedule and run-time settings."""
    lineage = dict(args.lineage)
    seeds = lineage.pop("seeds")
    training = {**lineage["training"], **args.schedule, "device": args.device, "threads": args.threads}
    return [{**lineage, "seed": seed, "training": training} for seed in seeds]


def _state_dirs(args, runs: list[dict]) -> list[Path]:
    missing = [run["seed"] for run in runs if str(run["seed"]) not in args.state_dirs]
    if missing:
        raise GeomvolError(f"--state-dirs names no checkpoint store for seed(s) {missing}")
    return [Path(args.state_dirs[str(run["seed"])]) for run in runs]


def cmd_train(args) -> None:
    from geomvol.stages import train

    runs = _training_runs(args)
    paths = train(runs, args.data, args.manifest, args.output_dir, _state_dirs(args, runs))
    print(f"wrote {sum(map(len, paths.values()))} checkpoints of seeds {sorted(paths)} to {args.output_dir}")


def cmd_extend(args) -> None:
    from geomvol.stages import extend_training

    runs = _training_runs(args)
    extend_training(runs, args.data, args.manifest, args.epoch, args.output_dir, _state_dirs(args, runs))
    print(f"wrote epoch {args.epoch} of seeds {[run['seed'] for run in runs]} to {args.output_dir}")


def cmd_publish(args) -> None:
    from geomvol.stages import publish_checkpoint

    publish_checkpoint(args.source, args.seed, args.epoch, args.output)
    print(f"wrote {args.output}")


def cmd_import(args) -> None:
    from geomvol.stages import import_checkpoint

    import_checkpoint(args.source, args.spec, args.data, args.manifest, args.output)
    print(f"wrote {args.output} from {args.source}")


def cmd_metrics(args) -> None:
    from geomvol.stages import training_metrics

    training_metrics(args.source, args.seed, args.epoch, args.output)
    print(f"wrote {args.output}")


def cmd_probe(args) -> None:
    from geomvol.stages import probe

    probe(args.checkpoints, args.data, args.manifest, {**args.probe, "device": args.device,
                                         "memory_budget_bytes": args.memory_budget_bytes}, args.output)
    print(f"wrote {args.output}")


def cmd_combine(args) -> None:
    from geomvol.stages import combine_probes

    ds = combine_probes(args.probes, args.experiment, args.experiment_config, args.data, args.manifest, args.output)
    print(f"wrote {args.output}: {dict(ds.sizes)}")


def cmd_measure(args) -> None:
    from geomvol.stages import measure

    ds = measure(args.store, args.sections, args.output, args.compared)
    print(f"wrote {args.output}: {', '.join(name for name in ds.data_vars if name.endswith('_mean'))}")


def cmd_summary(args) -> None:
    from geomvol.stages import summarise

    table = summarise(args.stores, args.output)
    print(f"wrote {args.output}: {len(table)} rows of {table['experiment'].nunique()} experiments")


def cmd_figure(args) -> None:
    from geomvol.stages import figure

    if not len(args.kind) == len(args.png) == len(args.pdf):
        raise GeomvolError(f"figure: {len(args.kind)} kinds need as many --png and --pdf paths (given "
                           f"{len(args.png)} and {len(args.pdf)})")
    for kind, png, pdf in zip(args.kind, args.png, args.pdf):
        figure(kind, args.store, png, pdf, other=args.other, seed=args.seed, style=args.style)
        print(f"wrote {png} and {pdf}")


def cmd_trace(args) -> None:
    from geomvol.lineage import format_trace, trace

    steps = trace(args.path, args.configfile)
    print(format_trace(steps))
    broken = [step for step in steps if step.status in ("CHANGED", "MISSING", "DISAGREES")]
    if broken:
        raise GeomvolError("; ".join(
            f"{step.path} is missing" if step.on_disk is None else
            f"{step.path}: {step.disagreement}" if step.disagreement is not None else
            f"{step.path} no longer matches the sha256 recorded downstream (recorded {step.recorded}, on disk {step.on_disk})"
            for step in broken))
    print(f"all {sum(step.recorded is not None for step in steps)} recorded checksums match the files on disk")


def _add_gpus_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gpus", type=int, choices=[0, 1], default=None,
                        help="GPUs this job may use (the rule's gpu resource): 0 hides them all; 1 claims a card of "
                             "its own among those listed (CUDA_VISIBLE_DEVICES or nvidia-smi). Default: leave as is")


def _add_training_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lineage", type=_json, required=True,
                        help="JSON with the seeds of the group (trained together, as one ensemble when there are "
                             "several), the model and the training section without its schedule and run-time "
                             "settings (geomvol.config.group_lineage)")
    parser.add_argument("--schedule", type=_json, required=True, help='JSON {"epochs": N, "save_epochs": ...}')
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="cpu", help="where to train")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--manifest", type=Path, required=True, help="the data set's manifest (its recorded sha256)")
    parser.add_argument("--state-dirs", type=_json, required=True,
                        help='JSON {"seed": "its checkpoint store", ...}: where each seed keeps every saved epoch, '
                             "across kills and reruns (one keyed directory per lineage inside)")
    _add_gpus_option(parser)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="geomvol", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # keeps --version unwrapped
    parser.add_argument("--version", action="version", version=f"geomvol {__version__} ({Path(__file__).parent})",
                        help="print the version and the directory the package was imported from, and exit")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("check-config", help="validate a pipeline config and list its experiments")
    p.add_argument("config", type=Path)
    p.add_argument("--schema", type=Path, default=None, help="JSON Schema (default: the one geomvol ships)")
    p.add_argument("--skip-data", action="store_true",
                   help="check the config alone, not what the data must provide (data roots' files, anchor images); "
                        "this part imports no torch")
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser("prepare", help="make a data set and its manifest")
    p.add_argument("--dataset", type=_json, required=True,
                   help="resolved `dataset` config section without its run-time key (download), as JSON")
    p.add_argument("--download", type=_boolean, default=False,
                   help="(a data root) let torchvision fetch the data set there when it is missing: true or false")
    p.add_argument("--output", type=Path, required=True)
    p.add_argument("--manifest", type=Path, required=True)
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("synthesize", help="write a small synthetic data set in its torchvision class's on-disk "
                                          "layout (MNIST, CIFAR10, ..., ImageFolder)")
    p.add_argument("--spec", type=_json, required=True,
                   help="JSON: the stand-in's format (a torchvision class, or ImageFolder), n_train, n_test, seed; an "
                        "ImageFolder's shape [C, H, W] and layout (folders, flat); geomvol.catalogue.synthetic_spec")
    p.add_argument("--root", type=Path, required=True, help="directory to create (the data root)")
    p.set_defaults(func=cmd_synthesize)

    p = sub.add_parser("train", help="train a seed group into its checkpoint stores (computing only the saved epochs "
                                     "they lack) and copy every saved epoch of every seed")
    _add_training_options(p)
    p.add_argument("--output-dir", type=Path, required=True)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("extend", help="make one more saved epoch of a seed group from the nearest earlier "
                                      "checkpoints in their stores")
    _add_training_options(p)
    p.add_argument("--epoch", type=int, required=True, help="the saved epoch to make")
    p.add_argument("--output-dir", type=Path, required=True, help="where to copy its checkpoints")
    p.set_defaults(func=cmd_extend)

    for name, function, helped in (
            ("publish", cmd_publish, "copy one seed's checkpoint of one epoch out of its group's directory, checked "
                                     "against the sha256 recorded there"),
            ("metrics", cmd_metrics, "the per-epoch loss and accuracy one seed's checkpoint holds, as TSV")):
        p = sub.add_parser(name, help=helped)
        p.add_argument("--source", type=Path, required=True,
                       help="a seed group's training or extension directory (with its manifest.json)")
        p.add_argument("--seed", type=int, required=True)
        p.add_argument("--epoch", type=int, required=True)
        p.add_argument("--output", type=Path, required=True)
        p.set_defaults(func=function)

    p = sub.add_parser("import-checkpoint", help="a checkpoint trained elsewhere, fitted to the model and written "
                                                 "as a geomvol checkpoint for the probe")
    p.add_argument("--source", type=Path, required=True, help="the file: a state dict, or a whole module")
    p.add_argument("--spec", type=_json, required=True,
                   help="seed, model section, epoch and file (geomvol.config.import_spec), as JSON")
    p.add_argument("--data", type=Path, required=True, help="the prepared data set (the model's input shape, classes)")
    p.add_argument("--manifest", type=Path, required=True, help="the data set's manifest (its recorded sha256)")
    p.add_argument("--output", type=Path, required=True)
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("probe", help="volume element, class and entropy of the checkpoints of one epoch on a grid, planes or lines")
    p.add_argument("--checkpoints", type=Path, nargs="+", required=True,
                   help="checkpoints of one epoch, of one seed or of the seeds of a group (one store for all)")
    p.add_argument("--data", type=Path, required=True, help="the prepared data set (anchor images)")
    p.add_argument("--manifest", type=Path, required=True, help="the data set's manifest (its recorded sha256)")
    p.add_argument("--probe", type=_json, required=True,
                   help="resolved `probe` config section without its run-time keys (device, memory_budget_bytes), the "
                        "probed epochs and compare_with (geomvol.config.probe_job_settings), as JSON")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="where to probe")
    p.add_argument("--memory-budget-bytes", type=int, default=2**30,
                   help="upper bound on the Jacobian memory held at once")
    p.add_argument("--output", type=Path, required=True)
    _add_gpus_option(p)
    p.set_defaults(func=cmd_probe)

    p = sub.add_parser("combine", help="join an experiment's probe stores into one Zarr store")
    p.add_argument("probes", type=Path, nargs="+")
    p.add_argument("--experiment", required=True)
    p.add_argument("--experiment-config", type=_json, required=True,
                   help="what the experiment's results depend on (geomvol.config.result_config), as JSON")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--manifest", type=Path, required=True)
    p.add_argument("--output", type=Path, required=True)
    p.set_defaults(func=cmd_combine)

    p = sub.add_parser("measure", help="magnification measures of a combined store, per seed and across seeds")
    p.add_argument("--store", type=Path, required=True, help="the experiment's combined volume store")
    p.add_argument("--sections", type=_json, required=True,
                   help="JSON with the resolved measures and dataset sections")
    p.add_argument("--compared", type=Path, nargs="?", default=None,
                   help="the combined store of the experiment of probe.compare_with (none: no comparison)")
    p.add_argument("--output", type=Path, required=True)
    p.set_defaults(func=cmd_measure)

    p = sub.add_parser("summary", help="one table of what a reader would quote, per experiment, field, block and "
                                       "epoch, from the experiments' measures stores")
    p.add_argument("stores", type=Path, nargs="+", help="the measures stores (results/<experiment>/measures.zarr)")
    p.add_argument("--output", type=Path, required=True, help="the TSV to write (results/summary.tsv)")
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser("figure", help="draw figures from a combined store: volume (2-D input grid), planes, lines, "
                                      "blocks, spectra (singular values at the anchors), compare (two stores on the "
                                      "same plane), or measures and profiles (from the measures store); several "
                                      "kinds of one store in one call, each with its --png and --pdf in order")
    p.add_argument("kind", nargs="+", choices=[*FIGURES, *OTHER_FIGURES])
    p.add_argument("--store", type=Path, required=True)
    p.add_argument("--other", type=Path, help="(compare) the store drawn beside --store")
    p.add_argument("--png", type=Path, nargs="+", required=True)
    p.add_argument("--pdf", type=Path, nargs="+", required=True)
    p.add_argument("--seed", type=int, default=None, help="which seed to draw (default: the first)")
    p.add_argument("--style", type=_json, default=None,
                   help="resolved `figures` config section, as JSON (colour_scale, entropy_units); default: its defaults")
    p.set_defaults(func=cmd_figure)
    p = sub.add_parser("trace", help="the lineage of a figure, store, checkpoint or data set, back to the config and "
                                     "raw data; exits 1 naming any file that no longer matches its recorded sha256")
    p.add_argument("path", type=Path)
    p.add_argument("--configfile", type=Path, help="also compare the experiment's recorded config with this file's")
    p.set_defaults(func=cmd_trace)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "schema", "") is None:
        from geomvol.config import DEFAULT_SCHEMA

        args.schema = DEFAULT_SCHEMA
    try:
        if getattr(args, "gpus", None) is None:
            args.func(args)
        else:
            from geomvol.device import job_gpus

            with job_gpus(args.gpus):
                args.func(args)
    except GeomvolError as error:
        print(f"geomvol {args.command}: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
