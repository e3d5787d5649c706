# Helpers shared by every rule. Paths that flow between rules are declared here, once.
# Rules call the `zephir` command: run Snakemake from the environment where zephir is installed
# (README: `. .venv/bin/activate`), or with --software-deployment-method conda.
import sys
from pathlib import Path

import zephir.backbones
import zephir.config
import zephir.report.registry
import zephir.stages

# Validate against workflow/schemas/config.schema.yaml (and the method's rules) before any job
# runs; defaults are filled in here, so rules may index every key.
config.update(zephir.config.check(config, origin="config"))

RESULTS = zephir.config.results_dir(config)
LOGS = RESULTS / "logs"
# The fingerprint of the package code each DVC stage runs (zephir.stages): every rule of a stage
# carries it as params.code, so that a change of that code reruns those jobs (as it reruns the
# stage in DVC) and nothing else. The code hashed is the checkout's zephir/ beside the Snakefile,
# the files dvc.yaml names (with the README's editable install, the package that runs), or the
# installed package's where the workflow was copied without it.
CODE_ROOT = Path(workflow.basedir) if (Path(workflow.basedir) / "zephir").is_dir() else None
CODE = {name: zephir.stages.fingerprint(name, CODE_ROOT) for name in zephir.stages.NAMES}


wildcard_constraints:
    dataset="|".join(config["datasets"]),


def dataset_index(name):
    """The image index of a dataset; every rule that reads images takes it as input."""
    return RESULTS / "data" / name / "index.csv"


def synth_manifest():
    """The labelled degradation set synthesised from the training dataset."""
    return zephir.config.synth_manifest(config)


def eval_manifest():
    """The labelled samples (their val split) that every evaluation reads: training's
    validation, the models' eval/ files behind tables 2-4 and figures 3, 7, 9, 10. Those of
    eval_set (rule synth_eval), or the training set's own val split when eval_set is null."""
    return zephir.config.eval_manifest(config)


def eval_sources():
    """The clean images of the evaluation samples (figure 9 re-degrades their crops)."""
    return dataset_index(config["eval_set"] or config["train_set"])


def synth_flags():
    """`zephir synth` flags of the synth section (the train and the evaluation sets alike)."""
    s = config["synth"]
    return (f"--types {' '.join(s['types'])} --levels-per-type {s['levels_per_type']}"
            f" --crop-size {s['crop_size']} --mixtures {s['mixtures_per_image']}"
            f" {optional_flag('--val-mixtures', s['val_mixtures_per_image'])}"
            f" --mixture-types {' '.join(map(str, s['mixture_types']))}"
            f" --level-range {' '.join(map(str, s['level_range']))}"
            f" --val-fraction {s['val_fraction']} --seed {s['seed']}"
            f" --interpolation {s['interpolation']}{' --randomise' if s['randomise'] else ''}")


def train_captions():
    """The training set's captions file (datasets.<train_set>.captions) when it is there, an
    input of the training jobs (so that a new file retrains), else None: a configured file
    that is missing reaches the job through captions_flag, which then stops at its start
    with a message that names the file and how to make it (`zephir data check` says so too)."""
    path = config["datasets"][config["train_set"]].get("captions")
    return path if path and Path(path).is_file() else None


def captions_flag():
    """`--captions FILE` for the HD-CLIP training jobs when the training set names captions."""
    return optional_flag("--captions", config["datasets"][config["train_set"]].get("captions"))


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
    """The trained HD-CLIP model: the weights of its folder (model.safetensors beside
    config.json and the model card README.md; zephir.checkpoints), which the commands read."""
    return RESULTS / "hdclip" / "model.safetensors"


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
    return ablation_dir(losses, _topk(topk), _gap(gap)) / "model.safetensors"


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
    """A baseline's trained model (its folder's weights, as hdclip_checkpoint)."""
    return RESULTS / "baselines" / method / "model.safetensors"


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


def baseline_flags(wildcards):
    """The CLIP flags of a baseline job: DA-CLIP's own for daclip_style, else none."""
    return daclip_clip_flags() if wildcards.method == "daclip_style" else ""


def eval_files(model_dir):
    """What `zephir train --evaluate` writes next to a checkpoint."""
    return [Path(model_dir) / "eval" / f for f in ("metrics.json", "predictions.csv",
                                                   "arrays.npz")]


def evaluation(checkpoint, what="metrics.json"):
    """One evaluation file of the model at ``checkpoint``."""
    return Path(checkpoint).parent / "eval" / what


def optional_flag(flag, value):
    """`flag value`, or nothing when the config leaves the value null."""
    return "" if value is None else f"{flag} {value}"


def steps_flag(steps):
    """`--steps N` for a job with a budget of its own (null: the hdclip.train budget)."""
    return optional_flag("--steps", steps)


