# Helpers shared by every rule. Paths that flow between rules are declared here, once.
# Rules call the `zephir` command: run Snakemake from the environment where zephir is installed
# (README: `. .venv/bin/activate`), or with --software-deployment-method conda.
from pathlib import Path

import zephir.config

# Validate against workflow/schemas/config.schema.yaml (and the method's rules) before any job
# runs; defaults are filled in here, so rules may index every key.
config.update(zephir.config.check(config, origin="config"))

RESULTS = zephir.config.results_dir(config)
LOGS = RESULTS / "logs"


wildcard_constraints:
    dataset="|".join(config["datasets"]),


def dataset_index(name):
    """The image index of a dataset; every rule that reads images takes it as input."""
    return RESULTS / "data" / name / "index.csv"


def synth_manifest():
    """The labelled degradation set synthesised from the training dataset."""
    return RESULTS / "synth" / config["train_set"] / "manifest.csv"


def blind_manifest(name):
    """Real-ESRGAN second-order LQ test images of a dataset."""
    return RESULTS / "blind" / name / "manifest.csv"


def dataset_args(wildcards, output):
    """`zephir data` arguments that write a dataset's index (and embedded photos)."""
    ds = config["datasets"][wildcards.dataset]
    if ds["kind"] == "embedded":
        names = " ".join(ds["images"])
        return f"embedded --out {Path(output.index).parent} --names {names}"
    return f"index --images {ds['path']} --out {output.index} --url '{ds.get('url', '')}'"


def hdclip_checkpoint():
    """The trained HD-CLIP model."""
    return RESULTS / "hdclip" / "checkpoint.pt"


def zephir_launcher(gpus):
    """`zephir`, or torchrun over the job's GPUs when it has more than one."""
    if gpus > 1:
        return f"torchrun --standalone --nproc_per_node {gpus} -m zephir"
    return "zephir"


def all_targets():
    """Everything that exists so far: the labelled set, the blind test LQ sets, HD-CLIP."""
    return ([synth_manifest()] + [blind_manifest(name) for name in config["blind_sets"]]
            + [hdclip_checkpoint()])
