# Helpers shared by every rule. Paths that flow between rules are declared here, once.
# Rules call the `zephir` command: run Snakemake from the environment where zephir is installed
# (README: `. .venv/bin/activate`), or with --software-deployment-method conda.
import sys
from pathlib import Path

import zephir.config
import zephir.report.registry

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


# -- degradation-estimation evaluation (tables 2-4, figures 3, 7-10)
EST = config["estimation"]
BASELINES = ["clip_zeroshot", "daclip_style", "mmrealsr_style"]
CONFIG_HASH = zephir.config.fingerprint(config)


def _gap(g):
    return f"{float(g):g}"


def _topk(k):
    return "all" if k in (None, "all") else str(k)


def ablation_dir(losses, topk, gap):
    """Where one ablation job of tables 3 and 4 writes its model and evaluation."""
    return RESULTS / "ablation" / f"{losses}-k{topk}-g{gap}"


def ablation_checkpoint(losses, topk, gap):
    """One ablation job's model. With the full budget (estimation.ablation_steps: null) the
    default combination (D, the configured top-k and gap) is the main HD-CLIP model itself."""
    model = config["hdclip"]["model"]
    default = ("D", _topk(model["topk"]), _gap(model["gap"]))
    if EST["ablation_steps"] is None and (losses, _topk(topk), _gap(gap)) == default:
        return hdclip_checkpoint()
    return ablation_dir(losses, _topk(topk), _gap(gap)) / "checkpoint.pt"


def daclip_weights_present():
    """DA-CLIP's released weights join table 2 when the configured file is there."""
    path = EST["daclip_weights"]
    if path and not Path(path).is_file():
        print(f"note: estimation.daclip_weights {path} not found; table 2 shows the "
              "DA-CLIP-style baseline only (copy daclip_ViT-B-32.pt there to add DA-CLIP's "
              "own weights)", file=sys.stderr)
    return bool(path) and Path(path).is_file()


DACLIP_RELEASED = daclip_weights_present()


def baseline_checkpoint(method):
    return RESULTS / "baselines" / method / "checkpoint.pt"


def eval_files(model_dir):
    """What `zephir train --evaluate` writes next to a checkpoint."""
    return [Path(model_dir) / "eval" / f for f in ("metrics.json", "predictions.csv",
                                                   "arrays.npz")]


def evaluation(checkpoint, what="metrics.json"):
    """One evaluation file of the model at ``checkpoint``."""
    return Path(checkpoint).parent / "eval" / what


def steps_flag(steps):
    """`--steps N` for a job with a budget of its own (null: the hdclip.train budget)."""
    return "" if steps is None else f"--steps {steps}"


def table2_models():
    """HD-CLIP and the baselines it is compared with (with DA-CLIP's released weights when
    present): tables 2 and 2-beyond."""
    released = ["daclip_released"] if DACLIP_RELEASED else []
    return [baseline_checkpoint(m) for m in BASELINES + released] + [hdclip_checkpoint()]


def table3_models():
    """The loss ablations A-D at the configured top-k and gap: table 3, figure 10."""
    model = config["hdclip"]["model"]
    return [ablation_checkpoint(l, model["topk"], model["gap"]) for l in EST["losses"]]


def table4_models():
    """The top-k x gap ablations with losses D: table 4."""
    return [ablation_checkpoint("D", k, g) for k in EST["topk"] for g in EST["gap"]]


# -- report: the tables and figures are the entries of zephir.report.registry, listed there
# only. A table's entry names the runs it reads (`runs`); TABLE_RUNS maps them to models here.
REPORT = zephir.report.registry
TABLES = list(REPORT.TABLES)
FIGURES = list(REPORT.FIGURES)
TABLE_RUNS = {"methods": table2_models, "losses": table3_models, "topk_gap": table4_models}


def table_models(name):
    """The models whose evaluations make table ``name``."""
    runs = REPORT.TABLES[name].runs
    if runs not in TABLE_RUNS:
        raise ValueError(f"table {name} reads runs {runs!r}, which common.smk does not map to "
                         f"models (TABLE_RUNS: {', '.join(TABLE_RUNS)})")
    return TABLE_RUNS[runs]()


def table_inputs(wildcards):
    """The results files a table is built from, the evaluations of its runs."""
    return [evaluation(c) for c in table_models(wildcards.table)]


def table_flag(wildcards):
    """The `zephir table` flag those files are passed with (the table's declared source)."""
    return REPORT.TABLES[wildcards.table].source.flag


def table_file(name, ext="md"):
    return RESULTS / "tables" / f"{name}.{ext}"


def table_stem(wildcards):
    """`zephir table --out`: the table's files without their suffix."""
    return RESULTS / "tables" / wildcards.table


def figure_file(n):
    return RESULTS / "figures" / f"fig{n}.png"


def all_targets():
    """Everything the workflow builds so far: labelled set, blind LQ sets, HD-CLIP, tables 2-4
    and figures 3, 7-10."""
    return ([synth_manifest()] + [blind_manifest(name) for name in config["blind_sets"]]
            + [hdclip_checkpoint()] + [table_file(t) for t in TABLES]
            + [figure_file(n) for n in FIGURES])
