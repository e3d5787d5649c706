"""The labelled degradation dataset (paper, section 4.1).

Every source image gets every type at ``levels_per_type`` levels, one type per sample (the other
types' presence is 0), optionally plus mixtures of 2-4 types (``mixtures_per_image``; a
validation image ``val_mixtures_per_image`` when set, so that training may see single types only
while evaluation still measures mixtures). The split is by source image (``val_fraction``), or
every image in one split (an evaluation set: ``synthesize(..., split="val")``). Each sample is a random crop;
levels are drawn uniformly over ``level_range`` (continuous, not only bin centres). Samples are
stored as PNG (lossless, so a JPEG sample keeps exactly its own artifacts) and listed in
``manifest.csv``, one row per sample, with paths relative to the output folder.

Determinism: every random draw comes from a generator seeded by (seed, source, sample id), so
the files and the manifest are byte-identical whatever the number of workers and their order.
Resumption: each source image's rows are written atomically to ``.parts/`` once all its samples
exist; a rerun with the same spec skips those images.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from zephir import data
from zephir import io as zio
from zephir import seed as zseed
from zephir.degrade import levels, ops
from zephir.parallel import pmap
from zephir.schema import default

MANIFEST = "manifest.csv"
REPORT = "report.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class SynthSpec:
    """What to synthesise; every field is a key of the ``synth`` section of the config."""

    types: tuple[str, ...] = default("synth.types")
    levels_per_type: int = default("synth.levels_per_type")
    crop_size: int = default("synth.crop_size")
    mixtures_per_image: int = default("synth.mixtures_per_image")
    val_mixtures_per_image: int | None = default("synth.val_mixtures_per_image")
    mixture_types: tuple[int, int] = default("synth.mixture_types")
    level_range: tuple[float, float] = default("synth.level_range")
    val_fraction: float = default("synth.val_fraction")
    seed: int = default("synth.seed")
    interpolation: str = default("synth.interpolation")

    def __post_init__(self):
        for kind in self.types:
            if kind not in levels.DEGRADATIONS:
                raise ValueError(f"synth.types: unknown degradation type {kind!r}; "
                                 f"expected some of {', '.join(levels.LABEL_ORDER)}")
        if len(set(self.types)) != len(self.types) or not self.types:
            raise ValueError(f"synth.types: {list(self.types)!r} must be non-empty and unique")
        lo, hi = self.level_range
        if not (0.0 <= lo < hi <= 100.0):
            raise ValueError(f"synth.level_range: {list(self.level_range)!r} must satisfy "
                             "0 <= low < high <= 100")
        kmin, kmax = self.mixture_types
        if ((self.mixtures_per_image or self.val_mixtures_per_image)
                and not (2 <= kmin <= kmax <= len(self.types))):
            raise ValueError(f"synth.mixture_types: {list(self.mixture_types)!r} must satisfy "
                             f"2 <= min <= max <= {len(self.types)} (the number of types)")
        if min(self.levels_per_type, self.mixtures_per_image,
               self.val_mixtures_per_image or 0) < 0:
            raise ValueError("synth.levels_per_type, synth.mixtures_per_image and "
                             "synth.val_mixtures_per_image must be >= 0")
        if self.crop_size < 8:
            raise ValueError(f"synth.crop_size: {self.crop_size} is below the minimum of 8")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"synth.val_fraction: {self.val_fraction} must be in [0, 1)")
        if self.interpolation not in ops._INTERP:
            raise ValueError(f"synth.interpolation: {self.interpolation!r} is not one of "
                             f"{', '.join(ops._INTERP)}")

    @classmethod
    def from_config(cls, section: dict) -> SynthSpec:
        known = set(cls.__dataclass_fields__)
        unknown = set(section) - known - {"workers"}
        if unknown:
            raise ValueError(f"synth: unknown key(s) {', '.join(sorted(unknown))}")
        kw = {k: v for k, v in section.items() if k in known}
        for k in ("types", "mixture_types", "level_range"):
            if k in kw:
                kw[k] = tuple(kw[k])
        return cls(**kw)

    def mixtures(self, split: str) -> int:
        """Mixture samples per source image of ``split``."""
        if split == "val" and self.val_mixtures_per_image is not None:
            return self.val_mixtures_per_image
        return self.mixtures_per_image

    def fingerprint(self) -> str:
        blob = json.dumps({"spec": asdict(self), "format": FORMAT_VERSION}, sort_keys=True)
        return hashlib.sha1(blob.encode()).hexdigest()[:12]


def manifest_columns(types: Sequence[str] = levels.LABEL_ORDER) -> list[str]:
    cols = ["path", "source", "split", "sample", "types", "crop_x", "crop_y", "crop_size",
            "seed"]
    for kind in types:
        cols += [f"{kind}_value", f"{kind}_level"]
    return cols


@dataclass
class SourceResult:
    """What happened to one source image."""

    source: str
    rows: list[dict] = field(default_factory=list)
    conversions: list[str] = field(default_factory=list)
    refused: str | None = None
    resumed: bool = False


def split_sources(names: Sequence[str], val_fraction: float, seed: int) -> dict[str, str]:
    """Assign each source image to 'train' or 'val' (a split by image, never by sample)."""
    names = sorted(names)
    n_val = round(val_fraction * len(names))
    if val_fraction > 0 and len(names) >= 2:
        n_val = min(max(n_val, 1), len(names) - 1)
    order = zseed.rng(seed, "split").permutation(len(names))
    val = {names[i] for i in order[:n_val]}
    return {n: ("val" if n in val else "train") for n in names}


def plan_samples(spec: SynthSpec, source: str, split: str
                 ) -> list[tuple[str, tuple[str, ...]]]:
    """Sample ids and their types for one source of ``split``: singles, then mixtures."""
    plan = [(f"{kind}_{i:03d}", (kind,))
            for kind in spec.types for i in range(spec.levels_per_type)]
    kmin, kmax = spec.mixture_types
    for m in range(spec.mixtures(split)):
        r = zseed.rng(spec.seed, source, f"mix_{m:03d}", "types")
        k = int(r.integers(kmin, kmax + 1))
        chosen = set(r.choice(len(spec.types), size=k, replace=False).tolist())
        plan.append((f"mix_{m:03d}", tuple(t for i, t in enumerate(spec.types) if i in chosen)))
    return plan


def draw_sample(spec: SynthSpec, source: str, sample: str, kinds: Sequence[str],
                shape: tuple[int, int]):
    """The crop box, the native values and a generator for the noise of one sample."""
    sample_seed = zseed.derive_seed(spec.seed, source, sample)
    r = np.random.default_rng(sample_seed)
    h, w = shape
    y = int(r.integers(0, h - spec.crop_size + 1))
    x = int(r.integers(0, w - spec.crop_size + 1))
    lo, hi = spec.level_range
    params, labels = {}, {}
    for kind in kinds:
        level = round(float(r.uniform(lo, hi)), 4)
        value, _ = levels.realizable(kind, level)
        value = round(value, 6)
        params[kind] = value
        labels[kind] = round(levels.normalize(kind, value), 4) + 0.0  # never "-0.0"
    return (x, y), params, labels, r, sample_seed


def _fmt(v) -> str:
    return "" if v is None else (repr(v) if isinstance(v, float) else str(v))


def _rows_to_csv(rows: list[dict], columns: list[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: _fmt(row.get(c)) for c in columns})
    return buf.getvalue()


def read_manifest(path: Path, split: str | None = None, single_only: bool = False
                  ) -> list[dict]:
    """Rows of a manifest (as strings), optionally of one split and single-type samples only."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such manifest (run `zephir synth` first)")
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise ValueError(f"{path}: the manifest has no samples")
    if split:
        rows = [r for r in rows if r["split"] == split]
    if single_only:
        rows = [r for r in rows if "+" not in r["types"]]
    return rows


