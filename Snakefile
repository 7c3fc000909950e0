# geomvol: train, checkpoint per epoch, probe volume elements, combine, figure.
# Run: snakemake --cores N   (config: config.yaml, or --configfile FILE)
from snakemake.utils import min_version

min_version("9.0")


include: "workflow/rules/config.smk"
include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/probe.smk"
include: "workflow/rules/measures.smk"
include: "workflow/rules/figures.smk"


rule all:
    default_target: True
    input:
        get_final_output,
