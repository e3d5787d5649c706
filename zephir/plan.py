"""The experiment plan: which runs a config makes, which results feed which table, figure and
stage, and every path that flows between the workflow's rules.

:class:`Plan` takes a validated config (:func:`zephir.config.check`) and answers from it
alone; nothing here runs a job or reads a results file. ``workflow/rules/common.smk`` builds
one (``PLAN``) and its rules ask it for their inputs and outputs; ``tests/test_plan.py``
checks it without Snakemake. The paths a ``zephir`` command needs by itself (the results
folder, the labelled sets a training run reads) are :mod:`zephir.config`'s, used from here.

Every path is relative to the repository root: ``results/<name>/...``
(:func:`zephir.config.results_dir`).

A *run* of restoration is ``(set, backbone, run)``, where ``run`` is a mode (baseline, cfg,
cfpg) or a point of table 5's sweep (:func:`run_name`); a *model* of degradation estimation is
its checkpoint, ``<folder>/model.safetensors``, whose evaluation files sit in ``<folder>/eval``.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from zephir import config as zconfig
from zephir import stages
from zephir.report import registry

#: The baselines of table 2 (zephir.baselines), each a training job of its own.
BASELINES = ("clip_zeroshot", "daclip_style", "mmrealsr_style")
#: The restoration modes (section 3.2): no HD-CLIP, the CFG variant, CFPG (eq. 12-15).
MODES = ("baseline", "cfg", "cfpg")
#: What `zephir train --evaluate` writes beside a checkpoint, in eval/.
EVAL_FILES = ("metrics.json", "predictions.csv", "arrays.npz")
#: Table 3's losses, the letters of zephir.config.LOSS_ABLATIONS.
DEFAULT_LOSSES = "D"


def _gap(g) -> str:
    return f"{float(g):g}"


def _topk(k) -> str:
    return "all" if k in (None, "all") else str(k)


def run_name(mode: str, w_orth=None, w_par=None) -> str:
    """The folder of one restoration run: the mode, or for table 5's sweep CFPG at the given
    weights (``cfpg-wo<w_orth>-wp<w_par>``)."""
    if w_orth is None:
        return mode
    return f"cfpg-wo{float(w_orth):g}-wp{float(w_par):g}"


def run_settings(run: str) -> dict[str, str]:
    """The inverse of :func:`run_name`: ``{"mode": ...}`` plus, for a sweep point, its
    ``w_orth`` and ``w_par`` as written in the name."""
    if run in MODES:
        return {"mode": run}
    if not run.startswith("cfpg-wo") or "-wp" not in run:
        raise ValueError(f"restoration run {run!r} is neither a mode ({', '.join(MODES)}) nor "
                         "a sweep point cfpg-wo<w_orth>-wp<w_par>")
    w_orth, w_par = run.removeprefix("cfpg-wo").split("-wp")
    return {"mode": "cfpg", "w_orth": w_orth, "w_par": w_par}


def eval_files(model_dir: str | Path) -> list[Path]:
    """What `zephir train --evaluate` writes next to a checkpoint in ``model_dir``."""
    return [Path(model_dir) / "eval" / f for f in EVAL_FILES]


def evaluation(checkpoint: str | Path, what: str = "metrics.json") -> Path:
    """One evaluation file of the model at ``checkpoint``."""
    return Path(checkpoint).parent / "eval" / what


def _is_file(path: str) -> bool:
    return Path(path).is_file()


class Plan:
    """The plan of one validated config.

    ``present``: whether an optional input file is there (DA-CLIP's released weights, the
    training captions); the one question about the disk the plan asks, passed in so that a
    test can answer it.
    """

    def __init__(self, config: dict, present: Callable[[str], bool] = _is_file):
        self.config = config
        self.present = present
        self.results = zconfig.results_dir(config)
        self.logs = self.results / "logs"
        self.est = config["estimation"]
        self.res = config["restoration"]

    # ------------------------------------------------------------------ data and synthesis
    def dataset_index(self, name: str) -> Path:
        """The image index of a dataset; every rule that reads images takes it as input."""
        return self.results / "data" / name / "index.csv"

    @property
    def synth_config(self) -> Path:
        """The synthesis stage's config (rule synth_config): the synth section, which the
        labelled sets of training and evaluation are made with."""
        return self.results / "synth" / "config.yaml"

    @property
    def synth_manifest(self) -> Path:
        """The labelled degradation set synthesised from the training dataset."""
        return zconfig.synth_manifest(self.config)

    def eval_synth_manifest(self, dataset: str) -> Path:
        """The labelled samples of ``dataset`` as an evaluation set (rule synth_eval)."""
        return zconfig.eval_synth_manifest(self.config, dataset)

    @property
    def eval_manifest(self) -> Path:
        """The labelled samples (their val split) every evaluation reads: training's
        validation, the models' eval/ files behind tables 2-4 and figures 3, 7, 9, 10. Those of
        eval_set (rule synth_eval), or the training set's own val split when it is null."""
        return zconfig.eval_manifest(self.config)

    @property
    def eval_sources(self) -> Path:
        """The clean images of the evaluation samples (figure 9 re-degrades their crops)."""
        return self.dataset_index(self.config["eval_set"] or self.config["train_set"])

    @property
    def captions(self) -> str | None:
        """The training set's captions file (datasets.<train_set>.captions), or None."""
        return self.config["datasets"][self.config["train_set"]].get("captions")

    @property
    def present_captions(self) -> str | None:
        """The captions file when it is there: an input of the training jobs, so that a new
        file retrains (a configured file that is missing stops the job at its start, with a
        message naming it)."""
        return self.captions if self.captions and self.present(self.captions) else None

    def blind_manifest(self, name: str) -> Path:
        """Real-ESRGAN second-order LQ test images of a dataset."""
        return self.results / "blind" / name / "manifest.csv"

    def reference_dir(self, dataset: str) -> Path:
        """The HQ images the blind stage wrote beside the LQ ones (mod-cropped, same names)."""
        return self.results / "blind" / dataset / "hq"

    def datasets_used(self) -> list[str]:
        """The datasets a job reads: training, evaluation, blind and restoration sets."""
        c = self.config
        names = [c["train_set"], c["eval_set"], *c["blind_sets"], *self.res["sets"],
                 self.est["transfer"]["set"]]
        return list(dict.fromkeys(n for n in names if n is not None))

    # ------------------------------------------------------------------ HD-CLIP and estimation
    @property
    def hdclip_config(self) -> Path:
        """The training stage's config (rule hdclip_config): synth and hdclip sections."""
        return self.results / "hdclip" / "config.yaml"

    @property
    def hdclip_checkpoint(self) -> Path:
        """The trained HD-CLIP model: the weights of its folder (model.safetensors beside
        config.json and the model card README.md; zephir.checkpoints)."""
        return self.results / "hdclip" / "model.safetensors"

    def ablation_dir(self, losses: str, topk, gap) -> Path:
        """Where one ablation job of tables 3 and 4 writes its model and evaluation."""
        return self.results / "ablation" / f"{losses}-k{topk}-g{gap}"

    def ablation_checkpoint(self, losses: str, topk, gap) -> Path:
        """One ablation's model. With the full budget (estimation.ablation_steps: null) the
        default combination (D, the configured top-k and gap) is the main HD-CLIP model."""
        model = self.config["hdclip"]["model"]
        default = (DEFAULT_LOSSES, _topk(model["topk"]), _gap(model["gap"]))
        if self.est["ablation_steps"] is None and (losses, _topk(topk), _gap(gap)) == default:
            return self.hdclip_checkpoint
        return self.ablation_dir(losses, _topk(topk), _gap(gap)) / "model.safetensors"

    def baseline_checkpoint(self, method: str) -> Path:
        """A baseline's trained model (its folder's weights, as hdclip_checkpoint)."""
        return self.results / "baselines" / method / "model.safetensors"

    @property
    def daclip_released(self) -> bool:
        """DA-CLIP's released weights join table 2 when the configured file is there."""
        path = self.est["daclip_weights"]
        return bool(path) and self.present(path)

    def table2_models(self) -> list[Path]:
        """HD-CLIP and the baselines it is compared with (with DA-CLIP's released weights when
        present): tables 2 and 2-beyond."""
        released = ["daclip_released"] if self.daclip_released else []
        return ([self.baseline_checkpoint(m) for m in [*BASELINES, *released]]
                + [self.hdclip_checkpoint])

    def model_checkpoint(self, model: str) -> Path:
        """The checkpoint of a model of table 2 by name: hdclip, or a baseline's method."""
        return self.hdclip_checkpoint if model == "hdclip" else self.baseline_checkpoint(model)

    def transfer_set(self, dataset: str) -> Path:
        """The photos of ``dataset`` degraded by the transfer operators (rule transfer_set)."""
        return self.results / "transfer" / "set" / dataset / "manifest.csv"

    @property
    def transfer_manifest(self) -> Path | None:
        """The transfer set of estimation.transfer.set, or None."""
        name = self.est["transfer"]["set"]
        return None if name is None else self.transfer_set(name)

    def transfer_dir(self, model: str) -> Path:
        """The folder of a table 2 model's transfer evaluation (rule transfer_eval writes its
        eval_files there, as training writes a model's own)."""
        return self.results / "transfer" / model

    def transfer_results(self) -> list[Path]:
        """The transfer evaluations of table 2's models (none without a transfer set)."""
        if self.transfer_manifest is None:
            return []
        return [eval_files(self.transfer_dir(Path(c).parent.name))[0]
                for c in self.table2_models()]

    def table3_models(self) -> list[Path]:
        """The loss ablations A-D at the configured top-k and gap: table 3, figure 10."""
        model = self.config["hdclip"]["model"]
        return [self.ablation_checkpoint(losses, model["topk"], model["gap"])
                for losses in self.est["losses"]]

    def table4_models(self) -> list[Path]:
        """The top-k x gap ablations with losses D: table 4."""
        return [self.ablation_checkpoint(DEFAULT_LOSSES, k, g)
                for k in self.est["topk"] for g in self.est["gap"]]

    # ------------------------------------------------------------------ restoration
    def has_reference(self, dataset: str) -> bool:
        """A blind set is scored against its HQ images; an hq: false set has none."""
        return self.config["datasets"][dataset]["hq"]

    def lq_input(self, dataset: str) -> Path:
        """What a set's restoration reads: its blind manifest (Real-ESRGAN LQ images), or for
        an hq: false set (RealDeg) the index of its images as they are."""
        return (self.blind_manifest(dataset) if self.has_reference(dataset)
                else self.dataset_index(dataset))

    @property
    def restore_config(self) -> Path:
        """The restoration stage's config (rule restore_config)."""
        return self.results / "restore" / "config.yaml"

    def hdclip_embeddings(self, dataset: str) -> Path:
        """HD-CLIP's conditioning of a set's LQ images (rule hdclip_embed)."""
        return self.results / "restore" / dataset / "hdclip-embeddings.safetensors"

    def restore_inputs(self, dataset: str, run: str) -> dict[str, Path]:
        """A restore job's inputs: the restoration config, the LQ images and, in the modes
        that use HD-CLIP, the set's conditioning file."""
        inputs = {"config": self.restore_config, "lq": self.lq_input(dataset)}
        if run != "baseline":
            inputs["embeddings"] = self.hdclip_embeddings(dataset)
        return inputs

    def restore_dir(self, dataset: str, backbone: str, run: str) -> Path:
        return self.results / "restore" / dataset / backbone / run

    def restore_done(self, dataset: str, backbone: str, run: str) -> list[Path]:
        """Every shard's record of one run: the outputs of its restoration jobs."""
        n = self.res["shards"]
        return [self.restore_dir(dataset, backbone, run) / f"shard-{i}-of-{n}.done.json"
                for i in range(n)]

    def score_file(self, dataset: str, backbone: str, run: str, ext: str = "json") -> Path:
        return self.results / "scores" / dataset / backbone / f"{run}.{ext}"

    def score_inputs(self, dataset: str, backbone: str, run: str) -> dict:
        """A score job's inputs: the run's shard records, the restoration config and, for a
        set with HQ images, its blind manifest."""
        inputs = {"done": self.restore_done(dataset, backbone, run),
                  "config": self.restore_config}
        if self.has_reference(dataset):
            inputs["reference"] = self.blind_manifest(dataset)
        return inputs

    def score_metrics(self, dataset: str) -> list[str]:
        """The metrics a set is scored with: full-reference where it has HQ images."""
        m = self.config["metrics"]
        return m["with_reference"] if self.has_reference(dataset) else m["without_reference"]

    def main_runs(self, with_reference: bool) -> list[tuple[str, str, str]]:
        """(set, backbone, mode) of tables 1 (sets with HQ images) and 7 (without; its
        backbones are restoration.realworld.backbones, FaithDiff in the paper)."""
        return [(d, b, m) for d in self.res["sets"] if self.has_reference(d) == with_reference
                for b in zconfig.restoration_backbones(self.config, d) for m in self.res["modes"]]

    def sweep(self) -> list[tuple[str, str, str]]:
        """(set, backbone, run) of table 5 and figure 11: CFPG over the w_orth x w_par grid."""
        sw = self.res["sweep"]
        if not self.res["sets"] or not sw["w_orth"] or not sw["w_par"]:
            return []
        dataset = sw["set"] or self.res["sets"][0]
        backbone = sw["backbone"] or self.res["backbones"][0]
        return [(dataset, backbone, run_name("cfpg", wo, wp))
                for wo in sw["w_orth"] for wp in sw["w_par"]]

    def restoration_runs(self) -> list[tuple[str, str, str]]:
        """(set, backbone, run) of every restoration run: tables 1, 7 and table 5's sweep."""
        return self.main_runs(True) + self.main_runs(False) + self.sweep()

    def backbones(self) -> list[str]:
        """Every backbone some set is restored with (the restore rule's wildcard)."""
        return list(dict.fromkeys(self.res["backbones"]
                                  + (self.res["realworld"]["backbones"] or [])))

    # ------------------------------------------------------------------ tables
    def table_runs(self, name: str) -> list[Path]:
        """The runs whose results make table ``name`` (its registry entry's ``runs``): model
        checkpoints (estimation) or score files (restoration)."""
        runs = registry.TABLES[name].runs
        groups = {
            "methods": self.table2_models, "losses": self.table3_models,
            "topk_gap": self.table4_models,
            "methods_transfer": lambda: self.table2_models() + self.transfer_results(),
            "transfer": lambda: (self.table2_models() + self.transfer_results()
                                 if self.transfer_results() else []),
            "restorations": lambda: [self.score_file(*r) for r in self.main_runs(True)],
            "realworld": lambda: [self.score_file(*r) for r in self.main_runs(False)],
            "sweep": lambda: [self.score_file(*r) for r in self.sweep()]}
        if runs not in groups:
            raise ValueError(f"table {name} reads runs {runs!r}, which zephir.plan does not map "
                             f"to results ({', '.join(groups)})")
        return groups[runs]()

    def planned_tables(self) -> list[str]:
        """The tables this config has results for (table 7 needs an hq: false set, ...)."""
        return [t for t in registry.TABLES if self.table_runs(t)]

    def table_inputs(self, name: str) -> list[Path]:
        """The results files table ``name`` is built from: the evaluations of its models, or
        its score files."""
        return [r if r.suffix == ".json" else evaluation(r) for r in self.table_runs(name)]

    def table_stem(self, name: str) -> Path:
        """`zephir table --out`: the table's files without their suffix."""
        return self.results / "tables" / name

    def table_file(self, name: str, ext: str = "md") -> Path:
        return self.results / "tables" / f"{name}.{ext}"

    @property
    def headline_dir(self) -> Path:
        """The headline numbers `dvc metrics show` prints (rule headline)."""
        return self.results / "metrics"

    def headline_inputs(self) -> dict[str, Path]:
        """The JSON of tables 2 and 1, those this config makes."""
        planned = self.planned_tables()
        return {t: self.table_file(t, "json") for t in ("table2", "table1") if t in planned}

    # ------------------------------------------------------------------ figures
    def figure_file(self, number, dataset: str | None = None,
                    backbone: str | None = None) -> Path:
        """A figure of the paper by number (fig7.png), one beyond it by name
        (fig-transfer.png), a comparison of one set and backbone."""
        if number == "comparison":
            return self.results / "figures" / "comparison" / f"{dataset}-{backbone}.png"
        return self.results / "figures" / (f"fig{number}.png" if isinstance(number, int)
                                           else f"fig-{number}.png")

    def comparisons(self) -> list[tuple[str, str]]:
        """(set, backbone) of section 9.1's comparison figures: every set with every backbone
        that restores it."""
        return list(dict.fromkeys(r[:2] for r in self.main_runs(True) + self.main_runs(False)))

    def figure21_backbone(self) -> str | None:
        """Fig. 21's backbone: the paper's FaithDiff where it restores the sets without HQ
        images, else the first backbone that does."""
        restored = list(dict.fromkeys(r[1] for r in self.main_runs(False)))
        return "faithdiff" if "faithdiff" in restored else (restored or [None])[0]

    def figure_runs(self, number, dataset: str | None = None,
                    backbone: str | None = None) -> list[tuple[str, str, str]]:
        """The runs a restoration figure is drawn from, as (set, backbone, run): 6 the first
        set with HQ images and its first backbone in every mode, 11 the sweep, 21 the sets
        without HQ images with figure21_backbone, set by set; a comparison one set and
        backbone in every mode."""
        if number == 11:
            return self.sweep()
        if number == 21:
            return [r for r in self.main_runs(False) if r[1] == self.figure21_backbone()]
        if number == "comparison":
            return [(dataset, backbone, m) for m in self.res["modes"]]
        if number == 6:
            main = self.main_runs(True)
            return [r for r in main if r[:2] == main[0][:2]] if main else []
        raise ValueError(f"figure {number} is drawn from no restoration runs")

    def figure_inputs(self, number, dataset: str | None = None,
                      backbone: str | None = None) -> dict[str, Path | list[Path]]:
        """The files figure ``number`` is drawn from, by its inputs' names in the registry
        (the flags of `zephir figure`), and ``shards``: files it needs done but is not passed
        (every shard of a restoration run, whose images the first shard's folder holds)."""
        hd = self.hdclip_checkpoint
        if number == 1:
            return {"checkpoint": hd}
        if number == 3:
            return {"arrays": evaluation(hd, "arrays.npz"),
                    "predictions": evaluation(hd, "predictions.csv"), "metrics": evaluation(hd)}
        if number == 7:
            models = (hd, self.baseline_checkpoint("mmrealsr_style"))
            return {"predictions": [evaluation(c, "predictions.csv") for c in models],
                    "metrics": [evaluation(c) for c in models]}
        if number == 8:
            return {"sources": self.dataset_index(self.config["train_set"])}
        if number == 9:
            return {"predictions": evaluation(hd, "predictions.csv"), "metrics": evaluation(hd),
                    "manifest": self.eval_manifest, "sources": self.eval_sources}
        if number == 10:
            models = self.table3_models()
            return {"arrays": [evaluation(c, "arrays.npz") for c in models],
                    "metrics": [evaluation(c) for c in models]}
        if number == "transfer":
            metrics = self.transfer_results()
            return {"predictions": [m.with_name("predictions.csv") for m in metrics],
                    "metrics": metrics}
        if number not in (6, 11, 21, "comparison"):
            raise ValueError(f"figure {number} of the registry has no inputs in zephir.plan "
                             "(Plan.figure_inputs)")
        runs = self.figure_runs(number, dataset, backbone)
        inputs: dict[str, Path | list[Path]] = {
            "restored": [self.restore_done(*r)[0] for r in runs],
            "shards": [f for r in runs for f in self.restore_done(*r)]}
        if number in (6, 11):
            inputs["blind"] = self.blind_manifest(runs[0][0]) if runs else []
        elif number == "comparison":
            inputs["lq"] = self.lq_input(dataset)
        else:
            inputs["lq"] = [self.lq_input(d) for d in dict.fromkeys(r[0] for r in runs)]
        return inputs

    def figure_options(self, number) -> dict[str, object]:
        """The config's value of each option figure ``number`` takes (by flag)."""
        values = {"type": self.est["figure_type"], "level": self.est["figure_level"],
                  "crop": self.res["figure_crop"]}
        return {o.flag: values[o.flag] for o in registry.FIGURES[number].options}

    def planned_figures(self) -> list:
        """The figures of the paper (and "transfer") this config has results for: 6, 11 and
        21 need their restoration runs, "transfer" a transfer set; the comparisons are
        :meth:`comparisons`."""
        return [n for n in registry.FIGURES if n != "comparison"
                and (n not in (6, 11, 21) or self.figure_runs(n))
                and (n != "transfer" or self.transfer_results())]

    @property
    def paper_dir(self) -> Path:
        """Where `snakemake figures` gathers the tables and figures."""
        return self.results / "paper"

    # ------------------------------------------------------------------ targets
    def report_targets(self) -> list[Path]:
        """The estimation and restoration tables and figures this config has results for,
        the tables computed from the config alone (table 6) and the headline numbers."""
        headline = [self.headline_dir] if self.headline_inputs() else []
        return ([self.table_file(t) for t in self.planned_tables()]
                + [self.table_file(t) for t in registry.CONFIG_TABLES]
                + [self.figure_file(n) for n in self.planned_figures()]
                + [self.figure_file("comparison", d, b) for d, b in self.comparisons()]
                + headline)

    def all_targets(self) -> list[Path]:
        """Everything the workflow builds (rule all): labelled sets, blind LQ sets, HD-CLIP,
        the tables and figures this config has results for."""
        return ([self.synth_manifest, self.eval_manifest]
                + [self.blind_manifest(name) for name in self.config["blind_sets"]]
                + [self.hdclip_checkpoint] + self.report_targets())

    def figures_targets(self) -> list[Path]:
        """What `snakemake figures` copies into :attr:`paper_dir`: every planned table (CSV,
        Markdown, LaTeX) and figure."""
        return ([self.table_file(t, ext) for t in self.planned_tables()
                 for ext in ("csv", "md", "tex")]
                + [self.figure_file(n) for n in self.planned_figures()])

    def stage_targets(self, name: str) -> list[Path]:
        """What `all` needs from the jobs of stage ``name`` (zephir.stages.STAGES)."""
        if name == "synthesize":
            return ([self.dataset_index(d) for d in self.datasets_used()]
                    + [self.synth_manifest, self.eval_manifest]
                    + [self.blind_manifest(d) for d in self.config["blind_sets"]])
        if name == "train":
            return [self.hdclip_checkpoint]
        if name == "estimate":  # the models of the estimation tables (2-4), but HD-CLIP itself
            models = dict.fromkeys(m for t in self.planned_tables() for m in self.table_runs(t)
                                   if m.suffix == ".safetensors" and m != self.hdclip_checkpoint)
            return [evaluation(m) for m in models] + self.transfer_results()
        if name == "restore":
            return [f for r in self.restoration_runs() for f in self.restore_done(*r)]
        if name == "score":
            return [self.score_file(*r) for r in self.restoration_runs()]
        if name == "report":
            return self.report_targets()
        raise ValueError(f"no stage {name!r} (zephir.stages.NAMES: {', '.join(stages.NAMES)})")
