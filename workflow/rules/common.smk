import json
import shlex

from snakemake_interface_executor_plugins.settings import DeploymentMethod

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


def spec_json(value):
    """A config section as compact JSON, for a CLI --spec argument."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def get_experiment(wildcards):
    return EXPERIMENTS[wildcards.experiment]


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
        "results/{experiment}/s{seed}/probes/epoch_{epoch}.zarr",
        experiment=wildcards.experiment,
        seed=experiment["seeds"],
        epoch=experiment["probe"]["epochs"],
    )


def get_final_output():
    return expand(
        "results/{experiment}/figures/volume.{ext}",
        experiment=list(EXPERIMENTS),
        ext=["png", "pdf"],
    )
