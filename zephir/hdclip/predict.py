"""HD-CLIP (or any estimator) on full-size images: type, presence, 0..100 level and native value.

Works on any image size without resampling (resampling would change blur and downsample
levels): images larger than the model's input are read as a grid of up to 3 x 3 evenly spaced
crops (:func:`crops`); smaller ones are reflect-padded. HD-CLIP averages the crops' embeddings
and reads the levels from the mean (:func:`embed`); an estimator without an embedding space
(the baselines of table 2) averages its crops' scores and levels (:func:`full_image`).
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from zephir import io as zio
from zephir.conditioning import describe_levels as _describe
from zephir.estimator_interface import Estimator
from zephir.hdclip.model import HDCLIP


def crops(pixels: np.ndarray, size: int, max_per_side: int = 3) -> torch.Tensor:
    """(N, 3, size, size) uint8 crops covering the image (reflect-padded when smaller)."""
    x = torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1)
    h, w = x.shape[1:]
    if h < size or w < size:
        ph, pw = max(0, size - h), max(0, size - w)
        mode = "reflect" if ph < h and pw < w else "replicate"
        x = F.pad(x[None].float(), (0, pw, 0, ph), mode=mode)[0].round().to(torch.uint8)
        h, w = x.shape[1:]

    def starts(n: int) -> list[int]:
        k = min(max_per_side, math.ceil(n / size))
        return [0] if k == 1 else [round(i * (n - size) / (k - 1)) for i in range(k)]

    return torch.stack([x[:, y:y + size, x0:x0 + size] for y in starts(h) for x0 in starts(w)])


@dataclass
class ImageEmbedding:
    """HD-CLIP's view of one full-size image (the mean over its crops).

    ``semantic``: (d,) unit semantic embedding (zeros when not asked for); ``degradation``:
    (d,) degradation-branch embedding z; ``embeddings``: (K, d) unit per-type embeddings e_k
    (eq. 4); ``present``: (K,) presence probabilities; ``levels``: (K,) 0..100 levels (eq. 6).
    """

    semantic: torch.Tensor
    degradation: torch.Tensor
    embeddings: torch.Tensor
    present: torch.Tensor
    levels: torch.Tensor


@torch.no_grad()
def embed(model: HDCLIP, images: Sequence[np.ndarray], device="cpu", batch: int = 64, *,
          semantic: bool = True) -> list[ImageEmbedding]:
    """HD-CLIP's embeddings of full-size RGB uint8 images, read as :func:`crops` (never
    resized): per image, the crops' embeddings and confidence logits are averaged (unit
    vectors renormalised) and the levels of eq. 6 read from the mean per-type embeddings.
    This is what restoration conditions a backbone on."""
    model.eval()
    size = model.image_size
    all_crops = [crops(px, size) for px in images]
    owner = torch.cat([torch.full((len(c),), i) for i, c in enumerate(all_crops)])
    stacked = torch.cat(all_crops)
    parts: dict[str, list[torch.Tensor]] = {"sem": [], "z": [], "emb": [], "conf": []}
    for s in range(0, len(stacked), batch):
        out = model(stacked[s:s + batch].to(device).float().div(255), semantic=semantic)
        for key, value in (("sem", out.semantic), ("z", out.degradation),
                           ("emb", out.embeddings), ("conf", out.confidence)):
            parts[key].append(value.float().cpu())
    sem, z, emb, conf = (torch.cat(parts[k]) for k in ("sem", "z", "emb", "conf"))
    results = []
    for i in range(len(images)):
        m = owner == i
        e = F.normalize(emb[m].mean(0, keepdim=True), dim=-1)
        results.append(ImageEmbedding(
            semantic=F.normalize(sem[m].mean(0), dim=-1) if semantic else sem[m].mean(0),
            degradation=z[m].mean(0), embeddings=e[0], present=torch.sigmoid(conf[m].mean(0)),
            levels=model.levels(e.to(device)).cpu()[0].clamp(0, 100)))
    return results


def describe(model: HDCLIP, emb: ImageEmbedding) -> dict:
    """{"type", "degradations": {type: {"present", "level", "value"}}} of one image."""
    return _describe(model.cfg.types, emb.present, emb.levels)


@torch.no_grad()
def full_image(model: Estimator, images: Sequence[np.ndarray], device="cpu", batch: int = 64
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, K) presence scores and 0..100 levels of full-size RGB uint8 ``images``, for any
    estimator: HD-CLIP through :func:`embed`; any other estimator averages
    :meth:`~zephir.estimator_interface.Estimator.estimate_batch` over each image's :func:`crops` (a
    type it does not model stays NaN)."""
    if isinstance(model, HDCLIP):
        embs = embed(model, images, device, batch, semantic=False)
        return (torch.stack([e.present for e in embs]) if embs else torch.zeros(0),
                torch.stack([e.levels for e in embs]) if embs else torch.zeros(0))
    was_training = model.training
    model.eval()
    all_crops = [crops(px, model.image_size) for px in images]
    stacked = torch.cat(all_crops) if all_crops else torch.zeros(0, 3, 1, 1, dtype=torch.uint8)
    parts = [model.estimate_batch(stacked[s:s + batch].to(device).float().div(255))
             for s in range(0, len(stacked), batch)]
    model.train(was_training)
    scores = torch.cat([p.scores.float().cpu() for p in parts]) if parts else torch.zeros(0)
    levels = torch.cat([p.levels.float().cpu() for p in parts]) if parts else torch.zeros(0)
    bounds = np.cumsum([0] + [len(c) for c in all_crops])
    means = [(scores[a:b].mean(0), levels[a:b].mean(0).clamp(0, 100))
             for a, b in itertools.pairwise(bounds)]
    return (torch.stack([m[0] for m in means]) if means else torch.zeros(0),
            torch.stack([m[1] for m in means]) if means else torch.zeros(0))


