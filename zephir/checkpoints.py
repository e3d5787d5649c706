"""Trained models and training states as data: nothing read from a file can run code.

A trained estimator (HD-CLIP or a baseline of table 2) is a folder in the Hugging Face Hub
layout, which can be uploaded as it is:

- ``model.safetensors``: the state dict (safetensors holds tensors only);
- ``config.json``: :data:`FORMAT`, ``method`` (a key of :data:`zephir.estimator_registry.METHODS`),
  ``hdclip`` (the :class:`~zephir.hdclip.config.HDCLIPConfig` as a dict), ``train`` (the
  training settings), ``step``, ``random_init``, ``metrics`` (its validation metrics, when it
  was validated) and what else its writer knew (``precision``, ``semantic_target``, ``data``,
  ``source``);
- ``README.md``: the model card (:func:`model_card`): what was trained on what, its numbers,
  and the random-init label where the CLIP it started from had random weights.

:func:`load_pretrained` rebuilds the estimator from that folder alone (no CLIP weights file
needed). The state a training run resumes from (``last.pt``: weights, optimiser, scheduler,
run identity, log) holds tensors and plain values only and is read with
``torch.load(weights_only=True)`` (:func:`load_state`), which refuses any other object without
running it. A ``checkpoint.pt`` of zephir's earlier layout is read the same way.
"""
from __future__ import annotations

import io
import json
import logging
import math
from pathlib import Path

import torch

from zephir import io as zio
from zephir.hdclip.config import HDCLIPConfig
from zephir.safe_load import CheckpointError, safe_torch_load

__all__ = ["CheckpointError", "load_pretrained", "load_state", "model_card", "model_dir",
           "read_metadata", "safe_torch_load", "save_model", "save_state", "weights_file"]

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
CARD = "README.md"
#: ``config.json``'s ``format``: what wrote the folder, and the layout's version.
FORMAT = "zephir-estimator"
VERSION = 1


def _plain(value):
    """``value`` with every number a Python float/int and every tuple a list (what
    ``weights_only`` and JSON accept); non-finite floats stay floats."""
    return json.loads(json.dumps(value, default=float))


# --------------------------------------------------------------------------- training state

def save_state(path: Path, state: dict) -> None:
    """Write a training state (tensors, optimiser and scheduler state dicts, plain values)
    atomically, so that :func:`load_state` reads it back with ``weights_only=True``."""
    tensors = ("model", "optimizer", "scheduler")
    plain = {k: (v if k in tensors else _plain(v)) for k, v in state.items()}
    buf = io.BytesIO()
    torch.save(plain, buf)
    zio.write_bytes(path, buf.getvalue())


def load_state(path: str | Path, device="cpu") -> dict:
    """The training state at ``path`` (``last.pt``), read without unpickling any code."""
    path = Path(path)
    state = safe_torch_load(path, device, what="zephir training state", remedy=(
        "Delete it to train from step 0 (a state zephir wrote holds tensors and plain values "
        "only)."))
    if not isinstance(state, dict) or not {"model", "optimizer", "step"} <= set(state):
        keys = ", ".join(map(str, state)) if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"{path}: not a zephir training state (expected the keys model, "
                              f"optimizer and step; found {keys}); delete it to train from "
                              "step 0")
    return state


# --------------------------------------------------------------------------- model folders

def model_dir(path: str | Path) -> Path:
    """The model folder ``path`` names: the folder itself, or its ``model.safetensors`` or
    ``config.json``."""
    path = Path(path)
    return path.parent if path.name in (WEIGHTS, CONFIG) and not path.is_dir() else path


def weights_file(path: str | Path) -> Path:
    """The file that holds the weights of the model ``path`` names: the folder's
    ``model.safetensors``, or ``path`` itself when it is a file of the earlier layout (``.pt``).
    """
    path = Path(path)
    return path if path.is_file() and path.name != CONFIG else model_dir(path) / WEIGHTS