def _source_key(path: Path) -> str:
    return path.stem


def _part_path(out: Path, spec: SynthSpec, source: str, split: str, digest: str) -> Path:
    return out / ".parts" / spec.fingerprint() / f"{source}.{split}.{digest[:12]}.csv"


def synth_source(path: Path, out: Path, spec: SynthSpec, split: str) -> SourceResult:
    """Synthesise every sample of one source image (runs in a worker process)."""
    source = _source_key(path)
    result = SourceResult(source=source)
    columns = manifest_columns(spec.types)
    try:
        digest = zio.file_sha1(path)
    except OSError as exc:
        result.refused = f"cannot read ({exc})"
        return result
    part = _part_path(out, spec, source, split, digest)
    if part.exists():
        with part.open(newline="") as fh:
            result.rows = list(csv.DictReader(fh))
        result.resumed = True
        return result
    try:
        loaded = zio.load_image(path)
    except zio.ImageError as exc:
        result.refused = str(exc).removeprefix(f"{path}: ")
        return result
    result.conversions = loaded.conversions
    h, w = loaded.pixels.shape[:2]
    if min(h, w) < spec.crop_size:
        result.refused = (f"{w}x{h} is smaller than the crop size {spec.crop_size}")
        return result
    img = zio.to_float(loaded.pixels)
    for sample, kinds in plan_samples(spec, source, split):
        (x, y), params, labels, r, sample_seed = draw_sample(spec, source, sample, kinds, (h, w))
        crop = img[y:y + spec.crop_size, x:x + spec.crop_size]
        lq = zio.to_uint8(ops.apply(crop, params, r, interpolation=spec.interpolation))
        rel = Path("images") / split / f"{source}__{sample}.png"
        zio.write_png(out / rel, lq)
        row = {"path": rel.as_posix(), "source": path.name, "split": split, "sample": sample,
               "types": "+".join(kinds), "crop_x": x, "crop_y": y,
               "crop_size": spec.crop_size, "seed": sample_seed}
        for kind in spec.types:
            row[f"{kind}_value"] = params.get(kind)
            row[f"{kind}_level"] = labels.get(kind)
        result.rows.append({c: _fmt(row.get(c)) for c in columns})
    zio.write_text(part, _rows_to_csv(result.rows, columns))
    return result


