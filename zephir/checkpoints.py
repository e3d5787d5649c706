"""Checkpoint files of every estimator: write atomically, read with clear errors, rebuild.

A checkpoint is a ``torch.save`` dict with ``model`` (the state dict), ``method`` (a key of
:data:`zephir.methods.METHODS`), ``hdclip`` (the :class:`HDCLIPConfig` as a dict), ``train``
(the training settings), ``step`` and ``random_init``. :func:`from_checkpoint` rebuilds the
estimator from it alone: no CLIP weights file is needed, the weights come from the checkpoint.
"""
from __future__ import annotations

import io
import logging
from pathlib import Path

import torch

from zephir import io as zio
from zephir import methods
from zephir.estimators import Estimator
from zephir.hdclip.model import HDCLIPConfig


def save(path: Path, obj: dict) -> None:
    """torch.save, atomically."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    zio.write_bytes(path, buf.getvalue())


def load(path: str | Path, device="cpu") -> dict:
    """The checkpoint dict at ``path``; a missing or unreadable file is an error naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint (train one with `zephir train`)")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"{path}: device {str(device)!r} asks for CUDA, and torch sees no CUDA "
                         "device here (the workflow's rules ask for cuda where the config's "
                         "resources.gpu is above 0: run them on a GPU, or set it to 0)")
    try:
        return torch.load(path, map_location=device, weights_only=False)
    except Exception as exc:  # noqa: BLE001 - name the file whatever torch raised
        raise ValueError(f"{path}: not a readable zephir checkpoint ({exc})") from None


class _NoRandomInitWarning(logging.Filter):
    """open_clip warns "No pretrained weights loaded ... initialized randomly" when a model is
    built without weights; rebuilding from a checkpoint then loads the trained weights."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "No pretrained weights loaded" not in record.getMessage()


def from_checkpoint(path: str | Path, device="cpu") -> tuple[Estimator, dict]:
    """Rebuild a trained estimator from its checkpoint (no CLIP weights file needed)."""
    ckpt = load(path, device)
    if "hdclip" not in ckpt or "model" not in ckpt:
        raise ValueError(f"{path}: not a zephir estimator checkpoint (keys: {', '.join(ckpt)})")
    saved = {**ckpt["hdclip"], "types": tuple(ckpt["hdclip"]["types"])}
    quiet = _NoRandomInitWarning()
    logging.getLogger().addFilter(quiet)
    try:
        model = methods.build(ckpt.get("method", "hdclip"),
                                 HDCLIPConfig(**{**saved, "checkpoint": None}))
    finally:
        logging.getLogger().removeFilter(quiet)
    model.load_state_dict(ckpt["model"])
    model.cfg = HDCLIPConfig(**saved)
    return model.to(device).eval(), ckpt


def import_daclip(weights: Path, cfg: HDCLIPConfig, out: Path) -> Path:
    """Write DA-CLIP's released weights as a zephir checkpoint (method "daclip_released")."""
    from zephir.baselines.daclip_style import from_released

    model = from_released(weights, cfg)
    path = Path(out) / "checkpoint.pt"
    save(path, {"model": model.state_dict(), "method": "daclip_released", "step": 0,
                "hdclip": cfg.to_dict(), "train": {}, "random_init": False,
                "source": str(weights)})
    return path
