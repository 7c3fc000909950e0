import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace

from geomvol.catalogue import (
    FIGURES,
    ROOT_DATASETS,
    raw_paths,
    synthetic_spec,
)
from geomvol.integrity import (
    dataset_problems,
    quick_check,
    source_problems,
    stale_outputs,
)
from geomvol.config import (
    SCHEDULE_KEYS,
    config_sha256,
    group_lineage,
    import_spec,
    imported,
    saved_epochs,
    seed_group_label,
    seed_groups,
    probe_job_settings,
    result_config,
    without_run_time,
)

ENV = "../envs/geomvol.yaml"

# The command every rule runs (PYTHONPATH="$GEOMVOL_SOURCE" python -m geomvol.cli, written out in each
# rule's shell) is the geomvol package of this checkout, found through GEOMVOL_SOURCE (set
# here, so every job inherits it, locally or through sbatch), whether or not the job runs in the rule's
# conda environment, which holds the dependencies but not geomvol. The command's text is the same
# wherever the checkout lives and however jobs are deployed, since Snakemake reruns a job whose command
# text changed. PYTHONPATH set inline survives Snakemake's clearing of it in conda jobs.
os.environ["GEOMVOL_SOURCE"] = workflow.basedir


envvars:
    "GEOMVOL_SOURCE",


wildcard_constraints:
    experiment="|".join(EXPERIMENTS),
    seed=r"\d+",
    seeds=r"s\d+(-s\d+)*",
    epoch=r"\d+",
    figure="|".join(FIGURES),


def names_pattern(names):
    """A wildcard constraint matching exactly these experiment names (none: nothing)."""
    return "|".join(names) or "(?!)"


# Experiments that train their checkpoints, and those that probe checkpoints trained elsewhere (`checkpoints`):
# a probed checkpoint, results/<experiment>/s<seed>/checkpoints/epoch_<E>.pt, is published from a training run
# for the first, imported from its file for the second.
TRAINED = [name for name, experiment in EXPERIMENTS.items() if not imported(experiment)]
IMPORTED = [name for name, experiment in EXPERIMENTS.items() if imported(experiment)]


