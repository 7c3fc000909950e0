import json

ENV = "../envs/geomvol.yaml"


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
