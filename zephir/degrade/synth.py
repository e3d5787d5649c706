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
exist; a rerun with the same spec skips those images (and a source made again under other
settings forgets its parts under the old ones, whose images it overwrites).

Randomised synthesis (``randomise``, issue 14; ``method.md``): each sample also draws what its
label does not fix, as Real-ESRGAN does for its resizes: the source region's scale (a square of
1-1.5 times the crop size around the fixed crop, resized to the crop size before degrading), the
blur kernel's support and sampling, the resampling of the downsample operator's two steps (the
shrink antialiased or not), the JPEG chroma subsampling and where the JPEG block grid falls in
the crop. They come from a generator of their own, seeded by the sample's seed, so that the
labels (types and levels) and the noise are those of the fixed pipeline; the manifest records
them (:data:`CHOICE_COLUMNS`), and the set's fingerprint what they are drawn from
(:func:`randomised_choices`). Off, the output is the fixed pipeline's.
"""
from __future__ import annotations

import csv
import glob
import hashlib
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from zephir import datasets
from zephir import io as zio
from zephir import seed as zseed
from zephir.degrade import levels, ops
from zephir.parallel import pmap
from zephir.schema import default

MANIFEST = "manifest.csv"
REPORT = "report.json"
FORMAT_VERSION = 1
#: Randomised synthesis draws each sample's resampling of downsample's two steps from
#: Real-ESRGAN's set (the shrink also from an antialiased one, :data:`ops.ANTIALIAS`), its blur
#: kernel's radius as ceil(k sigma) with k uniform in BLUR_SUPPORT, and its source region's side
#: uniform in 1..MAX_CROP_SCALE times the crop size.
RESAMPLINGS: tuple[str, ...] = ("area", "bilinear", "bicubic")
SHRINKS: tuple[str, ...] = (*RESAMPLINGS, ops.ANTIALIAS)
BLUR_SUPPORT: tuple[float, float] = (3.0, 4.0)
MAX_CROP_SCALE = 1.5
#: The JPEG block grid's offset from the crop's corner is drawn per axis in 0..JPEG_PHASES-1:
#: 16 px, 4:2:0's MCU, covers every offset of the 8 px blocks and of the chroma grid.
JPEG_PHASES = 16
#: The manifest columns of a randomised set's choices, by the type they apply to: empty when the
#: sample lacks that type (``crop_scale``, the source region's side / the crop size, always set).
CHOICE_COLUMNS: dict[str, tuple[str, ...]] = {
    "blur": ("blur_support", "blur_sampling"),
    "downsample": ("resample_down", "resample_up"),
    "jpeg": ("jpeg_subsampling", "jpeg_phase_y", "jpeg_phase_x"),
}


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
    randomise: bool = default("synth.randomise")

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

    def settings(self) -> dict:
        """The settings that identify a set (its fingerprint, the report's ``spec``): every
        field, less ``randomise`` when off, so that a fixed-pipeline set made before the switch
        existed keeps its fingerprint (its files are the same) and resumes; on, ``randomise``
        is what is drawn from (:func:`randomised_choices`), so that a set drawn from other
        choices is never resumed."""
        spec = asdict(self)
        if self.randomise:
            spec["randomise"] = randomised_choices()
        else:
            del spec["randomise"]
        return spec

    def fingerprint(self) -> str:
        blob = json.dumps({"spec": self.settings(), "format": FORMAT_VERSION}, sort_keys=True)
        return hashlib.sha1(blob.encode()).hexdigest()[:12]


def randomised_choices() -> dict:
    """What randomised synthesis draws each choice from (:func:`draw_choices`)."""
    return {"crop_scale": [1.0, MAX_CROP_SCALE], "blur_support": list(BLUR_SUPPORT),
            "blur_sampling": list(ops.BLUR_SAMPLINGS), "resample_down": list(SHRINKS),
            "resample_up": list(RESAMPLINGS), "jpeg_subsampling": list(ops.JPEG_SUBSAMPLINGS),
            "jpeg_phase_y": [0, JPEG_PHASES - 1], "jpeg_phase_x": [0, JPEG_PHASES - 1]}


def manifest_columns(types: Sequence[str] = levels.LABEL_ORDER, randomise: bool = False
                     ) -> list[str]:
    cols = ["path", "source", "split", "sample", "types", "crop_x", "crop_y", "crop_size",
            "seed"]
    for kind in types:
        cols += [f"{kind}_value", f"{kind}_level"]
    if randomise:
        cols += ["crop_scale", *(c for kind in types for c in CHOICE_COLUMNS.get(kind, ()))]
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


def draw_choices(spec: SynthSpec, sample_seed: int, crop_xy: tuple[int, int],
                 shape: tuple[int, int]) -> tuple[tuple[int, int], dict]:
    """Randomised synthesis: one sample's source region's corner and its choices, as the manifest
    records them (``crop_scale`` and every column of :data:`CHOICE_COLUMNS`).

    A generator of their own, seeded by the sample's seed, draws them, so that the fixed
    pipeline's draws (crop, levels, noise) stay as they are. The region's side is uniform in
    ``crop_size .. MAX_CROP_SCALE crop_size`` (at most the image's short side); it is centred on
    the fixed crop at ``crop_xy``, shifted into the image.
    """
    r = zseed.rng(sample_seed, "randomise")
    c, (h, w), (x, y) = spec.crop_size, shape, crop_xy
    side = int(r.integers(c, min(math.floor(MAX_CROP_SCALE * c), h, w) + 1))
    corner = (min(max(x - (side - c) // 2, 0), w - side),
              min(max(y - (side - c) // 2, 0), h - side))
    choices = {"crop_scale": side / c,
               "blur_support": round(float(r.uniform(*BLUR_SUPPORT)), 4),
               "blur_sampling": str(r.choice(ops.BLUR_SAMPLINGS)),
               "resample_down": str(r.choice(SHRINKS)),
               "resample_up": str(r.choice(RESAMPLINGS)),
               "jpeg_subsampling": str(r.choice(list(ops.JPEG_SUBSAMPLINGS))),
               "jpeg_phase_y": int(r.integers(JPEG_PHASES)),
               "jpeg_phase_x": int(r.integers(JPEG_PHASES))}
    return corner, choices


def operator_options(spec: SynthSpec, choices: Mapping | None) -> dict[str, dict]:
    """``ops.apply``'s options of a sample: its drawn ``choices`` (:func:`draw_choices`), or
    without them the fixed pipeline's (``spec.interpolation`` both ways, else the defaults)."""
    if not choices:
        return {"downsample": {"down": spec.interpolation, "up": spec.interpolation}}
    return {"blur": {"support": choices["blur_support"], "sampling": choices["blur_sampling"]},
            "downsample": {"down": choices["resample_down"], "up": choices["resample_up"]},
            "jpeg": {"subsampling": choices["jpeg_subsampling"],
                     "phase": (int(choices["jpeg_phase_y"]), int(choices["jpeg_phase_x"]))}}


def clean_crop(img: np.ndarray, row: Mapping) -> np.ndarray:
    """The clean image a manifest row's sample degrades, cut from its float source ``img``: the
    square at (crop_x, crop_y) of side crop_size x crop_scale (crop_size when the set is not
    randomised), resized to crop_size by area resampling (an average, which never aliases: an
    alias would read as downsampling)."""
    x, y, size = int(row["crop_x"]), int(row["crop_y"]), int(row["crop_size"])
    side = round(size * float(row.get("crop_scale") or 1.0))
    crop = img[y:y + side, x:x + side]
    return crop if side == size else np.clip(ops.resize(crop, (size, size), "area"), 0.0, 1.0)


def _fmt(v) -> str:
    return "" if v is None else (repr(v) if isinstance(v, float) else str(v))


def rows_to_csv(rows: list[dict], columns: list[str]) -> str:
    """Manifest rows as CSV text: ``columns`` in order, None empty, floats by ``repr`` (full
    precision, read back exactly)."""
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


def _drop_stale_parts(out: Path, source: str, split: str) -> None:
    """Forget the finished-marks of ``source``'s ``split`` samples under any other settings
    (or an older file of that stem): its images are about to be overwritten, and a rerun with
    those settings would resume samples that no longer exist."""
    for p in (out / ".parts").glob(f"*/{glob.escape(source)}.{split}.*.csv"):
        if p.name.removesuffix(".csv").rsplit(".", 1)[0] == f"{source}.{split}":
            p.unlink(missing_ok=True)


def synth_source(path: Path, out: Path, spec: SynthSpec, split: str) -> SourceResult:
    """Synthesise every sample of one source image (runs in a worker process)."""
    source = _source_key(path)
    result = SourceResult(source=source)
    columns = manifest_columns(spec.types, spec.randomise)
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
    _drop_stale_parts(out, source, split)
    for sample, kinds in plan_samples(spec, source, split):
        (x, y), params, labels, r, sample_seed = draw_sample(spec, source, sample, kinds, (h, w))
        choices = None
        if spec.randomise:
            (x, y), choices = draw_choices(spec, sample_seed, (x, y), (h, w))
        rel = Path("images") / split / f"{source}__{sample}.png"
        row = {"path": rel.as_posix(), "source": path.name, "split": split, "sample": sample,
               "types": "+".join(kinds), "crop_x": x, "crop_y": y,
               "crop_size": spec.crop_size, "seed": sample_seed}
        for kind in spec.types:
            row[f"{kind}_value"] = params.get(kind)
            row[f"{kind}_level"] = labels.get(kind)
        if choices:
            row["crop_scale"] = choices["crop_scale"]
            row.update({c: choices[c] for kind in kinds for c in CHOICE_COLUMNS.get(kind, ())})
        lq = ops.apply(clean_crop(img, row), params, r, options=operator_options(spec, choices))
        zio.write_png(out / rel, zio.to_uint8(lq))
        result.rows.append({c: _fmt(row.get(c)) for c in columns})
    zio.write_text(part, rows_to_csv(result.rows, columns))
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
    stems = datasets.by_stem(datasets.image_list(images) if isinstance(images, (str, Path))
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
        "spec": spec.settings(),
        "split": split or "by image",
        "fingerprint": spec.fingerprint(),
    }
    if not rows:
        reasons = "; ".join(f"{k}: {v}" for k, v in report["images_refused"].items())
        raise ValueError(f"no usable source image among {len(files)} file(s): {reasons}")
    rows.sort(key=lambda row: (row["source"], row["sample"]))
    zio.write_text(out / MANIFEST, rows_to_csv(rows, manifest_columns(spec.types,
                                                                     spec.randomise)))
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