def section_json(value):
    """A config section as compact JSON, for a geomvol command's argument."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def get_experiment(wildcards):
    return EXPERIMENTS[wildcards.experiment]


def get_gpus(wildcards, device_of):
    """The `gpu` resource of a job, which local runs cap with --resources gpu=N, the SLURM plugin turns
    into --gpus, and the job itself gets as its own card (geomvol's --gpus): 1 for a job whose device
    is cuda, or auto in an image experiment; 0 for the rest, which run with CUDA hidden (the sinusoid's
    small nets on auto run on the CPU).
    """
    experiment = get_experiment(wildcards)
    device = device_of(experiment)
    is_images = experiment["dataset"]["name"] != "sinusoid"
    return 1 if device == "cuda" or (device == "auto" and is_images) else 0


def get_train_device(wildcards):
    return get_experiment(wildcards)["training"]["device"]


def get_probe_device(wildcards):
    return get_experiment(wildcards)["probe"]["device"]


def get_memory_budget(wildcards):
    return str(get_experiment(wildcards)["probe"]["memory_budget_bytes"])


def get_train_gpus(wildcards):
    return get_gpus(wildcards, lambda experiment: experiment["training"]["device"])


def get_probe_gpus(wildcards):
    return get_gpus(wildcards, lambda experiment: experiment["probe"]["device"])


def gpu_or_cpu(gpus, on_gpu, on_cpu):
    """A resource function: ``on_gpu`` for jobs that ``gpus(wildcards)`` puts on a GPU, else ``on_cpu``."""
    return lambda wildcards: on_gpu if gpus(wildcards) else on_cpu


def get_raw_data(wildcards):
    """The raw files prepare_dataset reads: none for the sinusoid (drawn from its spec) and digits (a
    file of the geomvol package, like its code), the synthetic
    root for a synthetic set, the files of torchvision's layout for a real root, every image of an image
    folder (so that an image added, removed or replaced prepares the data set again). None for a
    `download: true` root, which torchvision fills in the job: declaring its files only once they
    exist would change the job's inputs after the first run and redo everything downstream.
    """
    dataset = get_experiment(wildcards)["dataset"]
    if dataset["name"] not in ROOT_DATASETS or dataset.get("download"):
        return []
    if dataset["synthetic"] is not None:
        return rules.synthesize_dataset.output.root
    return [str(path) for path in raw_paths(dataset)]


def get_figures(name, experiment):
    """The figures of one experiment: the input grid for 2-D data; planes, lines, and blocks (one
    panel row per feature map) when more than one feature map is probed on planes; the direction of the
    stretch on the grid or the planes; the spectra at
    the anchors when the probe records them; the comparison when the config asks for one; the
    curvature when the probe measures it; and the magnification measures of every
    experiment."""
    probe = experiment["probe"]
    if experiment["dataset"]["name"] == "sinusoid":
        kinds = ["volume", "stretch"]
    else:
        kinds = [kind for kind in ("planes", "lines") if probe[kind]]
        if probe["planes"]:
            kinds.append("stretch")
        if probe["planes"] and len(probe["feature_maps"]) > 1:
            kinds.append("blocks")
        if probe["spectra"]:
            kinds.append("spectra")
        if probe["compare_with"] is not None:
            kinds.append("compare")
    if probe["curvature"]:
        kinds.append("curvature")
    return expand(
        "results/{experiment}/figures/{figure}.{ext}",
        experiment=name,
        figure=[*kinds, "measures", "profiles"],
        ext=["png", "pdf"],
    )


# Params hold what determines a job's output, and nothing else: Snakemake reruns a job whose params
# changed. Run-time settings (devices, threads, memory budgets, download) travel as threads and
# resources, which trigger no rerun.


def get_dataset_section(wildcards):
    return section_json(
        without_run_time("dataset", get_experiment(wildcards)["dataset"])
    )


def get_download(wildcards):
    return "true" if get_experiment(wildcards)["dataset"].get("download") else "false"


def get_measure_sections(wildcards):
    experiment = get_experiment(wildcards)
    return section_json(
        {
            "measures": experiment["measures"],
            "dataset": without_run_time("dataset", experiment["dataset"]),
        }
    )


# A seed's checkpoint stores (outside the declared outputs, kept between runs; one keyed directory per lineage).
STATE_DIR = "results/{experiment}/s{seed}/train-state"


def group_seeds(wildcards):
    """The seeds of the group {seeds} (s<a>-s<b>-...), which must be a seed group of the experiment."""
    seeds = [int(label[1:]) for label in wildcards.seeds.split("-")]
    if seeds not in seed_groups(get_experiment(wildcards)):
        raise ValueError(
            f"{wildcards.seeds} is not a seed group of experiment {wildcards.experiment} "
            f"(its groups: {[seed_group_label(group) for group in seed_groups(get_experiment(wildcards))]})"
        )
    return seeds


def group_label_of(wildcards):
    """The label s<a>-s<b>-... of the group the job's seed trains in."""
    seed = int(wildcards.seed)
    return seed_group_label(
        next(group for group in seed_groups(get_experiment(wildcards)) if seed in group)
    )


def get_group_lineage(wildcards):
    """What a seed group's checkpoints depend on besides the data set and their epochs: its params."""
    return section_json(
        group_lineage(get_experiment(wildcards), group_seeds(wildcards))
    )


def get_state_dirs(wildcards):
    """Each seed's checkpoint store root, as JSON."""
    return section_json(
        {
            str(seed): STATE_DIR.format(experiment=wildcards.experiment, seed=seed)
            for seed in group_seeds(wildcards)
        }
    )


def get_schedule(wildcards):
    """Which epochs a training run keeps: a run-time setting of its jobs (a schedule edit reruns none)."""
    training = get_experiment(wildcards)["training"]
    return section_json({key: training[key] for key in SCHEDULE_KEYS})


def get_train_threads(wildcards):
    return get_experiment(wildcards)["training"]["threads"]


def checkpoint_source(wildcards, epoch):
    """What holds a saved epoch of the seed's group: the group's training directory when its run made it (its
    manifest, read as the DAG is built, lists it) or has yet to run; otherwise the epoch was added to the
    schedule after the run, and extend_training makes it."""
    seeds = group_label_of(wildcards)
    run = rules.train.output.run.format(experiment=wildcards.experiment, seeds=seeds)
    manifest = Path(run) / "manifest.json"
    if manifest.is_file():
        try:
            made = json.loads(manifest.read_text())["epochs"]
        except (
            ValueError,
            KeyError,
        ):  # damaged, or of an older layout: the run is made again
            made = None
        if made is not None and epoch not in made:
            return rules.extend_training.output.run.format(
                experiment=wildcards.experiment, seeds=seeds, epoch=epoch
            )
    return run


def get_checkpoint_source(wildcards):
    """The group's training directory, or extend_training's directory, that holds this saved epoch."""
    return checkpoint_source(wildcards, int(wildcards.epoch))


def get_last_checkpoint_source(wildcards):
    """What holds the last saved epoch (its history has every epoch's metrics)."""
    return checkpoint_source(wildcards, last_saved_epoch(wildcards))


def last_saved_epoch(wildcards):
    return saved_epochs(get_experiment(wildcards)["training"])[-1]


def get_outside_checkpoint(wildcards):
    """The file of a checkpoint trained elsewhere, for this epoch (its changes re-import and re-probe it)."""
    return get_experiment(wildcards)["checkpoints"][wildcards.epoch]


def get_import_spec(wildcards):
    return section_json(
        import_spec(
            get_experiment(wildcards), int(wildcards.seed), int(wildcards.epoch)
        )
    )


def get_probe_settings(wildcards):
    return section_json(probe_job_settings(get_experiment(wildcards)))


def get_result_config(wildcards):
    return section_json(result_config(get_experiment(wildcards)))


def get_probe_stores(wildcards):
    """One probe store per seed group and probed epoch."""
    experiment = get_experiment(wildcards)
    return expand(
        rules.probe.output.store,
        experiment=wildcards.experiment,
        seeds=[seed_group_label(group) for group in seed_groups(experiment)],
        epoch=experiment["probe"]["epochs"],
    )


def get_group_checkpoints(wildcards):
    """The published checkpoints of the epoch, one per seed of the group {seeds} (s<a>-s<b>-...)."""
    return expand(
        rules.publish_checkpoint.output.checkpoint,
        experiment=wildcards.experiment,
        seed=group_seeds(wildcards),
        epoch=wildcards.epoch,
    )


def get_figure_style(wildcards):
    return section_json(get_experiment(wildcards)["figures"])


def get_config_sha256(wildcards):
    return config_sha256(result_config(get_experiment(wildcards)))


def get_compared_store(wildcards):
    return f"results/{get_experiment(wildcards)['probe']['compare_with']}/volume.zarr"


def get_compared_stores(wildcards):
    """The volume store of the experiment's probe.compare_with, whose agreement the measures take; none without."""
    return (
        [get_compared_store(wildcards)]
        if get_experiment(wildcards)["probe"]["compare_with"] is not None
        else []
    )


def get_final_output(wildcards):
    """Every experiment's figures, each training run's metrics (none for checkpoints trained elsewhere) and the
    summary table; in the main process, first the stale outputs are forced (force_stale_outputs).
    """
    force_stale_outputs()
    outputs = [rules.summary.output.table]
    for name, experiment in EXPERIMENTS.items():
        outputs += get_figures(name, experiment)
        outputs += expand(
            "results/{experiment}/s{seed}/train_metrics.tsv",
            experiment=name,
            seed=[] if imported(experiment) else experiment["seeds"],
        )
    return outputs


def get_measures_stores(wildcards):
    """Every experiment's measures store, for the summary table."""
    return [rules.measure.output.store.format(experiment=name) for name in EXPERIMENTS]


def output_edges():
    """(output, its inputs, its check) for every output of the config, producers first (see
    geomvol.integrity.stale_outputs)."""
    summarised = []  # every experiment's measures store, which the summary table reads
    for name, experiment in EXPERIMENTS.items():
        data = rules.prepare_dataset.output.data.format(experiment=name)
        manifest = rules.prepare_dataset.output.manifest.format(experiment=name)
        yield data, [], lambda path, manifest=manifest: dataset_problems(path, manifest)
        probes = []
        for group in seed_groups(experiment):
            label = seed_group_label(group)
            if imported(experiment):
                for epoch in experiment["probe"]["epochs"]:
                    published = rules.import_checkpoint.output.checkpoint.format(
                        experiment=name, seed=group[0], epoch=epoch
                    )
                    outside = experiment["checkpoints"][str(epoch)]
                    yield published, [outside, data, manifest], imported_check
                    store = rules.probe.output.store.format(
                        experiment=name, seeds=label, epoch=epoch
                    )
                    yield store, [published, data, manifest], quick_check
                    probes.append(store)
                continue
            training = rules.train.output.run.format(experiment=name, seeds=label)
            yield training, [data, manifest], quick_check
            for epoch in experiment["probe"]["epochs"]:
                checkpoints = []
                for seed in group:
                    source = checkpoint_source(
                        SimpleNamespace(experiment=name, seed=str(seed)), epoch
                    )
                    if source != training:
                        yield source, [training, data, manifest], quick_check
                    published = rules.publish_checkpoint.output.checkpoint.format(
                        experiment=name, seed=seed, epoch=epoch
                    )
                    yield published, [source], quick_check
                    checkpoints.append(published)
                store = rules.probe.output.store.format(
                    experiment=name, seeds=label, epoch=epoch
                )
                yield store, [*checkpoints, data, manifest], quick_check
                probes.append(store)
            for seed in group:
                metrics = rules.training_metrics.output.metrics.format(
                    experiment=name, seed=seed
                )
                last = SimpleNamespace(experiment=name, seed=str(seed))
                yield metrics, [get_last_checkpoint_source(last)], None
        volume = rules.combine_probes.output.store.format(experiment=name)
        yield volume, [*probes, data, manifest], quick_check
        measures = rules.measure.output.store.format(experiment=name)
        compared = experiment["probe"]["compare_with"]
        compared_volume = (
            [] if compared is None else [f"results/{compared}/volume.zarr"]
        )
        yield measures, [volume, *compared_volume], quick_check
        summarised.append(measures)
        for figure in get_figures(name, experiment):
            if Path(figure).stem in ("measures", "profiles"):
                inputs = [measures]
            elif Path(figure).stem == "compare":
                inputs = [volume, *compared_volume]
            else:
                inputs = [volume]
            yield figure, inputs, None
    yield rules.summary.output.table, summarised, quick_check


def imported_check(path):
    """An imported checkpoint's record, and whether the file it was imported from has changed since."""
    return quick_check(path) or source_problems(path)


STALE_OUTPUTS_FORCED = []
STALE_SHOWN = 20  # outputs named on stderr; the rest counted


def force_stale_outputs():
    """Make Snakemake re-make every stale output (geomvol.integrity.stale_outputs: damaged against its record,
    or fed by a missing input), saying why on stderr. Called as the DAG is built (from the default target's input
    function), once, in the main process: the outputs join the DAG's forced files, as --forcerun would
    make them, so that a dry run shows them too."""
    if STALE_OUTPUTS_FORCED or not workflow.is_main_process or workflow.dag is None:
        return
    stale = stale_outputs(output_edges())
    for path, reason in list(stale.items())[:STALE_SHOWN]:
        print(f"geomvol: {path} is made again: {reason}", file=sys.stderr)
    if len(stale) > STALE_SHOWN:
        print(
            f"geomvol: and {len(stale) - STALE_SHOWN} more outputs are made again",
            file=sys.stderr,
        )
    workflow.dag.forcefiles.update(stale)
    STALE_OUTPUTS_FORCED.append(stale)
