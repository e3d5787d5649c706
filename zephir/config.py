"""The one config loader: YAML -> validated dict with defaults filled in.

The schema (:mod:`zephir.schema`) is the single description of every key and its default, but
for HD-CLIP's model settings, whose defaults live with the model
(:class:`zephir.hdclip.config.HDCLIPConfig`); Snakemake and the command line both call
:func:`check`.
"""
from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import jsonschema
import yaml

from zephir.schema import schema


class ConfigError(ValueError):
    """A config that cannot be used; the message names the file and the key."""


def _fill_defaults(node: dict, sch: dict) -> None:
    for key, sub in sch.get("properties", {}).items():
        if key not in node and "default" in sub:
            node[key] = copy.deepcopy(sub["default"])
        if isinstance(node.get(key), dict) and sub.get("type") == "object":
            _fill_defaults(node[key], sub)
    extra = sch.get("additionalProperties")
    if isinstance(extra, dict) and extra.get("type") == "object":
        for key, value in node.items():
            if key not in sch.get("properties", {}) and isinstance(value, dict):
                _fill_defaults(value, extra)


def _where(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "(top level)"


def check(config: dict, origin: str = "config") -> dict:
    """Validate ``config`` against the schema and the method's rules; return it with defaults.

    Raises :class:`ConfigError` naming ``origin`` and the offending key.
    """
    if not isinstance(config, dict):
        raise ConfigError(f"{origin}: expected a mapping at the top level")
    config = copy.deepcopy(config)
    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"  {_where(e)}: {e.message}" for e in errors]
        raise ConfigError(f"{origin}: invalid configuration\n" + "\n".join(lines))
    given = set(config)
    _fill_defaults(config, schema())
    # HD-CLIP's defaults live with the model (zephir.hdclip.config), not in the schema
    from zephir.hdclip.config import defaults as hdclip_defaults

    config["hdclip"]["model"] = {**hdclip_defaults(), **config["hdclip"]["model"]}
    _check_semantics(config, origin, given)
    return config


