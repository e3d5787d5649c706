"""The parts of the paper as DVC stages, declared once: rules, package code, config, results.

``dvc.yaml`` (the embedded default) and ``workflow/dvc/paper/dvc.yaml`` (the paper) have one
stage per entry of :data:`STAGES`, in this order; each stage runs Snakemake's target
``stage_<name>`` (Snakefile), whose jobs are those of the stage's :attr:`Stage.rules`.
``tests/test_dvc.py`` checks both files against this module, and this module against the
workflow's DAG and the package's imports.

Snakemake decides by timestamps and DVC by hashes. So that they agree on package code, every
rule of a stage carries ``params: code=CODE["<stage>"]`` (``workflow/rules/common.smk``), the
:func:`fingerprint` of the stage's :attr:`Stage.code`: a change of those files reruns, in
Snakemake, exactly the jobs whose stage DVC reruns for it.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

#: Package code every ``zephir`` command runs: the command line, the config loader and its
#: schema (which runs the synthesiser's own checks, and fills HD-CLIP's defaults from its
#: settings), image I/O, the degradation model.
_COMMAND = ("zephir/__init__.py", "zephir/__main__.py", "zephir/quiet.py", "zephir/cli.py",
            "zephir/commands", "zephir/extras.py",
            "zephir/config.py", "zephir/schema.py", "zephir/schemas", "zephir/io.py",
            "zephir/data.py",
            "zephir/parallel.py", "zephir/seed.py", "zephir/degrade/__init__.py",
            "zephir/degrade/levels.py", "zephir/degrade/ops.py", "zephir/degrade/synth.py",
            "zephir/hdclip/__init__.py", "zephir/hdclip/config.py")
#: The one trainer of HD-CLIP, the baselines and the ablations, and its evaluation (crops, or
#: whole images as ``zephir predict`` reads them).
_TRAINER = ("zephir/baselines", "zephir/checkpoints.py", "zephir/conditioning.py",
            "zephir/estimators.py",
            "zephir/evaluation.py", "zephir/methods.py", "zephir/safe_load.py",
            "zephir/hdclip/configs", "zephir/hdclip/factory.py", "zephir/hdclip/interp.py", "zephir/hdclip/losses.py",
            "zephir/hdclip/model.py", "zephir/hdclip/ordinal.py", "zephir/hdclip/predict.py",
            "zephir/metrics/__init__.py",
            "zephir/metrics/estimation.py", "zephir/training")
#: Workflow files every stage runs: the Snakefile (includes every rule file), the shared
#: helpers and paths, the software environment of every rule.
_WORKFLOW = ("Snakefile", "workflow/rules/common.smk", "workflow/envs/zephir.yaml")


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
    Stage("synthesize", rules=("dataset_index", "synth", "synth_eval", "blind"),
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
                           "zephir/embed.py", "zephir/estimators.py", "zephir/guidance",
                           "zephir/hdclip", "zephir/methods.py", "zephir/restore.py",
                           "zephir/safe_load.py", "zephir/weights.py"),
          smk=("workflow/rules/restore.smk", "workflow/envs/seesr.yaml",
               "workflow/envs/pasd.yaml", "workflow/envs/faithdiff.yaml"),
          params=("datasets", "train_set", "eval_set", "blind_sets", "restoration", "weights"),
          reads=("data", "blind", "hdclip/model.safetensors"), outs=("restore",)),
    # restore.smk: its wildcard constraints (backbone, run) apply to the score rule too
    Stage("score", rules=("score",),
          code=_COMMAND + ("zephir/metrics/__init__.py", "zephir/metrics/iqa.py",
                           "zephir/weights.py"),
          smk=("workflow/rules/restore.smk", "workflow/rules/score.smk"),
          params=("datasets", "train_set", "eval_set", "blind_sets", "restoration", "weights",
                  "metrics"),
          reads=("blind", "restore"), outs=("scores",)),
    # the whole config: every table states the config's fingerprint
    Stage("report", rules=("table", "table6_config", "table6", "headline", "figure1", "figure3",
                           "figure6", "figure7", "figure8", "figure9", "figure10", "figure11",
                           "figure21", "figure_comparison", "figure_transfer"),
          # figure 1 reads a trained model, table 6 builds the encoders of table 2
          code=_COMMAND + ("zephir/degrade/blind.py", "zephir/metrics/__init__.py",
                           "zephir/metrics/estimation.py", "zephir/report", "zephir/baselines",
                           "zephir/checkpoints.py", "zephir/conditioning.py", "zephir/estimators.py",
                           "zephir/hdclip", "zephir/methods.py", "zephir/safe_load.py"),
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
