"""The trainer's data: labelled samples, the stateless batch order, flips, semantic targets.

The batch of step ``s`` and its flips are functions of (seed, s) only, so that a resumed run
sees exactly the batches an uninterrupted one would, whatever the number of loader workers.

Two ways in, one order: a decoded set (``cache_images``) is indexed as one tensor, on the
training device when it fits; otherwise a :class:`torch.utils.data.DataLoader` with worker
processes decodes each step's batch (one batch a worker, pinned for the copy to a GPU).
Flips are applied on the device to the whole batch (:func:`flip`).
"""
from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from zephir import data as zdata
from zephir import estimators
from zephir import io as zio
from zephir import seed as zseed
from zephir.degrade import synth

#: The flip states of a sample: index ``2 * horizontal + vertical``.
FLIP_STATES = 4


class LabelledSet(torch.utils.data.Dataset):
    """Samples of a synth manifest, read a batch at a time (``set[indices]``). ``group``
    numbers the source photos, so that a loss can tell which samples show the same photo."""

    def __init__(self, root: Path, rows: list[dict], types, *, cache: bool = False):
        self.root, self.rows, self.types = Path(root), rows, tuple(types)
        self.present = torch.tensor([[r[f"{t}_level"] != "" for t in self.types] for r in rows],
                                    dtype=torch.float32)
        self.level = torch.tensor([[float(r[f"{t}_level"] or 0.0) for t in self.types]
                                   for r in rows], dtype=torch.float32)
        sources = sorted({r["source"] for r in rows})
        number = {s: i for i, s in enumerate(sources)}
        self.group = torch.tensor([number[r["source"]] for r in rows], dtype=torch.long)
        self._cache = None
        if cache:
            self._cache = torch.stack([self._load(i) for i in range(len(rows))])

    def _load(self, i: int) -> torch.Tensor:
        px = zio.read_png(self.root / self.rows[i]["path"])
        return torch.from_numpy(px.transpose(2, 0, 1).copy())  # uint8

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def cached(self) -> bool:
        return self._cache is not None

    def images(self) -> torch.Tensor:
        """Every sample's image, (N, 3, S, S) uint8 (the cache when there is one)."""
        if self._cache is not None:
            return self._cache
        return torch.stack([self._load(i) for i in range(len(self.rows))])

    def __getitem__(self, indices) -> tuple[torch.Tensor, ...]:
        """The stacked batch of ``indices`` (what a loader worker returns): uint8 images
        (B, 3, S, S), presence (B, K), level (B, K), the indices."""
        idx = torch.as_tensor(np.asarray(indices), dtype=torch.long)
        imgs = (self._cache[idx] if self._cache is not None
                else torch.stack([self._load(int(j)) for j in idx]))
        return imgs, self.present[idx], self.level[idx], idx


def batch_indices(step: int, n: int, batch: int, seed: int) -> np.ndarray:
    """The global batch of ``step``: consecutive slices of per-epoch permutations (stateless)."""
    start = step * batch
    out = []
    while len(out) < batch:
        epoch, pos = divmod(start + len(out), n)
        perm = zseed.rng(seed, "epoch", epoch).permutation(n)
        out.extend(perm[pos: pos + batch - len(out)].tolist())
    return np.asarray(out)


class StepBatches:
    """This rank's share of the global batch of each step in ``range(start, steps)``."""

    def __init__(self, n: int, batch: int, seed: int, start: int, steps: int, *,
                 rank: int = 0, world: int = 1):
        self.n, self.batch, self.seed, self.start, self.steps = n, batch, seed, start, steps
        self.local = batch // world
        self.offset = rank * self.local

    def __len__(self) -> int:
        return max(0, self.steps - self.start)

    def __iter__(self) -> Iterator[np.ndarray]:
        for step in range(self.start, self.steps):
            idx = batch_indices(step, self.n, self.batch, self.seed)
            yield idx[self.offset:self.offset + self.local]


def flip_states(step: int, seed: int, offset: int, n: int) -> torch.Tensor:
    """The flip state (0..3, see :data:`FLIP_STATES`) of the ``n`` samples of this rank at
    ``step``: draws for the whole global batch, seeded by (seed, step), read from ``offset``."""
    r = zseed.rng(seed, "augment", step)
    hv = r.integers(0, 2, size=(offset + n, 2))[offset:]
    return torch.from_numpy(2 * hv[:, 0] + hv[:, 1])


