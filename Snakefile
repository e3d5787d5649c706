# ZePHiR: the paper as a DAG. `snakemake -c2` builds the embedded default (config/config.yaml);
# `snakemake -c2 --configfile config/paper.yaml` the paper; `--profile profiles/slurm` a cluster.
# Rules are thin: each one calls the `zephir` command line; the logic lives in the package.
from snakemake.utils import min_version

min_version("8.20")


# The embedded default, unless --configfile names another config: configs are complete, not
# overlays, so that a paper run never inherits the embedded datasets.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/synth.smk"
include: "workflow/rules/hdclip.smk"
include: "workflow/rules/estimation.smk"
include: "workflow/rules/restore.smk"
include: "workflow/rules/score.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        all_targets(),
