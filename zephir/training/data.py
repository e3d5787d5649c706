"""The trainer's data: labelled samples, the stateless batch order, flips, semantic targets.

The batch of step ``s`` and its flips are functions of (seed, s) only, so that a resumed run
sees exactly the batches an uninterrupted one would.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from zephir import data as zdata
from zephir import io as zio
from zephir import seed as zseed


class LabelledSet(torch.utils.data.Dataset):
    """Samples of a synth manifest: uint8 image (3, S, S), presence (K,), level (K,), index."""

    def __init__(self, root: Path, rows: list[dict], types, *, cache: bool = False):
        self.root, self.rows, self.types = Path(root), rows, tuple(types)
        self.present = torch.tensor([[r[f"{t}_level"] != "" for t in self.types] for r in rows],
                                    dtype=torch.float32)
        self.level = torch.tensor([[float(r[f"{t}_level"] or 0.0) for t in self.types]
                                   for r in rows], dtype=torch.float32)
        self._cache = None
        if cache:
            self._cache = torch.stack([self._load(i) for i in range(len(rows))])

    def _load(self, i: int) -> torch.Tensor:
        px = zio.load_image(self.root / self.rows[i]["path"]).pixels
        return torch.from_numpy(px).permute(2, 0, 1).contiguous()  # uint8

    def __len__(self) -> int:
        return len(self.rows)

    def images(self) -> torch.Tensor:
        """Every sample's image, (N, 3, S, S) uint8 (the cache when there is one)."""
        if self._cache is not None:
            return self._cache
        return torch.stack([self._load(i) for i in range(len(self.rows))])

    def __getitem__(self, i: int):
        img = self._cache[i] if self._cache is not None else self._load(i)
        return img, self.present[i], self.level[i], i


def batch_indices(step: int, n: int, batch: int, seed: int) -> np.ndarray:
    """The global batch of ``step``: consecutive slices of per-epoch permutations (stateless)."""
    start = step * batch
    out = []
    while len(out) < batch:
        epoch, pos = divmod(start + len(out), n)
        perm = zseed.rng(seed, "epoch", epoch).permutation(n)
        out.extend(perm[pos: pos + batch - len(out)].tolist())
    return np.asarray(out)


def augment(images: torch.Tensor, step: int, seed: int, offset: int = 0) -> torch.Tensor:
    """Random horizontal / vertical flips (degradation-preserving), seeded by (seed, step)."""
    r = zseed.rng(seed, "augment", step)
    flips = r.integers(0, 2, size=(offset + images.shape[0], 2))[offset:]
    out = images.clone()
    for i, (h, v) in enumerate(flips):
        if h:
            out[i] = out[i].flip(-1)
        if v:
            out[i] = out[i].flip(-2)
    return out


def hq_targets(model, rows: list[dict], sources_index: Path, device) -> torch.Tensor:
    """The frozen CLIP embedding of each sample's clean crop (default semantic target), through
    HD-CLIP's ``encode_semantic``."""
    by_name = {p.name: p for p in zdata.image_list(sources_index)}
    out = torch.zeros(len(rows), model.embed_dim)
    order = sorted(range(len(rows)), key=lambda i: rows[i]["source"])
    cache: dict[str, np.ndarray] = {}
    with torch.no_grad():
        for start in range(0, len(order), 64):
            chunk = order[start:start + 64]
            crops = []
            for i in chunk:
                r = rows[i]
                if r["source"] not in cache:
                    cache.clear()
                    cache[r["source"]] = zio.load_image(by_name[r["source"]]).pixels
                x, y, c = int(r["crop_x"]), int(r["crop_y"]), int(r["crop_size"])
                crops.append(torch.from_numpy(cache[r["source"]][y:y + c, x:x + c].copy()))
            batch = torch.stack(crops).permute(0, 3, 1, 2).float().div(255).to(device)
            out[chunk] = model.encode_semantic(model.normalize(batch)).float().cpu()
    return out
