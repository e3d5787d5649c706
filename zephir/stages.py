"""The parts of the paper as DVC stages, declared once: rules, package code, config, results.

``dvc.yaml`` (the embedded default) and ``workflow/dvc/paper/dvc.yaml`` (the paper) have one
stage per entry of :data:`STAGES`, in this order; each stage runs Snakemake's target
``stage_<name>`` (Snakefile), whose jobs are those of the stage's :attr:`Stage.rules`. Both
files are written from here (:data:`DVC_FILES`, :func:`render`) by ``zephir dvc``;
``zephir dvc --check`` (and ``tests/test_dvc.py``) fails where a committed file differs from
what it writes. The tests check this module against the workflow's DAG and the package's
imports.

Snakemake decides by timestamps and DVC by hashes. So that they agree on package code, every
rule of a stage carries ``params: code=CODE["<stage>"]`` (``workflow/rules/common.smk``), the
:func:`fingerprint` of the stage's :attr:`Stage.code`: a change of those files reruns, in
Snakemake, exactly the jobs whose stage DVC reruns for it.
"""
from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from zephir.report import registry

#: Package code every ``zephir`` command runs: the command line, the config loader and its
#: schema (which runs the synthesiser's own checks, and fills HD-CLIP's defaults from its
#: settings), image I/O, the degradation model.
_COMMAND = ("zephir/__init__.py", "zephir/__main__.py", "zephir/quiet.py", "zephir/cli.py",
            "zephir/commands", "zephir/extras.py",
            "zephir/config.py", "zephir/schema.py", "zephir/schemas", "zephir/io.py",
            "zephir/datasets.py",
            "zephir/parallel.py", "zephir/seed.py", "zephir/degrade/__init__.py",
            "zephir/degrade/levels.py", "zephir/degrade/ops.py", "zephir/degrade/synth.py",
            "zephir/hdclip/__init__.py", "zephir/hdclip/config.py")
#: The one trainer of HD-CLIP, the baselines and the ablations, and its evaluation (crops, or
#: whole images as ``zephir predict`` reads them).
_TRAINER = ("zephir/baselines", "zephir/checkpoints.py", "zephir/conditioning.py",
            "zephir/estimator_interface.py",
            "zephir/estimator_evaluation.py", "zephir/estimator_registry.py", "zephir/safe_load.py",
            "zephir/hdclip/configs", "zephir/hdclip/factory.py", "zephir/hdclip/interp.py", "zephir/hdclip/losses.py",
            "zephir/hdclip/model.py", "zephir/hdclip/ordinal.py", "zephir/hdclip/predict.py",
            "zephir/metrics/__init__.py",
            "zephir/metrics/estimation.py", "zephir/training")
#: Workflow files every stage runs: the Snakefile (includes every rule file), the shared
#: helpers, the plan (zephir.plan: the runs and every path between rules), the software
#: environment of every rule.
_WORKFLOW = ("Snakefile", "workflow/rules/common.smk", "zephir/plan.py",
             "workflow/envs/zephir.yaml")


@dataclass(frozen=True)
class Stage:
    """One part of the paper. Paths are relative to the repository root, except ``reads`` and
    ``outs``, which are relative to the config's results folder (``results/<name>/``)."""

    name: str
    #: the Snakemake rules whose jobs the stage runs
    rules: tuple[str, ...]
    #: the package files and folders those jobs run (every file in a folder counts)
    code: tuple[str, ...]
    #: the rule files of those rules (besides _WORKFLOW)
    smk: tuple[str, ...]
    #: the config keys those rules read (dotted for part of a section); () = the whole file
    params: tuple[str, ...]
    #: results of earlier stages that its jobs read
    reads: tuple[str, ...]
    #: the results folders it writes; no two stages share one
    outs: tuple[str, ...]

    @property
    def target(self) -> str:
        """The Snakemake target that builds the stage (a rule of the Snakefile)."""
        return f"stage_{self.name}"

    @property
    def workflow(self) -> tuple[str, ...]:
        return _WORKFLOW + self.smk