def flip(images: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
    """Horizontal and vertical flips (degradation-preserving) of a (B, C, H, W) batch by state,
    as two whole-batch selections (flips permute pixels: exact in any dtype)."""
    states = states.to(images.device).view(-1, 1, 1, 1)
    images = torch.where(states >= 2, images.flip(-1), images)
    return torch.where(states % 2 == 1, images.flip(-2), images)


def batches(dataset: LabelledSet, order: StepBatches, *, workers: int, device: torch.device,
            depth: int = 4) -> Iterator[tuple[torch.Tensor, ...]]:
    """(uint8 images, presence, level, indices) of each step of ``order``, images on ``device``.

    A decoded set is indexed directly (moved to a GPU once, when it fits in a quarter of the
    free memory). Otherwise a DataLoader's ``workers`` processes decode whole batches (one
    batch a worker, ``depth`` batches ahead each), pinned for the copy to a GPU; with no
    worker the main process decodes. Measured on one H200 (README "Benchmarks"): processes
    fed tiny-rn at 0.71-0.77 of its bare step, where 8 decoding threads reached only 0.32.
    """
    if dataset.cached:
        images = dataset.images()
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            images = images.to(device) if images.numel() < free // 4 else images.pin_memory()
        present, level = dataset.present.to(device), dataset.level.to(device)
        for idx in order:
            i = torch.as_tensor(idx, dtype=torch.long)
            on = i.to(device)
            yield (images[i.to(images.device)].to(device, non_blocking=True), present[on],
                   level[on], i)
        return
    loader = torch.utils.data.DataLoader(
        dataset, sampler=order, batch_size=None, num_workers=workers,
        pin_memory=device.type == "cuda", prefetch_factor=depth if workers else None)
    for imgs, present, level, idx in loader:
        yield (imgs.to(device, non_blocking=True), present.to(device, non_blocking=True),
               level.to(device, non_blocking=True), idx)


def read_captions(path: Path) -> dict[str, str]:
    """Captions by image name from a DA-CLIP-style CSV (tab-separated, columns ``filepath``
    and ``title``; a comma-separated file with the same columns is read too). Keys are the
    file names and stems of ``filepath``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such captions file (datasets.<name>.captions)")
    text = path.read_text()
    dialect = "excel-tab" if "\t" in text.splitlines()[0] else "excel"
    rows = list(csv.DictReader(text.splitlines(), dialect=dialect))
    if not rows or not {"filepath", "title"} <= set(rows[0]):
        raise ValueError(f"{path}: a captions file needs the columns 'filepath' and 'title' "
                         "(DA-CLIP's layout)")
    out = {}
    for r in rows:
        name = Path(r["filepath"]).name
        out[name] = out[Path(name).stem] = r["title"]
    return out


def caption_of(rows: Sequence[dict], captions: dict[str, str], path: Path) -> list[str]:
    """Each sample's caption (by its source's file name, else stem); a source without one is
    an error that names it."""
    missing = sorted({r["source"] for r in rows if r["source"] not in captions
                      and Path(r["source"]).stem not in captions})
    if missing:
        raise ValueError(f"{path}: no caption for {len(missing)} training source(s), e.g. "
                         f"{', '.join(missing[:3])}")
    return [captions.get(r["source"], captions.get(Path(r["source"]).stem)) for r in rows]


class SemanticTable:
    """The semantic targets of every training sample, read per batch (:meth:`pick`) as
    :class:`zephir.estimators.SemanticTargets`."""

    def __init__(self, hq: torch.Tensor, text: torch.Tensor | None, group: torch.Tensor):
        self.hq, self.text, self.group = hq, text, group  # (N, 4, d), (N, d) | None, (N,)

    def pick(self, idx: torch.Tensor, states: torch.Tensor, device
             ) -> estimators.SemanticTargets:
        """The targets of the samples ``idx`` whose inputs were flipped by ``states``."""
        idx = torch.as_tensor(idx, dtype=torch.long).cpu()
        group = self.group[idx]
        return estimators.SemanticTargets(
            image=self.hq[idx, states.cpu()].to(device),
            text=None if self.text is None else self.text[idx].to(device),
            same=(group[:, None] == group[None, :]).to(device))


def _clean_crop(pixels: np.ndarray, row: dict) -> np.ndarray:
    """The clean image a sample degrades, float32 in [0, 1]: its crop of the 8-bit source, or
    for a randomised set (a ``crop_scale`` other than 1) :func:`synth.clean_crop`'s resized
    region."""
    x, y, c = int(row["crop_x"]), int(row["crop_y"]), int(row["crop_size"])
    if float(row.get("crop_scale") or 1.0) == 1.0:
        return pixels[y:y + c, x:x + c].astype(np.float32) / np.float32(255)
    return synth.clean_crop(zio.to_float(pixels), row).astype(np.float32)


def hq_targets(model, rows: list[dict], sources_index: Path, device, *, batch: int = 64
               ) -> torch.Tensor:
    """The frozen CLIP embedding of each sample's clean crop in each flip state, (N, 4, d):
    the ground-truth semantic target, flipped as the sample's LQ input is flipped."""
    by_name = {p.name: p for p in zdata.image_list(sources_index)}
    out = torch.zeros(len(rows), FLIP_STATES, model.embed_dim)
    order = sorted(range(len(rows)), key=lambda i: rows[i]["source"])
    cache: dict[str, np.ndarray] = {}
    with torch.no_grad():
        for start in range(0, len(order), batch):
            chunk = order[start:start + batch]
            crops = []
            for i in chunk:
                r = rows[i]
                if r["source"] not in cache:
                    cache.clear()
                    cache[r["source"]] = zio.load_image(by_name[r["source"]]).pixels
                crops.append(torch.from_numpy(_clean_crop(cache[r["source"]], r)))
            hq = torch.stack(crops).permute(0, 3, 1, 2).to(device)
            for state in range(FLIP_STATES):
                view = flip(hq, torch.full((len(chunk),), state))
                out[chunk, state] = model.encode_semantic(model.normalize(view)).float().cpu()
    return out
