# The config, checked before any job runs: config.yaml is the default config. A config given with
# --configfile is the whole config: it replaces config.yaml rather than being merged into it (which would
# add the default experiments to any other config, or mix their keys). Each file is first read as
# `geomvol check-config` reads it: a key given twice or a YAML error is refused naming the file and line
# (Snakemake's own reading keeps the last of two keys silently). Then the schema, and the checks a schema
# cannot state. Reading the data roots to check anchors is done once, by the main process, not again by
# every job that re-reads this file (cluster jobs, job steps). An error is one message naming the key,
# file or line, without geomvol's traceback.
from snakemake.exceptions import WorkflowError

from geomvol.config import read_config_file, resolve_config
from geomvol.data.check import check_config_data
from geomvol.errors import GeomvolError


def refuse(error):
    raise WorkflowError(f"geomvol: {error}") from None


try:
    for path in workflow.overwrite_configfiles or ["config.yaml"]:
        read_config_file(path)
except GeomvolError as error:
    refuse(error)
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


try:
    RESOLVED_CONFIG = resolve_config(config)
    # in the main process; checks that read the config alone pass once (geomvol.data.check)
    if workflow.is_main_process:
        check_config_data(RESOLVED_CONFIG, passed=".snakemake/geomvol/checked")
except GeomvolError as error:
    refuse(error)
EXPERIMENTS = RESOLVED_CONFIG["experiments"]