def estimate(model: Estimator, images: Sequence[np.ndarray], device="cpu", batch: int = 64
             ) -> list[dict]:
    """Per image: {"type", "degradations": {type: {"present", "level", "value"}}}, from
    :func:`full_image` (any estimator)."""
    present, levels = full_image(model, images, device, batch)
    return [_describe(model.cfg.types, p, lv) for p, lv in zip(present, levels)]


def predict_files(model: Estimator, paths: Sequence[Path], device="cpu", batch: int = 64
                  ) -> tuple[list[dict], list[str]]:
    """:func:`estimate` on image files (through the one loader); adds "image" to each result.

    A file that cannot be read is skipped: the second list holds one line per such file,
    naming it and the reason, and the others are predicted all the same.
    """
    good, images, errors = [], [], []
    for p in paths:
        try:
            images.append(zio.load_image(p).pixels)
            good.append(p)
        except (OSError, ValueError) as exc:
            errors.append(str(exc) if str(p) in str(exc) else f"{p}: {exc}")
    out = estimate(model, images, device, batch) if images else []
    return [{"image": str(p), **r} for p, r in zip(good, out)], errors


def format_table(results: list[dict], types: Sequence[str], note: str = "") -> str:
    """A readable table: one line per image, present / level / value per type."""
    head = f"{'image':30s} {'type':10s} " + " ".join(f"{t:>24s}" for t in types)
    sub = f"{'':30s} {'':10s} " + " ".join(f"{'p':>6s} {'level':>7s} {'value':>9s}"
                                         for _ in types)
    lines = [head, sub]
    for r in results:
        cells = " ".join(f"{d['present']:6.2f} {d['level']:7.1f} {d['value']:9.3f}" if d
                         else f"{'-':>6s} {'-':>7s} {'-':>9s}"
                         for d in (r["degradations"].get(t) for t in types))
        lines.append(f"{Path(r['image']).name[:30]:30s} {r['type'] or '-':10s} {cells}")
    if note:
        lines.append(note)
    return "\n".join(lines)