STAGES = (
    Stage("synthesize", rules=("dataset_index", "synth_config", "synth", "synth_eval", "blind"),
          code=_COMMAND + ("zephir/degrade/blind.py",),
          smk=("workflow/rules/data.smk", "workflow/rules/synth.smk"),
          params=("datasets", "train_set", "eval_set", "blind_sets", "synth", "blind",
                  "restoration.sets", "estimation.transfer.set"),
          reads=(), outs=("data", "synth", "synth_eval", "blind")),
    Stage("train", rules=("hdclip_config", "hdclip_train"), code=_COMMAND + _TRAINER,
          smk=("workflow/rules/hdclip.smk",),
          params=("datasets", "train_set", "eval_set", "synth", "hdclip"),
          reads=("data", "synth", "synth_eval"), outs=("hdclip",)),
    # and the transfer evaluation (beside table 2): its set, and every table 2 model on it
    Stage("estimate", rules=("baseline_train", "ablation_train", "daclip_released",
                             "transfer_set", "transfer_eval"),
          code=_COMMAND + _TRAINER + ("zephir/degrade/transfer.py",),
          smk=("workflow/rules/hdclip.smk", "workflow/rules/estimation.smk"),
          params=("datasets", "train_set", "eval_set", "synth", "hdclip", "estimation"),
          reads=("data", "synth", "synth_eval", "hdclip/config.yaml",
                 "hdclip/model.safetensors"),
          outs=("baselines", "ablation", "transfer")),
    Stage("restore", rules=("restore_config", "hdclip_embed", "restore"),
          code=_COMMAND + ("zephir/degrade/blind.py", "zephir/backbones", "zephir/baselines",
                           "zephir/bridge.py", "zephir/checkpoints.py", "zephir/conditioning.py",
                           "zephir/embed.py", "zephir/estimator_interface.py", "zephir/guidance",
                           "zephir/hdclip", "zephir/estimator_registry.py", "zephir/restore.py",
                           "zephir/safe_load.py", "zephir/weights.py"),
          smk=("workflow/rules/restore.smk", "workflow/envs/seesr.yaml",
               "workflow/envs/pasd.yaml", "workflow/envs/faithdiff.yaml"),
          params=("datasets", "train_set", "eval_set", "blind_sets", "restoration", "weights"),
          reads=("data", "blind", "hdclip/model.safetensors"), outs=("restore",)),
    # restore.smk: its wildcard constraints (backbone, run) apply to the score rule too
    Stage("score", rules=("score",),
          code=_COMMAND + ("zephir/metrics/__init__.py", "zephir/metrics/iqa.py",
                           "zephir/safe_load.py", "zephir/weights.py"),
          smk=("workflow/rules/restore.smk", "workflow/rules/score.smk"),
          params=("datasets", "train_set", "eval_set", "blind_sets", "restoration", "weights",
                  "metrics"),
          reads=("blind", "restore"), outs=("scores",)),
    # the whole config: every table states the config's fingerprint
    # and one rule per figure of the registry (report.smk makes them in one loop)
    Stage("report", rules=("table", "table6_config", "table6", "headline", "numbers",
                           *(f.rule for f in registry.FIGURES.values())),
          # figure 1 reads a trained model, table 6 builds the encoders of table 2
          code=_COMMAND + ("zephir/degrade/blind.py", "zephir/metrics/__init__.py",
                           "zephir/metrics/estimation.py", "zephir/report", "zephir/baselines",
                           "zephir/checkpoints.py", "zephir/conditioning.py",
                           "zephir/estimator_interface.py", "zephir/hdclip",
                           "zephir/estimator_registry.py", "zephir/safe_load.py"),
          smk=("workflow/rules/report.smk",),
          params=(),
          reads=("data", "synth", "synth_eval", "blind", "hdclip/eval", "baselines",
                 "ablation", "transfer", "restore", "scores"),
          outs=("tables", "figures", "metrics")),
)

NAMES = tuple(s.name for s in STAGES)


def stage(name: str) -> Stage:
    """The stage called ``name``."""
    for s in STAGES:
        if s.name == name:
            return s
    raise KeyError(f"no stage {name!r}; stages: {', '.join(NAMES)}")


def _planned(path: str, config: dict) -> bool:
    """Results that only some configs make: the evaluation set's labelled samples, the
    transfer evaluation."""
    if path == "synth_eval":
        return config.get("eval_set") is not None
    if path == "transfer":
        return config.get("estimation", {}).get("transfer", {}).get("set") is not None
    return True


