# ZePHiR: the paper as a DAG. `snakemake -c2` builds the embedded default (config/config.yaml);
# `snakemake -c2 --configfile config/paper.yaml` the paper; `snakemake --profile slurm all` a cluster.
# Rules are thin: each one calls the `zephir` command line; the logic lives in the package.
from snakemake.utils import min_version

min_version("8.20")


report: "workflow/report/workflow.rst"


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
        PLAN.all_targets(),


# `snakemake -c2 figures`: every table and figure the config plans, from the results they read
# (a results file that is missing or out of date is rebuilt first), gathered in results/<name>/paper/.
rule figures:
    input:
        PLAN.figures_targets(),
    output:
        directory(PLAN.paper_dir),
    log:
        LOGS / "paper.log",
    conda:
        "workflow/envs/zephir.yaml"
    shell:
        "mkdir -p {output} && cp {input} {output} > {log} 2>&1"


# The parts of the paper, one target each (`snakemake -c2 stage_train`): what `all` needs from
# the jobs of that part and those before it. DVC's stages (dvc.yaml) run them in this order;
# zephir.stages declares which rules, code, config and results each part has.
for stage in zephir.stages.NAMES:

    rule:
        name:
            f"stage_{stage}"
        input:
            PLAN.stage_targets(stage),
        localrule: True


localrules:
    all,
    figures,