def synthesize(images: Sequence[Path] | Path, out: Path, spec: SynthSpec, *, workers: int = 1,
               progress: bool = True, split: str | None = None) -> dict:
    """Build the labelled set under ``out``; returns the run report (also ``report.json``).

    ``images`` is a folder, an image index CSV or a list of files. The split is by source
    image (``spec.val_fraction``), or with ``split`` ("train" or "val") every image goes there:
    an evaluation set of images the model never trains on. A source's samples depend only on
    (spec, source, its split), and its part file is keyed by all three, so that a rerun, or a
    run with another split mode into the same folder, reuses exactly the sources it may. Raises
    ValueError when no image is usable or two files share a name stem.
    """
    out = Path(out)
    if split not in (None, "train", "val"):
        raise ValueError(f"split: {split!r} is not 'train' or 'val' (or None: by image)")
    stems = data.by_stem(data.image_list(images) if isinstance(images, (str, Path))
                         else sorted(map(Path, images)))
    files = list(stems.values())
    splits = ({n: split for n in stems} if split
              else split_sources(list(stems), spec.val_fraction, spec.seed))
    jobs = [(f, out, spec, splits[f.stem]) for f in files]
    results = pmap(synth_source, jobs, workers=workers, desc="synth", progress=progress)
    results.sort(key=lambda r: r.source)
    rows = [row for r in results for row in r.rows]
    report = {
        "images_read": sum(r.refused is None for r in results),
        "images_converted": {r.source: r.conversions for r in results if r.conversions},
        "images_refused": {r.source: r.refused for r in results if r.refused},
        "images_resumed": sum(r.resumed for r in results),
        "samples": len(rows),
        "splits": {s: sum(1 for row in rows if row["split"] == s) for s in ("train", "val")},
        "spec": asdict(spec),
        "split": split or "by image",
        "fingerprint": spec.fingerprint(),
    }
    if not rows:
        reasons = "; ".join(f"{k}: {v}" for k, v in report["images_refused"].items())
        raise ValueError(f"no usable source image among {len(files)} file(s): {reasons}")
    rows.sort(key=lambda row: (row["source"], row["sample"]))
    zio.write_text(out / MANIFEST, _rows_to_csv(rows, manifest_columns(spec.types)))
    zio.write_text(out / REPORT, json.dumps(report, indent=2, sort_keys=True) + "\n")
    return report


def describe(report: dict) -> str:
    """A short human summary of a run report: read, converted, refused with reasons."""
    first, *rest = zio.describe_reads(report)
    first += (f"; {report['samples']} samples ({report['splits']['train']} train, "
              f"{report['splits']['val']} val)")
    if report["images_resumed"]:
        first += f"; {report['images_resumed']} image(s) resumed"
    return "\n".join([first, *rest])
