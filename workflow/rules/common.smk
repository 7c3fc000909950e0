import json
import shlex

from snakemake_interface_executor_plugins.settings import DeploymentMethod

from geomvol.config import EXPECTED_FILES, FIGURES, TORCHVISION_DATASETS, config_sha256

ENV = "../envs/geomvol.yaml"

# The command every rule runs. Under --use-conda the rule's environment holds
# the dependencies but not geomvol itself (Snakemake copies env files into
# .snakemake/conda/, so a relative `pip install -e` cannot find this checkout),
# so the package runs from this checkout's source; PYTHONPATH set inline
# survives Snakemake's clearing of it in conda jobs.
if DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method:
    GEOMVOL = f"PYTHONPATH={shlex.quote(workflow.basedir)} python -m geomvol.cli"
else:
    GEOMVOL = "geomvol"


wildcard_constraints:
    experiment="|".join(EXPERIMENTS),
    seed=r"\d+",
    epoch=r"\d+",
    figure="|".join(FIGURES),


def spec_json(value):
    """A config section as compact JSON, for a CLI --spec argument."""
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
    root for a synthetic set, the files of torchvision's layout for a real root. None for a
    `download: true` root, which torchvision fills in the job: declaring its files only once they
    exist would change the job's inputs after the first run and redo everything downstream.
    """
    dataset = get_experiment(wildcards)["dataset"]
    if dataset["name"] not in TORCHVISION_DATASETS or dataset["download"]:
        return []
    if dataset["synthetic"] is not None:
        return rules.synthesize_dataset.output.root
    return [
        str(Path(dataset["root"]) / name) for name in EXPECTED_FILES[dataset["name"]]
    ]


def get_figures(name, experiment):
    """The figures of one experiment: the input grid for 2-D data; planes, lines, and blocks (one
    panel row per feature map) when more than one feature map is probed on planes; the spectra at
    the anchors when the probe records them; the comparison when the config asks for one; and the
    magnification measures of every experiment."""
    probe = experiment["probe"]
    if experiment["dataset"]["name"] == "sinusoid":
        kinds = ["volume"]
    else:
        kinds = [kind for kind in ("planes", "lines") if probe[kind]]
        if probe["planes"] and len(probe["feature_maps"]) > 1:
            kinds.append("blocks")
        if probe["spectra"]:
            kinds.append("spectra")
        if probe["compare_with"] is not None:
            kinds.append("compare")
    return expand(
        "results/{experiment}/figures/{figure}.{ext}",
        experiment=name,
        figure=[*kinds, "measures"],
        ext=["png", "pdf"],
    )


def get_measure_spec(wildcards):
    experiment = get_experiment(wildcards)
    return spec_json({key: experiment[key] for key in ("measures", "dataset")})


def get_train_spec(wildcards):
    experiment = get_experiment(wildcards)
    return spec_json(
        {
            "seed": int(wildcards.seed),
            "model": experiment["model"],
            "training": experiment["training"],
        }
    )


def get_probe_stores(wildcards):
    experiment = get_experiment(wildcards)
    return expand(
        "results/{experiment}/s{seed}/probes/epoch_{epoch}.zarr.zip",
        experiment=wildcards.experiment,
        seed=experiment["seeds"],
        epoch=experiment["probe"]["epochs"],
    )


def get_figure_style(wildcards):
    return spec_json(get_experiment(wildcards)["figures"])


def get_config_sha256(wildcards):
    return config_sha256(get_experiment(wildcards))


def get_compared_store(wildcards):
    return f"results/{get_experiment(wildcards)['probe']['compare_with']}/volume.zarr"


def get_final_output():
    return [
        path
        for name, experiment in EXPERIMENTS.items()
        for path in get_figures(name, experiment)
    ]