def table2_models():
    """HD-CLIP and the baselines it is compared with (with DA-CLIP's released weights when
    present): tables 2 and 2-beyond."""
    released = ["daclip_released"] if DACLIP_RELEASED else []
    return [baseline_checkpoint(m) for m in BASELINES + released] + [hdclip_checkpoint()]


def model_checkpoint(model):
    """The checkpoint of a model of table 2 by name: hdclip, or a baseline's method."""
    return hdclip_checkpoint() if model == "hdclip" else baseline_checkpoint(model)


def transfer_manifest():
    """The transfer set of estimation.transfer.set (rule transfer_set), or None."""
    return zephir.config.transfer_manifest(config)


def transfer_dir(model):
    """The folder of a table 2 model's transfer evaluation: rule transfer_eval writes its
    eval_files (eval/metrics.json, ...) there, as training writes a model's own."""
    return RESULTS / "transfer" / model


def transfer_results():
    """The transfer evaluations of table 2's models (none without estimation.transfer.set)."""
    if transfer_manifest() is None:
        return []
    return [eval_files(transfer_dir(Path(c).parent.name))[0] for c in table2_models()]


def table3_models():
    """The loss ablations A-D at the configured top-k and gap: table 3, figure 10."""
    model = config["hdclip"]["model"]
    return [ablation_checkpoint(l, model["topk"], model["gap"]) for l in EST["losses"]]


def table4_models():
    """The top-k x gap ablations with losses D: table 4."""
    return [ablation_checkpoint("D", k, g) for k in EST["topk"] for g in EST["gap"]]


# -- restoration (paper, section 3.2; tables 1, 5, 7; figures 6, 11)
RES = config["restoration"]


def has_reference(dataset):
    """A blind set is scored against its HQ images; an hq: false set has none."""
    return config["datasets"][dataset]["hq"]


def lq_input(dataset):
    """What a set's restoration reads: its blind manifest (Real-ESRGAN LQ images), or for an
    hq: false set (RealDeg) the index of its images as they are."""
    return blind_manifest(dataset) if has_reference(dataset) else dataset_index(dataset)


def reference_dir(dataset):
    """The HQ images the blind stage wrote beside the LQ ones (mod-cropped, same names)."""
    return RESULTS / "blind" / dataset / "hq"


def run_name(mode, w_orth=None, w_par=None):
    """The folder of one restoration run: the mode, or for table 5's sweep the CFPG weights."""
    if w_orth is None:
        return mode
    return f"cfpg-wo{float(w_orth):g}-wp{float(w_par):g}"


def run_flags(wildcards):
    """`zephir restore` flags of a run folder name (see run_name)."""
    if wildcards.run in ("baseline", "cfg", "cfpg"):
        return f"--mode {wildcards.run}"
    w_orth, w_par = wildcards.run.removeprefix("cfpg-wo").split("-wp")
    return f"--mode cfpg --w-orth {w_orth} --w-par {w_par}"


def restore_config_file():
    """The restoration stage's config (written by rule restore_config)."""
    return RESULTS / "restore" / "config.yaml"


def hdclip_embeddings(dataset):
    """HD-CLIP's conditioning of a set's LQ images (rule hdclip_embed)."""
    return RESULTS / "restore" / dataset / "hdclip-embeddings.safetensors"


# The package a restore job imports (by PYTHONPATH, since the backbone environments do not
# install zephir): the checkout beside the Snakefile, else the installed package's parent.
ZEPHIR_SOURCE = CODE_ROOT or Path(zephir.stages.__file__).resolve().parents[1]


def backbone_env(wildcards):
    """The environment of a backbone's restore jobs with --software-deployment-method conda
    (the adapter's: SeeSR and PASD need the diffusers releases their code was written for)."""
    env = zephir.backbones.BACKBONES[zephir.backbones.canonical(wildcards.backbone)].environment
    return f"../envs/{Path(env).name}"


def restore_inputs(wildcards):
    """A restore job's inputs: the restoration config, the LQ images and, in the modes that
    use HD-CLIP, the set's conditioning file."""
    inputs = {"config": restore_config_file(), "lq": lq_input(wildcards.dataset)}
    if wildcards.run != "baseline":
        inputs["embeddings"] = hdclip_embeddings(wildcards.dataset)
    return inputs


def restore_dir(dataset, backbone, run):
    return RESULTS / "restore" / dataset / backbone / run


def restore_done(dataset, backbone, run):
    """Every shard's record of one run: the outputs of its restoration jobs."""
    n = RES["shards"]
    return [restore_dir(dataset, backbone, run) / f"shard-{i}-of-{n}.done.json"
            for i in range(n)]