def _check_semantics(config: dict, origin: str, given: set[str]) -> None:
    """The rules a schema cannot state. ``given``: the top-level keys the file itself has (a
    section left to its defaults is valid by construction; the restore jobs' config, a subset,
    then needs none of the synthesiser's code)."""
    datasets = config["datasets"]
    for name, ds in datasets.items():
        if ds["kind"] == "embedded" and "images" not in ds:
            raise ConfigError(f"{origin}: datasets.{name}.images is required for kind embedded")
        if ds["kind"] == "folder" and "path" not in ds:
            raise ConfigError(f"{origin}: datasets.{name}.path is required for kind folder")
        if ds["kind"] == "embedded":
            from zephir.datasets import EMBEDDED

            unknown = [i for i in ds["images"] if i not in EMBEDDED]
            if unknown:
                raise ConfigError(f"{origin}: datasets.{name}.images: unknown bundled photo(s) "
                                  f"{', '.join(unknown)}; known: {', '.join(EMBEDDED)}")
    refs = [("train_set", config["train_set"])]
    refs += [("eval_set", config["eval_set"])] if config["eval_set"] is not None else []
    refs += [(f"blind_sets[{i}]", n) for i, n in enumerate(config["blind_sets"])]
    transfer = config["estimation"]["transfer"]["set"]
    refs += [("estimation.transfer.set", transfer)] if transfer is not None else []
    for key, ref in refs:
        if ref not in datasets:
            raise ConfigError(f"{origin}: {key}: {ref!r} is not a key of datasets "
                              f"({', '.join(datasets)})")
        if not datasets[ref]["hq"]:
            raise ConfigError(f"{origin}: {key}: datasets.{ref}.hq is false (real low-quality "
                              "images): it cannot be degraded further; restoration reads such "
                              "a set as it is")
    held_out = {"eval_set": "name another dataset, or leave eval_set null to evaluate on the "
                            "train_set's val split (synth.val_fraction)",
                "estimation.transfer.set": "name another dataset (the held-out photos, an "
                                           "eval_set)"}
    for key, ref in refs:
        if key in held_out and ref == config["train_set"]:
            raise ConfigError(f"{origin}: {key}: {ref!r} is the train_set: its images are "
                              f"trained on; {held_out[key]}")
    if config["eval_set"] is None and config["synth"]["val_fraction"] == 0:
        raise ConfigError(f"{origin}: synth.val_fraction is 0 and eval_set is null: nothing is "
                          "left to evaluate on; hold out a share of the train_set's images or "
                          "name an eval_set")
    rest = config["restoration"]
    for i, name in enumerate(rest["sets"]):
        if name not in datasets:
            raise ConfigError(f"{origin}: restoration.sets[{i}]: {name!r} is not a key of "
                              f"datasets ({', '.join(datasets)})")
        if datasets[name]["hq"] and name not in config["blind_sets"]:
            raise ConfigError(f"{origin}: restoration.sets[{i}]: {name!r} has HQ images but "
                              "is not in blind_sets (its LQ images come from the blind stage)")
    for key, pool in (("set", rest["sets"]), ("backbone", rest["backbones"])):
        value = rest["sweep"][key]
        if value is not None and value not in pool:
            raise ConfigError(f"{origin}: restoration.sweep.{key}: {value!r} is not one of "
                              f"restoration.{key}s ({', '.join(pool)})")
    if "synth" in given:
        _check_synth(config, origin)
    problem = train_budget_problem(config["hdclip"]["train"])
    if problem:
        raise ConfigError(f"{origin}: {problem}")
    gaps = [("hdclip.model.gap", config["hdclip"]["model"]["gap"])]
    gaps += [(f"estimation.gap[{i}]", g) for i, g in enumerate(config["estimation"]["gap"])]
    for key, gap in gaps:
        if 100 % gap:
            raise ConfigError(f"{origin}: {key}: {gap:g} does not divide 100 (eq. 3 puts a bin "
                              "centre every gap levels from 0 to 100)")


def _check_synth(config: dict, origin: str) -> None:
    """The synthesiser's own checks, so that the CLI and Snakemake agree."""
    from zephir.degrade.synth import SynthSpec

    try:
        SynthSpec.from_config(config["synth"])
    except ValueError as exc:
        raise ConfigError(f"{origin}: {exc}") from None


#: hdclip.train's pairs of which exactly one is set: the budget, and the batch.
ONE_OF = (("steps", "epochs"), ("batch_size", "batch_per_type"))


def train_budget_problem(train: dict) -> str | None:
    """What is wrong with an ``hdclip.train`` section's budget and batch, or None: each of
    :data:`ONE_OF` needs one key set and the other null."""
    for a, b in ONE_OF:
        if (train.get(a) is None) == (train.get(b) is None):
            return (f"hdclip.train: set one of {a} and {b}, the other null (got {a}: "
                    f"{train.get(a)}, {b}: {train.get(b)})")
    return None


def load(path: str | Path) -> dict:
    """Read, validate and complete the config file at ``path``."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config ({exc.strerror})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    return check(raw, origin=str(path))


def results_dir(config: dict, root: str | Path = "results") -> Path:
    """Where every output of this run goes: ``results/<name>``."""
    return Path(root) / config["name"]


def synth_manifest(config: dict) -> Path:
    """The labelled set synthesised from the train_set (split by image)."""
    return results_dir(config) / "synth" / config["train_set"] / "manifest.csv"


def eval_synth_manifest(config: dict, dataset: str) -> Path:
    """The labelled samples of ``dataset`` as an evaluation set (every image in split val)."""
    return results_dir(config) / "synth_eval" / dataset / "manifest.csv"


def eval_manifest(config: dict) -> Path:
    """The labelled samples that evaluate degradation estimation (their val split): those of
    eval_set, or the train_set's own labelled set when eval_set is null."""
    if config["eval_set"] is None:
        return synth_manifest(config)
    return eval_synth_manifest(config, config["eval_set"])


