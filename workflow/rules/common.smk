# Helpers shared by every rule. Paths that flow between rules are declared here, once.
import os
import sys
from pathlib import Path

import zephir.config

# Rules call the `zephir` command of the environment that runs Snakemake, even when that
# environment is not activated (e.g. `.venv/bin/snakemake -c2`); a conda env, when used, still
# comes first because Snakemake activates it inside the job.
os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])

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


def all_targets():
    """Everything that exists so far: the labelled set and the blind test LQ sets."""
    return [synth_manifest()] + [blind_manifest(name) for name in config["blind_sets"]]
