# geomvol: train, checkpoint per epoch, probe volume elements, combine, figure.
# Run: snakemake --cores N   (config: config.yaml, or --configfile FILE)
from snakemake.utils import min_version

from geomvol.config import resolve_config
from geomvol.data.check import check_config_data

min_version("9.0")


# config.yaml is the default config. A config given with --configfile is the whole config: it
# replaces config.yaml rather than being merged into it (which would add the default experiments
# to any other config, or mix their keys).
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


# Validate against the schema (and the checks a schema cannot state) before any job runs.
# Reading the data roots to check anchors is done once, by the main process, not again by
# every job that re-reads this file (cluster jobs, job steps).
RESOLVED_CONFIG = resolve_config(config)
if workflow.is_main_process:
    check_config_data(RESOLVED_CONFIG)
EXPERIMENTS = RESOLVED_CONFIG["experiments"]


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/probe.smk"
include: "workflow/rules/measures.smk"
include: "workflow/rules/figures.smk"


rule all:
    default_target: True
    input:
        get_final_output(),