def _finite(value):
    """JSON-safe metrics: NaN and infinities become null."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def save_model(folder: str | Path, model: torch.nn.Module, meta: dict) -> Path:
    """Write ``model`` into ``folder`` as ``model.safetensors``, ``config.json`` (``meta``, with
    :data:`FORMAT`) and the model card ``README.md``; returns the folder. ``meta`` needs
    ``method`` and ``hdclip``; ``model.safetensors`` is written last, so that a folder with
    it is whole."""
    from safetensors.torch import save

    folder = Path(folder)
    missing = [k for k in ("method", "hdclip") if k not in meta]
    if missing:
        raise ValueError(f"{folder}: model metadata lacks {', '.join(missing)}")
    config = _finite(_plain({"format": FORMAT, "format_version": VERSION, "step": 0,
                             "train": {}, "random_init": meta["hdclip"]["checkpoint"] is None,
                             **meta}))
    # clones: safetensors refuses tensors that share memory (a tower and its copy)
    weights = {k: v.detach().to("cpu", copy=True).contiguous()
               for k, v in model.state_dict().items()}
    zio.write_text(folder / CONFIG, json.dumps(config, indent=2, sort_keys=True) + "\n")
    zio.write_text(folder / CARD, model_card(config))
    zio.write_bytes(folder / WEIGHTS, save(weights, metadata={"format": "pt"}))
    return folder


def read_metadata(path: str | Path) -> dict:
    """A model folder's ``config.json``, checked: a zephir estimator of a known version and
    method, with its model settings."""
    from zephir import estimator_registry

    folder = model_dir(path)
    file = folder / CONFIG
    if not folder.exists():
        raise FileNotFoundError(f"{folder}: no such model folder (train one with `zephir "
                                "train`, which writes model.safetensors and config.json)")
    if not file.is_file():
        old = ("; its checkpoint.pt is of zephir's earlier layout: pass that file"
               if (folder / "checkpoint.pt").is_file() else "")
        raise CheckpointError(f"{folder}: not a zephir model folder: it has no {CONFIG} (a "
                              f"trained model is a folder with {WEIGHTS}, {CONFIG} and "
                              f"{CARD}){old}")
    try:
        meta = json.loads(file.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{file}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise CheckpointError(f"{file}: not a zephir estimator's config (format {found!r}, "
                              f"expected {FORMAT!r})")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > VERSION:
        raise CheckpointError(f"{file}: format_version {version!r}: this zephir reads "
                              f"version {VERSION} and earlier; update zephir to read it")
    method = meta.get("method")
    if method not in estimator_registry.METHODS:
        raise CheckpointError(f"{file}: unknown method {method!r}; this zephir knows "
                              f"{', '.join(estimator_registry.METHODS)}")
    if not isinstance(meta.get("hdclip"), dict):
        raise CheckpointError(f"{file}: no model settings (key hdclip)")
    return meta


def _read_weights(folder: Path, device) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    file = folder / WEIGHTS
    if not file.is_file():
        raise CheckpointError(f"{folder}: has {CONFIG} but no {WEIGHTS} (an interrupted "
                              "write or upload?); copy the whole folder again")
    try:
        return load_file(file, device=str(device))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{file}: not a readable safetensors file ({exc}); copy it "
                              "again") from None


def _fit(model: torch.nn.Module, weights: dict, file: Path, what: str) -> None:
    """Load ``weights`` into ``model``; keys or shapes that do not match are an error that
    names ``file`` and lists them."""
    want = model.state_dict()
    missing = sorted(set(want) - set(weights))
    extra = sorted(set(weights) - set(want))
    shapes = [f"{k} {tuple(weights[k].shape)} (the model has {tuple(v.shape)})"
              for k, v in want.items() if k in weights and weights[k].shape != v.shape]

    def few(names: list[str]) -> str:
        more = f" and {len(names) - 5} more" if len(names) > 5 else ""
        return ", ".join(names[:5]) + more

    problems = ([f"missing keys {few(missing)}"] * bool(missing)
                + [f"unexpected keys {few(extra)}"] * bool(extra)
                + [f"shape mismatch: {few(shapes)}"] * bool(shapes))
    if problems:
        raise CheckpointError(f"{file}: its weights do not fit {what}: {'; '.join(problems)} "
                              "(written by another version of zephir, or for other settings?)")
    model.load_state_dict(weights)


class _NoRandomInitWarning(logging.Filter):
    """open_clip warns "No pretrained weights loaded ... initialized randomly" when a model is
    built without weights; rebuilding from a checkpoint then loads the trained weights."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "No pretrained weights loaded" not in record.getMessage()


def _rebuild(method: str, saved: HDCLIPConfig, weights: dict, file: Path, device):
    from zephir import estimator_registry

    quiet = _NoRandomInitWarning()
    logging.getLogger().addFilter(quiet)
    try:
        model = estimator_registry.build(
            method, HDCLIPConfig(**{**saved.to_dict(), "checkpoint": None}))
    finally:
        logging.getLogger().removeFilter(quiet)
    _fit(model, weights, file, f"a {method} model of {saved.arch} with the saved settings")
    model.cfg = saved  # the CLIP weights it was trained from, for the random-init label
    return model.to(device).eval()


def load_pretrained(path: str | Path, device="cpu") -> tuple[torch.nn.Module, dict]:
    """Rebuild a trained estimator from its folder (or that folder's ``model.safetensors`` or
    ``config.json``); returns ``(model, metadata)``, the model in eval mode on ``device``.

    ``metadata`` is the folder's ``config.json`` (module doc) plus ``path`` (the folder) and
    ``sha1`` (of ``model.safetensors``). A ``.pt`` file of zephir's earlier layout is read with
    ``weights_only=True`` (its ``path`` is the file). Anything that cannot be used is a
    :class:`CheckpointError` naming the file and what is wrong.
    """
    path = Path(path)
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"{path}: device {str(device)!r} asks for CUDA, and torch sees no CUDA "
                         "device here (the workflow's rules ask for cuda where the config's "
                         "resources.gpu is above 0: run them on a GPU, or set it to 0)")
    if path.is_file() and path.name not in (WEIGHTS, CONFIG):
        return _load_legacy(path, device)
    meta = read_metadata(path)
    folder = model_dir(path)
    saved = HDCLIPConfig.from_dict(meta["hdclip"], f"{folder / CONFIG}: hdclip")
    model = _rebuild(meta["method"], saved, _read_weights(folder, device), folder / WEIGHTS,
                     device)
    return model, {**meta, "path": str(folder), "sha1": zio.file_sha1(folder / WEIGHTS)}