def outs(name: str, config: dict) -> list[str]:
    """The results folders stage ``name`` writes under ``config``, relative to results/<name>/."""
    return [p for p in stage(name).outs if _planned(p, config)]


def reads(name: str, config: dict) -> list[str]:
    """The results of earlier stages that stage ``name`` reads under ``config``."""
    return [p for p in stage(name).reads if _planned(p.split("/")[0], config)]


def code_files(name: str, root: str | Path | None = None) -> list[Path]:
    """Every file of stage ``name``'s code under ``root`` (by default, where the imported
    package lives), sorted; compiled files (``__pycache__``, ``.pyc``) are left out."""
    root = Path(root) if root is not None else Path(__file__).resolve().parents[1]
    files = []
    for entry in stage(name).code:
        path = root / entry
        if path.is_dir():
            files += [f for f in path.rglob("*") if f.is_file() and f.suffix != ".pyc"
                      and "__pycache__" not in f.relative_to(root).parts]
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"stage {name}: its code {entry} is not under {root}")
    return sorted(files)


def fingerprint(name: str, root: str | Path | None = None) -> str:
    """A short hash of the contents (and paths) of stage ``name``'s code."""
    root = Path(root) if root is not None else Path(__file__).resolve().parents[1]
    digest = hashlib.sha1()
    for f in code_files(name, root):
        digest.update(f.relative_to(root).as_posix().encode() + b"\0")
        digest.update(hashlib.sha1(f.read_bytes()).digest())
    return digest.hexdigest()[:12]


# -------------------------------------------------------------------- the DVC files
@dataclass(frozen=True)
class DvcFile:
    """One ``dvc.yaml``: the stages of :data:`STAGES` on one config, run one way."""

    #: where the file lives, relative to the repository root
    path: str
    #: the config file the stages run (its keys are their params), from the repository root
    config: str
    #: the command each stage runs its target with
    snakemake: str
    #: the repository root relative to the file's folder, where the stages run (None: there)
    wdir: str | None
    #: the comment the file opens with
    header: str
    #: what follows the stages, verbatim (metrics and plots, or why there are none);
    #: ``{results}`` stands for the config's results folder
    footer: str
    #: per stage, the folders of data/ (data.dvc) its jobs read: datasets and weights
    data: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


_EMBEDDED_HEADER = """\
# DVC's view of the workflow on the embedded default (config/config.yaml): one stage per part of
# the paper, each running its Snakemake target (rule stage_<name> of the Snakefile). README, "DVC".
# Written by `zephir dvc` from zephir/stages.py, which declares each stage's rules, package code,
# config keys and results folders: edit that, not this file (`zephir dvc --check` compares).
#
# `dvc repro` reruns a stage when its code, workflow files, config keys or input results change,
# and records in dvc.lock the hash of everything it read and wrote. Snakemake decides inside a
# stage what is out of date: every rule carries its stage's code fingerprint as a param, so that
# a code change DVC reruns a stage for also reruns its jobs. Outs persist: Snakemake keeps the
# jobs that are finished (an interrupted stage resumes, training from last.pt). The job logs in
# {results}/logs/ are no out: they describe one run, not its results.
"""

_EMBEDDED_FOOTER = """\

# `dvc metrics show`: the headline numbers (rule headline, zephir.report.headline): HD-CLIP's
# type accuracy, MAE, SROCC, PCC (table 2) and table 1's mean PSNR / LPIPS per backbone and mode,
# one small file per row, at most 40 values. Every table's cells stay in tables/*.json (pass a
# file by its path: `dvc metrics show {results}/tables/table2.json`).
metrics:
  - {results}/metrics

# `dvc plots show`: HD-CLIP's training curves, and figure 7 (predicted against true level of
# each type, HD-CLIP and the MM-RealSR-style regressor) as drawn and from the predictions it reads
# (the scatter plots include mixtures, which the figure leaves out).
plots:
  - hdclip_loss:
      title: HD-CLIP training loss
      x: step
      y:
        {results}/hdclip/train_log.csv: [loss, loss_conf, loss_level, loss_slerp]
  - hdclip_validation:
      title: HD-CLIP validation
      x: step
      y:
        {results}/hdclip/val_metrics.csv: [type_acc, srocc, pcc]
  - {results}/figures/fig7.png
""" + "".join(f"""\
  - fig7_{t}:
      title: "Fig. 7, {t}: predicted against true level"
      template: scatter
      x: {t}_true
      y:
        {{results}}/hdclip/eval/predictions.csv: {t}_pred
        {{results}}/baselines/mmrealsr_style/eval/predictions.csv: {t}_pred
""" for t in ("blur", "noise", "jpeg", "downsample"))

