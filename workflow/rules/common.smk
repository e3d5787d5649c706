# What only Snakemake does: validate the config, build its plan (zephir.plan: the runs, the
# paths that flow between rules, the targets of each table, figure and stage), constrain the
# wildcards, and turn plan and config into the inputs and flags of the rules.
# Rules call the `zephir` command: run Snakemake from the environment where zephir is installed
# (README: `. .venv/bin/activate`), or with --software-deployment-method conda.
import sys
from pathlib import Path

import zephir.backbones
import zephir.config
import zephir.plan
import zephir.report.registry
import zephir.stages

# Validate against workflow/schemas/config.schema.yaml (and the method's rules) before any job
# runs; defaults are filled in here, so rules may index every key.
config.update(zephir.config.check(config, origin="config"))

PLAN = zephir.plan.Plan(config)
RESULTS = PLAN.results
LOGS = PLAN.logs
EST = config["estimation"]
RES = config["restoration"]
CONFIG_HASH = zephir.config.fingerprint(config)
# The fingerprint of the package code each DVC stage runs (zephir.stages): every rule of a stage
# carries it as params.code, so that a change of that code reruns those jobs (as it reruns the
# stage in DVC) and nothing else. The code hashed is the checkout's zephir/ beside the Snakefile,
# the files dvc.yaml names (with the README's editable install, the package that runs), or the
# installed package's where the workflow was copied without it.
CODE_ROOT = Path(workflow.basedir) if (Path(workflow.basedir) / "zephir").is_dir() else None
CODE = {name: zephir.stages.fingerprint(name, CODE_ROOT) for name in zephir.stages.NAMES}
# The package a restore job imports (by PYTHONPATH, since the backbone environments do not
# install zephir): the checkout beside the Snakefile, else the installed package's parent.
ZEPHIR_SOURCE = CODE_ROOT or Path(zephir.stages.__file__).resolve().parents[1]

if EST["daclip_weights"] and not PLAN.daclip_released:
    print(f"note: estimation.daclip_weights {EST['daclip_weights']} not found; table 2 shows the "
          "DA-CLIP-style baseline only (copy daclip_ViT-B-32.pt there to add DA-CLIP's "
          "own weights)", file=sys.stderr)


wildcard_constraints:
    dataset="|".join(config["datasets"]),


def optional_flag(flag, value):
    """`flag value`, or nothing when the config leaves the value null."""
    return "" if value is None else f"{flag} {value}"


def dataset_args(wildcards, output):
    """`zephir data` arguments that write a dataset's index (and embedded photos)."""
    ds = config["datasets"][wildcards.dataset]
    if ds["kind"] == "embedded":
        names = " ".join(ds["images"])
        return f"embedded --out {Path(output.index).parent} --names {names}"
    return f"index --images {ds['path']} --out {output.index} --url '{ds.get('url', '')}'"


def zephir_launcher(gpus):
    """`zephir`, or torchrun over the job's GPUs when it has more than one."""
    if gpus > 1:
        return f"torchrun --standalone --nproc_per_node {gpus} -m zephir"
    return "zephir"


def daclip_clip_flags(checkpoint=True):
    """--arch / --checkpoint / --quick-gelu of the CLIP DA-CLIP is built on
    (estimation.daclip_model); nothing when it is null (HD-CLIP's hdclip.model)."""
    own = EST["daclip_model"]
    if own is None:
        return ""
    flags = f"--arch {own['arch']} {'--' if own['quick_gelu'] else '--no-'}quick-gelu"
    if checkpoint:
        flags += f" --checkpoint {own['checkpoint'] or 'none'}"
    return flags


def run_flags(wildcards):
    """`zephir restore` flags of a run folder name (zephir.plan.run_name)."""
    return " ".join(f"--{k.replace('_', '-')} {v}"
                    for k, v in zephir.plan.run_settings(wildcards.run).items())


def score_args(wildcards):
    """Reference folder (sets with HQ images), metrics and what the scores are of."""
    d = wildcards.dataset
    ref = f"--reference {PLAN.reference_dir(d)}" if PLAN.has_reference(d) else ""
    label = config["datasets"][d].get("label", d).replace("'", "")
    meta = f"dataset={d} 'label={label}' backbone={wildcards.backbone} run={wildcards.run}"
    return f"{ref} --metrics {' '.join(PLAN.score_metrics(d))} --meta {meta}"


def backbone_env(wildcards):
    """The environment of a backbone's restore jobs with --software-deployment-method conda
    (the adapter's: SeeSR and PASD need the diffusers releases their code was written for)."""
    env = zephir.backbones.BACKBONES[zephir.backbones.canonical(wildcards.backbone)].environment
    return f"../envs/{Path(env).name}"


def figure_files(fig):
    """The params function of figure ``fig``'s rule: `zephir figure` flags of the files its
    registry entry takes (--<flag> FILE...), from the job's inputs."""

    def flags(wildcards, input):
        given = {i.dest: getattr(input, i.dest) for i in fig.inputs}
        return " ".join(f"--{i.flag} {v if isinstance(v, str) else ' '.join(v)}"
                        for i, v in zip(fig.inputs, given.values()))

    return flags