def daclip_model(config: dict) -> dict:
    """The CLIP (arch, checkpoint, quick_gelu) DA-CLIP is built on: estimation.daclip_model,
    or HD-CLIP's hdclip.model when that is null."""
    own = config["estimation"]["daclip_model"]
    model = config["hdclip"]["model"]
    return dict(own) if own is not None else {k: model[k] for k in ("arch", "checkpoint",
                                                                     "quick_gelu")}


def restoration_backbones(config: dict, dataset: str) -> list[str]:
    """The backbones that restore ``dataset``: for an hq false set (table 7)
    restoration.realworld.backbones (null = restoration.backbones), else restoration.backbones.
    """
    rest = config["restoration"]
    if config["datasets"][dataset]["hq"] or rest["realworld"]["backbones"] is None:
        return list(rest["backbones"])
    return list(rest["realworld"]["backbones"])


def backbone_settings(config: dict, backbone: str, dataset: str | None = None) -> dict:
    """restoration.settings.<backbone>, with restoration.realworld.settings.<backbone> laid
    over it when ``dataset`` is an hq false set (FaithDiff restores RealDeg at x2)."""
    rest = config["restoration"]
    out = dict(rest["settings"].get(backbone, {}))
    if dataset is not None:
        if dataset not in config["datasets"]:
            raise ConfigError(f"dataset {dataset!r} is not a key of datasets "
                              f"({', '.join(config['datasets'])})")
        if not config["datasets"][dataset]["hq"]:
            out.update(rest["realworld"]["settings"].get(backbone, {}))
    return out


def subset(config: dict, *sections: str) -> dict:
    """A valid config holding only ``sections`` (plus name, train_set, eval_set and their
    datasets).

    Rules write it as the config of one stage, so that a change elsewhere in the config does not
    re-run that stage.
    """
    names = [n for n in (config["train_set"], config.get("eval_set")) if n is not None]
    out = {"name": config["name"], "train_set": config["train_set"],
           "datasets": {n: copy.deepcopy(config["datasets"][n]) for n in names}}
    if config.get("eval_set") is not None:
        out["eval_set"] = config["eval_set"]
    out.update({s: copy.deepcopy(config[s]) for s in sections})
    return out


def dump(config: dict, path: str | Path) -> None:
    """Write a config as YAML, atomically."""
    from zephir import io as zio

    zio.write_text(path, yaml.safe_dump(config, sort_keys=False))


def fingerprint(config: dict) -> str:
    """A short hash of a config's content (key order does not matter); tables state it."""
    blob = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:8]


#: Table 3's loss ablations: which of L_level and L_slerp each letter trains with.
LOSS_ABLATIONS = {"A": (False, False), "B": (True, False), "C": (False, True), "D": (True, True)}


def ablation(config: dict, losses: str | None = None, topk: str | int | None = None,
             gap: str | float | None = None) -> dict:
    """``config`` with one ablation of tables 3 and 4 applied: the losses (A-D), top-k ("all"
    or a number) and gap of HD-CLIP; None keeps the configured value."""
    out = copy.deepcopy(config)
    model, train = out["hdclip"]["model"], out["hdclip"]["train"]
    if losses is not None:
        if losses not in LOSS_ABLATIONS:
            raise ConfigError(f"ablation: losses {losses!r} is not one of A, B, C, D")
        train["use_level"], train["use_slerp"] = LOSS_ABLATIONS[losses]
    if topk is not None:
        model["topk"] = None if str(topk) == "all" else int(topk)
    if gap is not None:
        model["gap"] = float(gap)
    return check(out, origin=f"ablation losses={losses} topk={topk} gap={gap}")
