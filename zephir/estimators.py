"""Every degradation estimator of the paper behind one interface: HD-CLIP and the baselines.

``METHODS`` names how to build each from an :class:`~zephir.hdclip.model.HDCLIPConfig`;
checkpoints record the method, so that :func:`from_checkpoint` rebuilds any of them, and
:func:`predict` runs any of them over labelled samples for the evaluation (tables 2-4).
"""
from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from zephir import io as zio
from zephir.baselines.clip_zeroshot import CLIPZeroShot
from zephir.baselines.daclip_style import DACLIPStyle
from zephir.baselines.mmrealsr_style import MMRealSRStyle
from zephir.degrade.synth import read_manifest
from zephir.hdclip import model as hdclip_model
from zephir.hdclip.model import HDCLIPConfig

METHODS: dict[str, Callable[[HDCLIPConfig], torch.nn.Module]] = {
    "hdclip": hdclip_model.build,
    "clip_zeroshot": CLIPZeroShot.build,
    "daclip_style": DACLIPStyle.build,
    "daclip_released": DACLIPStyle.build,   # DA-CLIP's own weights, read out the same way
    "mmrealsr_style": MMRealSRStyle.build,
}


def build(method: str, cfg: HDCLIPConfig) -> torch.nn.Module:
    """The model of ``method`` ("hdclip", "clip_zeroshot", "daclip_style", "mmrealsr_style")."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
    return METHODS[method](cfg)


# --------------------------------------------------------------------------- checkpoints

def save(path: Path, obj: dict) -> None:
    """torch.save, atomically."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    zio.write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | Path, device="cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint (train one with `zephir train`)")
    try:
        return torch.load(path, map_location=device, weights_only=False)
    except Exception as exc:  # noqa: BLE001 - name the file whatever torch raised
        raise ValueError(f"{path}: not a readable zephir checkpoint ({exc})") from None


def from_checkpoint(path: str | Path, device="cpu") -> tuple[torch.nn.Module, dict]:
    """Rebuild a trained estimator from its checkpoint (no CLIP weights file needed)."""
    ckpt = load_checkpoint(path, device)
    if "hdclip" not in ckpt or "model" not in ckpt:
        raise ValueError(f"{path}: not a zephir estimator checkpoint (keys: {', '.join(ckpt)})")
    saved = {**ckpt["hdclip"], "types": tuple(ckpt["hdclip"]["types"])}
    model = build(ckpt.get("method", "hdclip"), HDCLIPConfig(**{**saved, "checkpoint": None}))
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


# --------------------------------------------------------------------------- prediction

@torch.no_grad()
def predict(model: torch.nn.Module, images: torch.Tensor, device="cpu", batch: int = 128
            ) -> tuple[np.ndarray, np.ndarray]:
    """(N, K) type scores in [0, 1] and (N, K) 0..100 levels of uint8 images (N, 3, S, S)."""
    was_training = model.training
    model.eval()
    scores, levels = [], []
    for start in range(0, len(images), batch):
        s, lv = model.estimate_batch(images[start:start + batch].to(device).float().div(255))
        scores.append(s.float().cpu())
        levels.append(lv.float().cpu())
    model.train(was_training)
    return torch.cat(scores).numpy(), torch.cat(levels).numpy()


@torch.no_grad()
def evaluate(model: torch.nn.Module, manifest: Path, split: str = "val", device="cpu"
             ) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Run ``model`` over the ``split`` samples of a synth manifest (singles and mixtures).

    Returns the predictions table (one row per sample: ``{type}_true`` level or NaN when
    absent, ``{type}_score``, ``{type}_pred`` and ``pred_type``) and, for HD-CLIP, the arrays
    behind figures 3 and 10: each sample's per-type embeddings and the level anchors.
    """
    rows = read_manifest(manifest, split)
    if not rows:
        raise ValueError(f"{manifest}: no {split!r} samples to evaluate")
    root = Path(manifest).parent
    crop = int(rows[0]["crop_size"])
    if crop != model.image_size:
        raise ValueError(f"{manifest}: samples are {crop}px crops but the model takes "
                         f"{model.image_size}px images")
    images = torch.stack([torch.from_numpy(zio.load_image(root / r["path"]).pixels)
                          .permute(2, 0, 1) for r in rows])
    arrays: dict[str, np.ndarray] = {}
    if hasattr(model, "anchors"):  # HD-CLIP: one pass for scores, levels and embeddings
        model.eval()
        outs = [model(images[s:s + 128].to(device).float().div(255), semantic=False)
                for s in range(0, len(images), 128)]
        scores = torch.cat([torch.sigmoid(o.confidence).float().cpu() for o in outs]).numpy()
        levels = torch.cat([o.levels.float().cpu() for o in outs]).numpy()
        arrays = {"embeddings": torch.cat([o.embeddings.float().cpu() for o in outs]).numpy(),
                  "anchors": outs[0].anchors.float().cpu().numpy(),
                  "bins": model.bins.cpu().numpy(), "types": np.asarray(model.cfg.types)}
    else:
        scores, levels = predict(model, images, device)
    types = model.cfg.types
    table = pd.DataFrame({k: [r[k] for r in rows] for k in ("path", "source", "sample", "types")})
    for k, t in enumerate(types):
        table[f"{t}_true"] = pd.to_numeric(pd.Series([r[f"{t}_level"] for r in rows]),
                                           errors="coerce")
        table[f"{t}_score"] = scores[:, k]
        table[f"{t}_pred"] = levels[:, k]
    table["pred_type"] = np.asarray(types)[scores.argmax(1)]
    return table, arrays


def evaluate_checkpoint(checkpoint: Path, manifest: Path, out: Path, *, split: str = "val",
                        device="cpu", report_gap: float = 5.0) -> dict:
    """``zephir evaluate``: predictions.csv, arrays.npz and metrics.json under ``out``.

    metrics.json holds the method, architecture, random-init flag, the model and training
    settings from the checkpoint, and :func:`zephir.metrics.estimation.evaluate_table`.
    """
    model, ckpt = from_checkpoint(checkpoint, device)
    return write_evaluation(model, ckpt, checkpoint, manifest, out, split=split, device=device,
                            report_gap=report_gap)


def write_evaluation(model: torch.nn.Module, ckpt: dict, checkpoint: Path, manifest: Path,
                     out: Path, *, split: str = "val", device="cpu", report_gap: float = 5.0
                     ) -> dict:
    """Evaluate ``model`` (saved as ``ckpt`` at ``checkpoint``) and write the files of
    :func:`evaluate_checkpoint`; training calls it with the model still in memory."""
    from zephir.metrics.estimation import evaluate_table

    out = Path(out)
    table, arrays = evaluate(model, manifest, split, device)
    result = {"method": ckpt.get("method", "hdclip"), "arch": ckpt["hdclip"]["arch"],
              "random_init": bool(ckpt.get("random_init", True)), "hdclip": ckpt["hdclip"],
              "train": ckpt.get("train", {}), "checkpoint": str(checkpoint), "split": split,
              "metrics": evaluate_table(table, model.cfg.types, report_gap)}
    zio.write_text(out / "predictions.csv", table.to_csv(index=False, float_format="%.4f"))
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    zio.write_bytes(out / "arrays.npz", buf.getvalue())
    zio.write_text(out / "metrics.json", json.dumps(result, indent=2, sort_keys=True,
                                                    default=float) + "\n")
    return result