_PAPER_HEADER = """\
# DVC's view of the paper (config/paper.yaml): the six stages of the repository's dvc.yaml, run
# through the Slurm profile, with the datasets and weights under data/ (data.dvc) as deps:
#   dvc pull && dvc repro workflow/dvc/paper/dvc.yaml     (README, "DVC")
# Each stage runs from the repository root (wdir); metrics and plots name their files from here.
# Written by `zephir dvc` from zephir/stages.py, as dvc.yaml is: edit that, not this file.
"""

_PAPER_FOOTER = """\

# No metrics or plots here: DVC reads those of every dvc.yaml in the repository, and the paper's
# files would be reported missing wherever only the embedded default has run. Pass the paper's
# files instead (README, "DVC"): dvc metrics show {results}/metrics (the headline numbers),
# or any results file by its path, e.g. {results}/hdclip/metrics.json
"""

DVC_FILES = (
    DvcFile("dvc.yaml", config="config/config.yaml", snakemake="snakemake -c2", wdir=None,
            header=_EMBEDDED_HEADER, footer=_EMBEDDED_FOOTER),
    DvcFile("workflow/dvc/paper/dvc.yaml", config="config/paper.yaml",
            snakemake="snakemake --profile slurm", wdir="../../..",
            header=_PAPER_HEADER, footer=_PAPER_FOOTER,
            data={"synthesize": ("data/DIV2K", "data/RealSR", "data/DRealSR", "data/RealDeg"),
                  "train": ("data/weights",), "estimate": ("data/weights",),
                  "restore": ("data/weights", "data/repos"), "score": ("data/weights",)}),
)


def _yaml(node) -> str:
    """Block YAML in the DVC files' style: lists indented under their key, empty for null."""
    import yaml

    class Dumper(yaml.SafeDumper):
        def increase_indent(self, flow=False, indentless=False):
            return super().increase_indent(flow, False)

    text = yaml.dump(node, Dumper=Dumper, sort_keys=False, default_flow_style=False, width=100)
    return text.replace(": null\n", ":\n")


def render(dvc_file: DvcFile, root: str | Path = ".") -> str:
    """The text of ``dvc_file``: its stages from :data:`STAGES` under its config (read from
    ``root``, the repository), between its header and footer."""
    from zephir import config as zconfig

    cfg = zconfig.load(Path(root) / dvc_file.config)
    res = zconfig.results_dir(cfg).as_posix()
    unknown = set(dvc_file.data) - set(NAMES)
    if unknown:
        raise ValueError(f"{dvc_file.path}: data of no stage {sorted(unknown)} ({NAMES})")
    body = {}
    for s in STAGES:
        entry = {"wdir": dvc_file.wdir} if dvc_file.wdir else {}
        entry["cmd"] = f"{dvc_file.snakemake} {s.target}"
        entry["deps"] = [*s.workflow, *s.code, *(f"{res}/{r}" for r in reads(s.name, cfg)),
                         *dvc_file.data.get(s.name, ())]
        entry["params"] = [{dvc_file.config: list(s.params) or None}]
        entry["outs"] = [{f"{res}/{o}": {"persist": True}} for o in outs(s.name, cfg)]
        body[s.name] = entry
    return (dvc_file.header.format(results=res) + _yaml({"stages": body})
            + dvc_file.footer.format(results=res))


def write_dvc_files(root: str | Path = ".", check: bool = False) -> list[str]:
    """Write every file of :data:`DVC_FILES` under ``root`` (atomically), or with ``check``
    write none; returns the files whose text differed from :func:`render`'s."""
    from zephir import io as zio

    stale = []
    for f in DVC_FILES:
        path, text = Path(root) / f.path, render(f, root)
        if not path.is_file() or path.read_text() != text:
            stale.append(f.path)
            if not check:
                zio.write_text(path, text)
    return stale