def score_file(dataset, backbone, run, ext="json"):
    return RESULTS / "scores" / dataset / backbone / f"{run}.{ext}"


def score_metrics(dataset):
    m = config["metrics"]
    return m["with_reference"] if has_reference(dataset) else m["without_reference"]


def main_runs(with_reference):
    """(set, backbone, mode) of tables 1 (sets with HQ images) and 7 (without; its backbones
    are restoration.realworld.backbones, FaithDiff in the paper)."""
    return [(d, b, m) for d in RES["sets"] if has_reference(d) == with_reference
            for b in zephir.config.restoration_backbones(config, d) for m in RES["modes"]]


def sweep():
    """(set, backbone, run) of table 5 and figure 11: CFPG over the w_orth x w_par grid."""
    sw = RES["sweep"]
    if not RES["sets"] or not sw["w_orth"] or not sw["w_par"]:
        return []
    dataset = sw["set"] or RES["sets"][0]
    backbone = sw["backbone"] or RES["backbones"][0]
    return [(dataset, backbone, run_name("cfpg", wo, wp))
            for wo in sw["w_orth"] for wp in sw["w_par"]]


def figure21_backbone():
    """Fig. 21's backbone: the paper's FaithDiff where it restores the sets without HQ images,
    else the first backbone that does."""
    restored = list(dict.fromkeys(r[1] for r in main_runs(False)))
    return "faithdiff" if "faithdiff" in restored else (restored or [None])[0]


def comparisons():
    """(set, backbone) of section 9.1's comparison figures: every set with every backbone that
    restores it."""
    return list(dict.fromkeys(r[:2] for r in main_runs(True) + main_runs(False)))


def comparison_file(dataset, backbone):
    return RESULTS / "figures" / "comparison" / f"{dataset}-{backbone}.png"


def figure_runs(number, dataset=None, backbone=None):
    """The runs figures 6 (first set with HQ images, first backbone, every mode), 11 (the
    sweep), 21 (the sets without HQ images, figure21_backbone, every mode, set by set) and
    the comparison of (dataset, backbone) are drawn from, as (set, backbone, run)."""
    if number == 11:
        return sweep()
    if number == 21:
        return [r for r in main_runs(False) if r[1] == figure21_backbone()]
    if number == "comparison":
        return [(dataset, backbone, m) for m in RES["modes"]]
    main = main_runs(True)
    return [r for r in main if r[:2] == main[0][:2]] if main else []


def figure_records(number):
    """One shard record of each run of a figure (its folder holds the images)."""
    return [restore_done(*r)[0] for r in figure_runs(number)]


def figure_shards(number):
    """Every shard record of a figure's runs: the images of every shard must be there."""
    return [f for r in figure_runs(number) for f in restore_done(*r)]


def figure_blind(number):
    runs = figure_runs(number)
    return blind_manifest(runs[0][0]) if runs else []


def figure_lq(number, dataset=None, backbone=None):
    """The LQ sources of a figure's sets, in the order of its runs."""
    runs = figure_runs(number, dataset, backbone)
    return [lq_input(d) for d in dict.fromkeys(r[0] for r in runs)]


def score_inputs(wildcards):
    inputs = {"done": restore_done(wildcards.dataset, wildcards.backbone, wildcards.run),
              "config": restore_config_file()}
    if has_reference(wildcards.dataset):
        inputs["reference"] = blind_manifest(wildcards.dataset)
    return inputs


def score_args(wildcards):
    """Reference folder (sets with HQ images), metrics and what the scores are of."""
    d = wildcards.dataset
    ref = f"--reference {reference_dir(d)}" if has_reference(d) else ""
    label = config["datasets"][d].get("label", d).replace("'", "")
    meta = (f"dataset={d} 'label={label}' backbone={wildcards.backbone} run={wildcards.run}")
    return f"{ref} --metrics {' '.join(score_metrics(d))} --meta {meta}"


def restoration_scores():
    return [score_file(*r) for r in main_runs(True)]


def realworld_scores():
    return [score_file(*r) for r in main_runs(False)]


def sweep_scores():
    return [score_file(*r) for r in sweep()]


# -- report: the tables and figures are the entries of zephir.report.registry, listed there
# only. A table's entry names the runs it reads (`runs`); TABLE_RUNS maps them to models here.
REPORT = zephir.report.registry
TABLES = list(REPORT.TABLES)
CONFIG_TABLES = list(REPORT.CONFIG_TABLES)
FIGURES = list(REPORT.FIGURES)
TABLE_RUNS = {"methods": table2_models, "losses": table3_models, "topk_gap": table4_models,
              "methods_transfer": lambda: table2_models() + transfer_results(),
              "transfer": lambda: table2_models() + transfer_results() if transfer_results()
              else [],
              "restorations": restoration_scores, "realworld": realworld_scores,
              "sweep": sweep_scores}


