"""Degradation-estimation evaluation of any estimator on a labelled set (tables 2-4).

:func:`evaluate` runs an estimator over the samples of one split of a synth manifest;
:func:`write_evaluation` writes what the tables and figures read: ``predictions.csv`` (one row
per sample), ``arrays.npz`` (HD-CLIP's embeddings and anchors, figures 3 and 10) and
``metrics.json`` (:func:`zephir.metrics.estimation.evaluate_table` plus the model's settings).
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from zephir import checkpoints
from zephir import io as zio
from zephir.degrade.synth import read_manifest
from zephir.estimator_interface import Estimate, Estimator, level_scale
from zephir.hdclip.ordinal import bin_centres
from zephir.metrics.estimation import evaluate_table, predicted_types


@torch.no_grad()
def estimate(model: Estimator, images: torch.Tensor, device="cpu", batch: int = 128
             ) -> Estimate:
    """:meth:`Estimator.estimate_batch` over uint8 images (N, 3, S, S), in batches, on CPU.

    The anchors do not depend on the images: they are taken from the first batch.
    """
    was_training = model.training
    model.eval()
    parts = [model.estimate_batch(images[s:s + batch].to(device).float().div(255))
             for s in range(0, len(images), batch)]
    model.train(was_training)

    def cat(name: str) -> torch.Tensor | None:
        values = [getattr(p, name) for p in parts]
        return None if values[0] is None else torch.cat([v.float().cpu() for v in values])

    anchors = parts[0].anchors
    return Estimate(scores=cat("scores"), levels=cat("levels"), embeddings=cat("embeddings"),
                    anchors=None if anchors is None else anchors.float().cpu())


def evaluate(model: Estimator, manifest: Path, split: str = "val", device="cpu", *,
             full_image: bool = False) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Run ``model`` over the ``split`` samples of a synth manifest (singles and mixtures).

    Returns the predictions table (one row per sample: ``{type}_true`` level or NaN when
    absent, ``{type}_score``, ``{type}_pred`` and ``pred_type``) and, for an estimator with an
    ordinal space (HD-CLIP), the arrays behind figures 3 and 10: each sample's per-type
    embeddings and the level anchors. A type the estimator does not model has NaN scores and
    levels, and then no sample has a ``pred_type`` (empty).

    ``full_image``: read each sample whole, whatever its size, as ``zephir predict`` does
    (:func:`zephir.hdclip.predict.full_image`: crops averaged; the transfer set, whose crops
    vary in size); no arrays then. Otherwise every sample must be a crop of the model's input
    size, read as one batch.
    """
    rows = read_manifest(manifest, split)
    if not rows:
        raise ValueError(f"{manifest}: no {split!r} samples to evaluate")
    root = Path(manifest).parent
    types = model.cfg.types
    arrays: dict[str, np.ndarray] = {}
    if full_image:
        from zephir.hdclip.predict import full_image as read_whole

        scores, levels = (t.numpy() for t in read_whole(
            model, [zio.load_image(root / r["path"]).pixels for r in rows], device))
    else:
        crop = int(rows[0]["crop_size"])
        if crop != model.image_size:
            raise ValueError(f"{manifest}: samples are {crop}px crops but the model takes "
                             f"{model.image_size}px images (a transfer set is read whole: "
                             "`zephir evaluate --transfer`)")
        images = torch.stack([torch.from_numpy(zio.load_image(root / r["path"]).pixels)
                              .permute(2, 0, 1) for r in rows])
        est = estimate(model, images, device)
        if est.embeddings is not None:
            arrays = {"embeddings": est.embeddings.numpy(), "anchors": est.anchors.numpy(),
                      "bins": bin_centres(model.cfg.gap).numpy(), "types": np.asarray(types)}
        scores, levels = est.scores.numpy(), est.levels.numpy()
    table = pd.DataFrame({k: [r[k] for r in rows] for k in ("path", "source", "sample", "types")})
    for k, t in enumerate(types):
        table[f"{t}_true"] = pd.to_numeric(pd.Series([r[f"{t}_level"] for r in rows]),
                                           errors="coerce")
        table[f"{t}_score"] = scores[:, k]
        table[f"{t}_pred"] = levels[:, k]
    table["pred_type"] = predicted_types(scores, types)
    return table, arrays


def write_evaluation(model: Estimator, ckpt: dict, checkpoint: Path, manifest: Path,
                     out: Path, *, split: str = "val", device="cpu", report_gap: float = 5.0,
                     transfer: bool = False) -> dict:
    """Evaluate ``model`` (saved as ``ckpt`` at ``checkpoint``) and write ``predictions.csv``,
    ``arrays.npz`` and ``metrics.json`` under ``out``; returns the metrics.json content.

    metrics.json holds the method, architecture, random-init flag, the model and training
    settings from the checkpoint, and :func:`zephir.metrics.estimation.evaluate_table`.
    Training calls it with the model still in memory. ``transfer``: ``manifest`` is a transfer
    set (:mod:`zephir.degrade.transfer`), read whole (``full_image``) and recorded as
    ``samples: transfer`` (else ``validation``), which the tables beside table 2 pair with the
    same checkpoint's validation results.
    """
    out = Path(out)
    table, arrays = evaluate(model, manifest, split, device, full_image=transfer)
    result = {"method": ckpt.get("method", "hdclip"), "arch": ckpt["hdclip"]["arch"],
              "random_init": bool(ckpt.get("random_init", True)), "hdclip": ckpt["hdclip"],
              "train": ckpt.get("train", {}), "checkpoint": str(checkpoint), "split": split,
              "semantic_target": ckpt.get("semantic_target", "none"),
              "samples": "transfer" if transfer else "validation",
              "metrics": evaluate_table(table, model.cfg.types, report_gap,
                                        level_scale=level_scale(model))}
    zio.write_text(out / "predictions.csv", table.to_csv(index=False, float_format="%.4f"))
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    zio.write_bytes(out / "arrays.npz", buf.getvalue())
    zio.write_text(out / "metrics.json", json.dumps(result, indent=2, sort_keys=True,
                                                    default=float) + "\n")
    return result


def evaluate_checkpoint(checkpoint: Path, manifest: Path, out: Path, *, split: str = "val",
                        device="cpu", report_gap: float = 5.0, transfer: bool = False
                        ) -> dict:
    """``zephir evaluate``: :func:`write_evaluation` of the model saved at ``checkpoint`` (its
    folder, or a file in it: :func:`zephir.checkpoints.load_pretrained`), recorded as the
    folder."""
    model, meta = checkpoints.load_pretrained(checkpoint, device)
    return write_evaluation(model, meta, Path(meta["path"]), manifest, out, split=split,
                            device=device, report_gap=report_gap, transfer=transfer)
