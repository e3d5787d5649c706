"""The trainer's data: labelled samples, the stateless batch order, flips, semantic targets.

The batch of step ``s`` and its flips are functions of (seed, s) only, so that a resumed run
sees exactly the batches an uninterrupted one would, whatever the number of loader workers.

Two ways in, one order: a decoded set (``cache_images``) is indexed as one tensor, on the
training device when it fits; otherwise a :class:`torch.utils.data.DataLoader` with worker
processes decodes each step's batch (one batch a worker, pinned for the copy to a GPU).
Flips are applied on the device to the whole batch (:func:`flip`).
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from zephir import datasets as zdata
from zephir import estimator_interface
from zephir import io as zio
from zephir import seed as zseed
from zephir.datasets import read_captions  # noqa: F401 - the trainer reads it from here
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


def batch_indices(step: int, n: int, batch: int, seed: int, *stream: object) -> np.ndarray:
    """The global batch of ``step``: consecutive slices of per-epoch permutations (stateless).

    ``stream`` names an independent sequence of permutations (one per group of a composed
    batch, :func:`composed_indices`); without it, the trainer's plain shuffled batches."""
    start = step * batch
    out = []
    while len(out) < batch:
        epoch, pos = divmod(start + len(out), n)
        perm = zseed.rng(seed, "epoch", *stream, epoch).permutation(n)
        out.extend(perm[pos: pos + batch - len(out)].tolist())
    return np.asarray(out)


@dataclass(frozen=True)
class Composition:
    """Type-balanced batches (``hdclip.train.batch_per_type``; paper, section 4.1: "a batch size
    of 512 per degradation type").

    Every global batch holds ``per_type`` single-type samples of each of the K types, taken in
    turn (type 1, type 2, ..., type K, type 1, ...), so that any slice of a multiple of K
    samples (a rank's share when ``per_type`` is a multiple of the processes) is balanced too;
    then ``mixtures`` samples of several types. **(choice)** Mixtures keep the share of the
    batch they have in the labelled set (at least one a batch when the set has any): the
    paper trains on single types only and says nothing of mixtures. Each group draws from its
    own stream of per-epoch permutations, a function of (seed, step): see
    :func:`composed_indices`."""

    types: tuple[str, ...]
    pools: tuple[np.ndarray, ...]   # sample indices: K single-type pools, then the mixtures
    per_type: int
    mixtures: int

    @property
    def batch(self) -> int:
        return len(self.types) * self.per_type + self.mixtures

    def describe(self) -> str:
        sizes = ", ".join(f"{t} {len(p)}" for t, p in zip(self.types, self.pools))
        return (f"{self.per_type} per type ({sizes} samples)"
                + (f" + {self.mixtures} mixtures of {len(self.pools[-1])}" if self.mixtures
                   else ""))


def compose(present: torch.Tensor, types, per_type: int) -> Composition:
    """The :class:`Composition` of a labelled set with presence labels ``present`` (N, K)."""
    present = present.bool()
    single = present.sum(1) == 1
    pools = [np.flatnonzero((single & present[:, k]).numpy()) for k in range(len(types))]
    empty = [t for t, p in zip(types, pools) if len(p) == 0]
    if empty:
        raise ValueError(f"hdclip.train.batch_per_type: the train split has no single-type "
                         f"sample of {', '.join(empty)}; a type-balanced batch needs every type")
    mixed = np.flatnonzero((~single).numpy())
    mixtures = 0
    if len(mixed):
        mixtures = max(1, round(len(types) * per_type * len(mixed) / int(single.sum())))
    return Composition(tuple(types), (*pools, mixed), per_type, mixtures)


def composed_indices(step: int, comp: Composition, seed: int) -> np.ndarray:
    """The global batch of ``step`` under ``comp``: each type's ``per_type`` samples from its
    own permutations of its pool (stream named by the type), interleaved by type, then the
    mixtures' (stream "mixtures")."""
    singles = [pool[batch_indices(step, len(pool), comp.per_type, seed, name)]
               for name, pool in zip(comp.types, comp.pools)]
    out = np.stack(singles, axis=1).reshape(-1)
    if comp.mixtures:
        mixed = comp.pools[-1]
        out = np.concatenate([out, mixed[batch_indices(step, len(mixed), comp.mixtures, seed,
                                                       "mixtures")]])
    return out


class StepBatches:
    """This rank's share of the global batch of each step in ``range(start, steps)``: shuffled
    batches of ``batch`` samples, or with ``composition`` its type-balanced ones (``batch``
    must then be its size)."""

    def __init__(self, n: int, batch: int, seed: int, start: int, steps: int, *,
                 rank: int = 0, world: int = 1, composition: Composition | None = None):
        if composition is not None and composition.batch != batch:
            raise ValueError(f"batch {batch} is not the composition's {composition.batch}")
        self.n, self.batch, self.seed, self.start, self.steps = n, batch, seed, start, steps
        self.composition = composition
        self.local = batch // world
        self.offset = rank * self.local

    def __len__(self) -> int:
        return max(0, self.steps - self.start)

    def global_batch(self, step: int) -> np.ndarray:
        if self.composition is not None:
            return composed_indices(step, self.composition, self.seed)
        return batch_indices(step, self.n, self.batch, self.seed)

    def __iter__(self) -> Iterator[np.ndarray]:
        for step in range(self.start, self.steps):
            yield self.global_batch(step)[self.offset:self.offset + self.local]


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
    worker the main process decodes. Measured on one H200 (docs/benchmarks.md): processes
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
    :class:`zephir.estimator_interface.SemanticTargets`."""

    def __init__(self, hq: torch.Tensor, text: torch.Tensor | None, group: torch.Tensor):
        self.hq, self.text, self.group = hq, text, group  # (N, 4, d), (N, d) | None, (N,)

    def pick(self, idx: torch.Tensor, states: torch.Tensor, device
             ) -> estimator_interface.SemanticTargets:
        """The targets of the samples ``idx`` whose inputs were flipped by ``states``."""
        idx = torch.as_tensor(idx, dtype=torch.long).cpu()
        group = self.group[idx]
        return estimator_interface.SemanticTargets(
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