def table_runs(name):
    """The runs whose results make table ``name``: model checkpoints (estimation) or score
    files (restoration)."""
    runs = REPORT.TABLES[name].runs
    if runs not in TABLE_RUNS:
        raise ValueError(f"table {name} reads runs {runs!r}, which common.smk does not map to "
                         f"results (TABLE_RUNS: {', '.join(TABLE_RUNS)})")
    return TABLE_RUNS[runs]()


def planned_tables():
    """The tables this config has results for (table 7 needs an hq: false set, ...)."""
    return [t for t in TABLES if table_runs(t)]


def table_inputs(wildcards):
    """The results files a table is built from: the evaluations of its models, or its score
    files."""
    runs = table_runs(wildcards.table)
    return [r if str(r).endswith(".json") else evaluation(r) for r in runs]


def table_flag(wildcards):
    """The `zephir table` flag those files are passed with (the table's declared source)."""
    return REPORT.TABLES[wildcards.table].source.flag


def table_file(name, ext="md"):
    return RESULTS / "tables" / f"{name}.{ext}"


def table_stem(wildcards):
    """`zephir table --out`: the table's files without their suffix."""
    return RESULTS / "tables" / wildcards.table


def figure_file(n):
    """A figure of the paper by number (fig7.png), one beyond it by name (fig-transfer.png)."""
    return RESULTS / "figures" / (f"fig{n}.png" if isinstance(n, int) else f"fig-{n}.png")


def planned_figures():
    """The figures this config has results for (6 and 11 need restoration runs, "transfer" a
    transfer set)."""
    return [n for n in FIGURES if (n not in (6, 11, 21) or figure_runs(n))
            and (n != "transfer" or transfer_results()) and n != "comparison"]


def headline_dir():
    """The headline numbers `dvc metrics show` prints (rule headline)."""
    return RESULTS / "metrics"


def headline_inputs(wildcards):
    """The JSON of tables 2 and 1, those this config makes."""
    return {t: table_file(t, "json") for t in ("table2", "table1") if t in planned_tables()}


def headline_flags(wildcards, input):
    return " ".join(f"--{t} {path}" for t, path in input.items())


def report_targets():
    """The estimation and restoration tables and figures this config has results for, the
    tables computed from the config alone (table 6) and the headline numbers."""
    headline = [headline_dir()] if headline_inputs(None) else []
    return ([table_file(t) for t in planned_tables()] + [table_file(t) for t in CONFIG_TABLES]
            + [figure_file(n) for n in planned_figures()]
            + [comparison_file(d, b) for d, b in comparisons()] + headline)


def all_targets():
    """Everything the workflow builds: labelled sets, blind LQ sets, HD-CLIP, the estimation
    and restoration tables and figures this config has results for."""
    return ([synth_manifest(), eval_manifest()]
            + [blind_manifest(name) for name in config["blind_sets"]]
            + [hdclip_checkpoint()] + report_targets())


# -- the parts of the paper (zephir.stages; DVC's stages run them): rule stage_<name> of the
# Snakefile builds what `all` needs from the jobs of stage <name> and those before it.
def datasets_used():
    """The datasets a job reads: training, evaluation, blind and restoration sets."""
    names = [config["train_set"], config["eval_set"], *config["blind_sets"], *RES["sets"],
             EST["transfer"]["set"]]
    return list(dict.fromkeys(n for n in names if n is not None))


def restoration_runs():
    """(set, backbone, run) of every restoration run: tables 1, 7 and table 5's sweep."""
    return main_runs(True) + main_runs(False) + sweep()


def stage_targets(name):
    """What `all` needs from the jobs of stage ``name`` (zephir.stages.STAGES)."""
    if name == "synthesize":
        return ([dataset_index(d) for d in datasets_used()] + [synth_manifest(), eval_manifest()]
                + [blind_manifest(d) for d in config["blind_sets"]])
    if name == "train":
        return [hdclip_checkpoint()]
    if name == "estimate":  # the models of the estimation tables (2-4), but HD-CLIP itself
        models = dict.fromkeys(m for t in planned_tables() for m in table_runs(t)
                               if str(m).endswith(".safetensors") and m != hdclip_checkpoint())
        return [evaluation(m) for m in models] + transfer_results()
    if name == "restore":
        return [f for r in restoration_runs() for f in restore_done(*r)]
    if name == "score":
        return [score_file(*r) for r in restoration_runs()]
    if name == "report":
        return report_targets()
    raise ValueError(f"no stage {name!r} (zephir.stages.NAMES: {', '.join(zephir.stages.NAMES)})")