def _load_legacy(path: Path, device) -> tuple[torch.nn.Module, dict]:
    """A ``checkpoint.pt`` of zephir's earlier layout (a dict of the state dict and plain
    settings), read with ``weights_only=True``."""
    from zephir import estimator_registry

    remedy = (f"A trained zephir model is a folder with {WEIGHTS} and {CONFIG}: pass that "
              "folder (`zephir train` writes one).")
    ckpt = safe_torch_load(path, device, what="zephir checkpoint", remedy=remedy)
    if not isinstance(ckpt, dict) or "hdclip" not in ckpt or "model" not in ckpt:
        keys = ", ".join(map(str, ckpt)) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(f"{path}: not a zephir estimator checkpoint (found {keys}). "
                              f"{remedy}")
    method = ckpt.get("method", "hdclip")
    if method not in estimator_registry.METHODS:
        raise CheckpointError(f"{path}: unknown method {method!r}; this zephir knows "
                              f"{', '.join(estimator_registry.METHODS)}")
    saved = HDCLIPConfig.from_dict(ckpt["hdclip"], f"{path}: hdclip")
    model = _rebuild(method, saved, ckpt["model"], path, device)
    meta = {k: v for k, v in ckpt.items() if k not in ("model", "optimizer", "scheduler")}
    return model, {"format": FORMAT, "format_version": 0, **_plain(meta), "method": method,
                   "path": str(path), "sha1": zio.file_sha1(path)}


# --------------------------------------------------------------------------- model card

def _number(value) -> str:
    if value is None:
        return "n/a"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def model_card(meta: dict) -> str:
    """The model card (``README.md``) of a model folder: what it is, what it was trained on,
    its validation numbers, and the random-init label where its CLIP had random weights."""
    hd, train = meta["hdclip"], meta.get("train", {})
    random_init = bool(meta.get("random_init", True))
    clip = ("random init: **its numbers are not the paper's**" if random_init
            else f"`{hd['checkpoint']}`")
    front = ["---", "library_name: zephir", "tags:", "- zephir", "- degradation-estimation",
             f"- {meta['method']}"] + ["- random-init"] * random_init + ["---", ""]
    lines = [f"# {meta['method']} ({hd['arch']})", ""]
    if random_init:
        lines += [("> **Random-init CLIP.** This model was trained from a CLIP with random "
                   "weights: every number it gives, and every number below, is a random-init "
                   "result, not the paper's."), ""]
    lines += [f"- method: `{meta['method']}` (zephir.estimator_registry)",
              f"- CLIP architecture: `{hd['arch']}`; CLIP weights: {clip}",
              f"- degradation types: {', '.join(hd['types'])}",
              f"- ordinal space: gap {hd['gap']}, top-k {hd['topk']}, tau {hd['tau']}"]
    if "source" in meta:
        lines.append(f"- converted from: `{meta['source']}`")
    data = meta.get("data") or {}
    if data:
        lines.append(f"- trained on: the labelled set whose manifest has sha1 "
                     f"{data.get('manifest_sha1')}" + (f"; validated on `{data['val_manifest']}`"
                                                      if data.get("val_manifest") else ""))
    if train:
        lines.append(f"- training: {meta.get('step', 0)} steps of batch {train.get('batch_size')}"
                     f", lr {train.get('lr')}, seed {train.get('seed')}, precision "
                     f"{meta.get('precision', 'n/a')}, semantic target "
                     f"{meta.get('semantic_target', 'none')}")
    metrics = meta.get("metrics") or {}
    if metrics:
        note = " (random-init CLIP)" if random_init else ""
        lines += ["", f"## Validation{note}", "", "| metric | value |", "| --- | --- |"]
        lines += [f"| {k} | {_number(v)} |" for k, v in sorted(metrics.items())]
    lines += ["", "## Use", "", "```python", "from zephir.hdclip import load_pretrained", "",
              "model, meta = load_pretrained(\"path/to/this/folder\")", "```", "",
              (f"Files: `{WEIGHTS}` (weights, safetensors), `{CONFIG}` (settings and "
               "numbers), this card."), ""]
    return "\n".join(front + lines)


# --------------------------------------------------------------------------- DA-CLIP

def import_daclip(weights: Path, cfg: HDCLIPConfig, out: Path) -> Path:
    """Write DA-CLIP's released weights as a zephir model folder (method "daclip_released")."""
    from zephir.baselines.daclip_style import from_released

    model = from_released(weights, cfg)
    return save_model(out, model, {"method": "daclip_released", "step": 0,
                                   "hdclip": cfg.to_dict(), "train": {}, "random_init": False,
                                   "source": str(weights)})
