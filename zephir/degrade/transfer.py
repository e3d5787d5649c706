"""A second, independent implementation of the four degradation operators (issue 14, item 1).

The transfer evaluation reads photos degraded by code HD-CLIP never trained on. These operators
take the same native parameters as :mod:`zephir.degrade.ops` (and the same 0..100 levels,
through :func:`zephir.degrade.levels.realizable`) but are written with other libraries and
other implementation choices, so that the evaluation measures *implementation shift*, never a
different level scale:

========== ============================================ ==========================================
type       here                                         ops.py
========== ============================================ ==========================================
blur       ``scipy.ndimage.gaussian_filter`` in float64, cv2 ``sepFilter2D``, float32, sampled
           sampled kernel truncated at 4 sigma (radius  kernel of radius ``ceil(4 sigma)``,
           ``int(4 sigma + 0.5)``), borders ``reflect``  borders reflect-101 (``dcba|abcd``
           (half-sample symmetric, ``dcba|abcd``)       -> ``dcb|abcd``)
downsample Pillow, per channel in float (mode "F"):     cv2 bicubic both ways (no antialiasing
           LANCZOS down (antialiased: the kernel        on the shrink: it aliases; randomised:
           widens with the factor), BICUBIC back up     area, bilinear, bicubic or a Gaussian
                                                        prefilter + bicubic down, area, bilinear
                                                        or bicubic up)
noise      ``Generator.normal`` in float64, clipped     ``standard_normal`` in float32, clipped
jpeg       the standard's lossy steps in float64:       cv2 (libjpeg, fixed-point colour and
           JFIF colour, chroma averaged (4:2:2 by       DCT), 4:2:0 (randomised: 4:4:4, 4:2:2
           default), ``scipy.fft`` DCT, Annex K tables  or 4:2:0)
           scaled by IJG quality, linear chroma
           upsampling (``scipy.ndimage.zoom``)
========== ============================================ ==========================================

Two correct implementations of the same operator at the same parameter agree closely: here blur,
noise and JPEG differ from ops.py in numerics only, and the evaluation measures content and crop
shift through them; resampling is where implementations really differ (antialiasing, kernels).
JPEG: Pillow and cv2 wrap the same libjpeg(-turbo) and decode to the same bytes
(``tests/degrade/test_randomise.py``), so neither is a second implementation of the other.
:func:`jpeg` writes out what makes JPEG lossy (entropy coding is lossless and left out) with
libjpeg's quantisation tables at each quality, so that the label keeps its meaning. It differs
from libjpeg in arithmetic only (about 44 dB apart, ``tests/degrade/test_transfer.py``): float
DCT and colour conversion without libjpeg's rounding of each plane to 8 bits, no clamp of the
decoded planes before the conversion back, ties rounded to even; libjpeg's default ("fancy")
chroma upsampling is the same linear interpolation at sample centres. Its default chroma
subsampling, 4:2:2 (horizontal only, what many cameras write), is one the fixed synthesiser
never makes (the randomised one draws it); ``subsampling`` may be "4:2:0" or "4:4:4".

:func:`transfer_set` builds the evaluation samples from float photos in memory (crops of random
sizes other than training's, each type at random continuous levels, all seeded); :func:`make`
(``zephir transfer-set``) builds them from image files and writes them as PNGs and a manifest
whose columns are those of :func:`zephir.degrade.synth.manifest_columns` (readable by
:func:`zephir.degrade.synth.read_manifest`). The crop size varies per row, so the set is read
through the full-image path of ``zephir predict`` (``zephir evaluate --transfer``).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import fft, ndimage

from zephir import io as zio
from zephir import seed as zseed
from zephir.degrade import levels, ops

#: Chroma subsampling name -> (horizontal, vertical) factor by which :func:`jpeg` averages
#: the chroma planes.
JPEG_SUBSAMPLINGS = {"4:4:4": (1, 1), "4:2:2": (2, 1), "4:2:0": (2, 2)}
#: The JPEG standard's example quantisation tables (ITU-T T.81, Annex K, tables K.1 and K.2,
#: row by row), which IJG's quality scales (:func:`quantisation_table`).
ANNEX_K_LUMA = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99]).reshape(8, 8)
ANNEX_K_CHROMA = np.array([
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99, 99, 99, 99, 99, 99,
    *[99] * 32]).reshape(8, 8)
#: JFIF's full-range RGB -> YCbCr (ITU-R BT.601 weights; Cb, Cr centred on 128).
_RGB_TO_YCBCR = np.array([[0.299, 0.587, 0.114],
                          [-0.168736, -0.331264, 0.5],
                          [0.5, -0.418688, -0.081312]])
#: Crop sides of the transfer set as multiples of the training crop: never the size the models
#: were trained on, never smaller than their input (which would be padded).
CROP_FACTORS: tuple[float, float] = (1.25, 2.5)


def crop_sizes(train_crop: int) -> tuple[int, int]:
    """The transfer set's range of crop sides for models trained on ``train_crop``-px crops
    (:data:`CROP_FACTORS`): 160-320 px for the embedded default's 128, 280-560 for 224."""
    return tuple(round(f * train_crop) for f in CROP_FACTORS)


#: Crop sides for the embedded default's 128-px models (training uses 128 or 224 squares).
CROP_SIZES: tuple[int, int] = crop_sizes(128)


def _check(img: np.ndarray) -> np.ndarray:
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) image, got shape {img.shape}")
    return np.asarray(img, dtype=np.float64)


def _out(img: np.ndarray) -> np.ndarray:
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of standard deviation ``sigma`` pixels by ``scipy.ndimage``: the sampled
    kernel truncated at 4 sigma, borders ``reflect`` (half-sample symmetric), in float64."""
    img = _check(img)
    if sigma <= 0:
        return _out(img)
    return _out(ndimage.gaussian_filter(img, sigma=(sigma, sigma, 0), truncate=4.0,
                                        mode="reflect"))


def _pil_resize(img: np.ndarray, size: tuple[int, int], resample) -> np.ndarray:
    """Pillow's resize of each channel as a float ("F") image to ``size`` = (width, height)."""
    return np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(img[..., c],
                                                                     dtype=np.float32), "F")
                                .resize(size, resample), dtype=np.float64)
                     for c in range(img.shape[2])], axis=-1)


def downsample(img: np.ndarray, scale: float) -> np.ndarray:
    """Shrink by ``scale`` with Pillow's LANCZOS (antialiased) and enlarge back to the input's
    size with Pillow's BICUBIC, in float; the small size is ``round(side / scale)``, as in
    ops.py, so that the factor means the same."""
    img = _check(img)
    if scale < 1:
        raise ValueError(f"downsample scale {scale!r} must be >= 1")
    h, w = img.shape[:2]
    small = _pil_resize(img, (max(1, round(w / scale)), max(1, round(h / scale))),
                        Image.Resampling.LANCZOS)
    return _out(_pil_resize(small, (w, h), Image.Resampling.BICUBIC))


def gaussian_noise(img: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Additive white Gaussian noise, ``sigma`` on the 0..255 scale, independent per channel,
    drawn by ``rng.normal`` in float64, then clipped."""
    img = _check(img)
    return _out(img + rng.normal(0.0, sigma / 255.0, size=img.shape))


def quantisation_table(base: np.ndarray, quality: int) -> np.ndarray:
    """``base`` scaled to integer ``quality`` as IJG defines it (what the jpeg label means): a
    percentage of 5000 / quality below 50 and 200 - 2 quality from 50, each entry
    ``(base * percentage + 50) // 100`` kept within 1..255 (baseline JPEG)."""
    pct = 5000 // quality if quality < 50 else 200 - 2 * quality
    return np.clip((base * pct + 50) // 100, 1, 255)


def _quantise(plane: np.ndarray, table: np.ndarray) -> np.ndarray:
    """One plane (0..255, float64) through baseline JPEG's lossy core: padded to whole 8 x 8
    blocks by repeating its last row and column, level-shifted, each block's orthonormal 2-D
    DCT-II (``scipy.fft``) rounded to multiples of ``table``, transformed back."""
    h, w = plane.shape
    padded = np.pad(plane, ((0, -h % 8), (0, -w % 8)), mode="edge") - 128.0
    H, W = padded.shape
    blocks = padded.reshape(H // 8, 8, W // 8, 8).transpose(0, 2, 1, 3)
    coef = fft.dctn(blocks, axes=(2, 3), norm="ortho")
    coef = np.round(coef / table) * table
    back = fft.idctn(coef, axes=(2, 3), norm="ortho").transpose(0, 2, 1, 3).reshape(H, W)
    return back[:h, :w] + 128.0


def jpeg(img: np.ndarray, quality: float, *, subsampling: str = "4:2:2") -> np.ndarray:
    """JPEG at integer ``quality``, the lossy steps of the standard written out in float64:
    the 8-bit pixels to JFIF YCbCr, chroma averaged over ``subsampling``'s blocks (a key of
    :data:`JPEG_SUBSAMPLINGS`), :func:`_quantise` with the Annex K tables scaled to ``quality``,
    chroma upsampled linearly at sample centres (``scipy.ndimage.zoom``), back to RGB and
    rounded to 8 bits. Entropy coding is lossless and left out."""
    img = _check(img)
    q = ops.jpeg_settings(quality, subsampling, JPEG_SUBSAMPLINGS)  # checks only, no codec
    fh, fv = JPEG_SUBSAMPLINGS[subsampling]
    u8 = np.clip(np.rint(img * 255.0), 0, 255)
    ycc = u8 @ _RGB_TO_YCBCR.T + (0.0, 128.0, 128.0)
    h, w = u8.shape[:2]
    planes = [_quantise(ycc[..., 0], quantisation_table(ANNEX_K_LUMA, q))]
    for c in (1, 2):
        chroma = np.pad(ycc[..., c], ((0, -h % fv), (0, -w % fh)), mode="edge")
        chroma = chroma.reshape(chroma.shape[0] // fv, fv, chroma.shape[1] // fh, fh).mean((1, 3))
        chroma = _quantise(chroma, quantisation_table(ANNEX_K_CHROMA, q))
        if (fh, fv) != (1, 1):
            chroma = ndimage.zoom(chroma, (fv, fh), order=1, mode="nearest", grid_mode=True)
        planes.append(chroma[:h, :w])
    rgb = (np.stack(planes, axis=-1) - (0.0, 128.0, 128.0)) @ np.linalg.inv(_RGB_TO_YCBCR).T
    return (np.clip(np.rint(rgb), 0, 255) / 255.0).astype(np.float32)


def apply(img: np.ndarray, kind: str, value: float, rng: np.random.Generator | None = None
          ) -> np.ndarray:
    """One degradation ``kind`` at native ``value`` (noise draws from ``rng``)."""
    levels.get(kind)
    if kind == "blur":
        return gaussian_blur(img, value)
    if kind == "downsample":
        return downsample(img, value)
    if kind == "jpeg":
        return jpeg(img, value)
    if rng is None:
        raise ValueError("noise needs a generator (rng)")
    return gaussian_noise(img, value, rng)


def apply_level(img: np.ndarray, kind: str, level: float,
                rng: np.random.Generator | None = None) -> tuple[np.ndarray, float, float]:
    """``kind`` at 0..100 ``level`` through :func:`zephir.degrade.levels.realizable`: the image,
    the native value applied and that value's level (JPEG's quality is rounded)."""
    value, real = levels.realizable(kind, level)
    return apply(img, kind, value, rng), value, real


@dataclass(frozen=True)
class TransferSample:
    """One sample of the transfer set: ``photo``'s crop at (x, y) of side ``size``, degraded by
    ``kind`` at native ``value`` (``level`` its 0..100 level), ``image`` float32 (size, size, 3)."""

    photo: str
    sample: str
    kind: str
    level: float
    value: float
    x: int
    y: int
    size: int
    seed: int
    image: np.ndarray


def transfer_set(photos: Mapping[str, np.ndarray], *, per_type: int = 10, seed: int = 0,
                 types: Sequence[str] = levels.LABEL_ORDER,
                 crop_sizes: tuple[int, int] = CROP_SIZES) -> list[TransferSample]:
    """The transfer samples of float RGB ``photos`` ({name: (H, W, 3) in [0, 1]}).

    Every photo gets every type at ``per_type`` levels uniform in 0..100 (continuous; JPEG's
    snapped to its integer quality), each on its own square crop of a side uniform in
    ``crop_sizes`` (at most the photo's short side) at a uniform position. Each sample's draws
    come from a generator seeded by (seed, photo, sample), so a sample does not depend on the
    other photos or on their order. Pure: no file is read or written.
    """
    lo, hi = crop_sizes
    if not 8 <= lo <= hi:
        raise ValueError(f"crop_sizes {crop_sizes!r} must satisfy 8 <= low <= high")
    out = []
    for name in sorted(photos):
        img = np.asarray(photos[name], dtype=np.float32)
        if img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"{name}: expected an (H, W, 3) image, got shape {img.shape}")
        h, w = img.shape[:2]
        if min(h, w) < lo:
            raise ValueError(f"{name}: {w}x{h} is smaller than the smallest crop {lo}")
        for kind in types:
            levels.get(kind)
            for i in range(per_type):
                sample = f"{kind}_{i:03d}"
                sample_seed = zseed.derive_seed(seed, name, sample)
                r = np.random.default_rng(sample_seed)
                size = int(r.integers(lo, min(hi, h, w) + 1))
                y = int(r.integers(0, h - size + 1))
                x = int(r.integers(0, w - size + 1))
                level = round(float(r.uniform(0.0, 100.0)), 4)
                lq, value, real = apply_level(img[y:y + size, x:x + size], kind, level, r)
                out.append(TransferSample(photo=name, sample=sample, kind=kind,
                                          level=round(real, 4) + 0.0, value=round(value, 6),
                                          x=x, y=y, size=size, seed=sample_seed, image=lq))
    return out


def manifest_rows(samples: Sequence[TransferSample], types: Sequence[str] = levels.LABEL_ORDER
                  ) -> list[dict]:
    """Manifest rows (the columns of :func:`zephir.degrade.synth.manifest_columns`, split
    "val", paths ``images/{photo}__{sample}.png``) of ``samples``."""
    rows = []
    for s in samples:
        row = {"path": f"images/{s.photo}__{s.sample}.png", "source": s.photo, "split": "val",
               "sample": s.sample, "types": s.kind, "crop_x": s.x, "crop_y": s.y,
               "crop_size": s.size, "seed": s.seed}
        for kind in types:
            row[f"{kind}_value"] = s.value if kind == s.kind else None
            row[f"{kind}_level"] = s.level if kind == s.kind else None
        rows.append(row)
    return rows


def _write_images(samples: Sequence[TransferSample], out: Path, types: Sequence[str]
                  ) -> list[dict]:
    """Write ``samples`` as PNGs under ``out/images``; returns their manifest rows."""
    rows = manifest_rows(samples, types)
    for s, row in zip(samples, rows):
        zio.write_png(out / row["path"], zio.to_uint8(s.image))
    return rows


# --- the transfer protocol: every photo made sharp by the same rule before it is degraded ----

#: Sharp photos the blur measure compares against (bundled with scikit-image, so that the
#: measure needs no dataset): the median over them is a photo's own blur.
SHARP_REFERENCES = ("astronaut", "coffee", "kodim03")
#: The area reductions tried, smallest first: a photo is reduced by the first that makes it
#: sharp enough.
REDUCTIONS = (1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0)


def fine_to_coarse(img: np.ndarray) -> float:
    """log10 of the mean power at 0.2-0.4 cycles/px over that at 0.04-0.08 (luminance, the
    top-left square of at most 512 px, Hann-windowed): how much fine detail a photo has for its
    coarse. Blurring lowers it monotonically."""
    g = np.asarray(img, np.float64).mean(axis=2)
    s = min(*g.shape, 512)
    g = g[:s, :s] - g[:s, :s].mean()
    power = np.abs(fft.fft2(g * np.outer(np.hanning(s), np.hanning(s)))) ** 2
    f = np.hypot(*np.meshgrid(fft.fftfreq(s), fft.fftfreq(s), indexing="ij"))
    return float(np.log10(power[(f > 0.2) & (f < 0.4)].mean()
                          / power[(f > 0.04) & (f < 0.08)].mean()))


def own_blur(img: np.ndarray, sharp: np.ndarray, top: float = 4.0) -> float:
    """The Gaussian sigma (px) that brings the ``sharp`` photo to ``img``'s
    :func:`fine_to_coarse`: 0 when ``img`` is the sharper (bisection to 1/1000 of ``top``)."""
    target, lo, hi = fine_to_coarse(img), 0.0, top
    sharp = np.asarray(sharp, np.float32)[:512 + 32, :512 + 32]  # what is read, + 4 sigma
    if fine_to_coarse(sharp) <= target:
        return 0.0
    for _ in range(10):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if fine_to_coarse(gaussian_blur(sharp, mid)) > target else (lo, mid)
    return (lo + hi) / 2


def blur_measure(img: np.ndarray, references: Sequence[np.ndarray]) -> float:
    """A photo's own blur without any model: the median over the sharp ``references`` of
    :func:`own_blur` (sigma in px)."""
    return float(np.median([own_blur(img, r) for r in references]))


def reduce_area(img: np.ndarray, factor: float) -> np.ndarray:
    """``img`` shrunk by ``factor`` with area averaging (cv2 INTER_AREA); 1 leaves it as is."""
    if factor == 1.0:
        return img
    import cv2

    h, w = img.shape[:2]
    size = (max(1, round(w / factor)), max(1, round(h / factor)))
    return cv2.resize(np.asarray(img, np.float32), size, interpolation=cv2.INTER_AREA)


def sharpen_by_reduction(name: str, img: np.ndarray, references: Sequence[np.ndarray],
                         max_blur: float, smallest: int) -> tuple[np.ndarray, float, float]:
    """The transfer protocol, one rule for every photo whatever its content: the first area
    reduction of :data:`REDUCTIONS` after which :func:`blur_measure` is below ``max_blur`` px.
    Returns the reduced photo, the factor and its measure. A photo that would have to shrink
    below ``smallest`` px (the smallest crop) is an error naming it."""
    for factor in REDUCTIONS:
        small = reduce_area(img, factor)
        if min(small.shape[:2]) < smallest:
            break
        measured = blur_measure(small, references)
        if measured < max_blur:
            return small, factor, measured
    raise ValueError(f"{name}: no area reduction down to {smallest} px brings its blur below "
                     f"{max_blur} px (estimation.transfer.max_blur); leave it out of the set")


def make(images: Sequence[Path], out: Path, *, per_type: int = 10, seed: int = 0,
         types: Sequence[str] = levels.LABEL_ORDER,
         crop_sizes: tuple[int, int] = CROP_SIZES, max_blur: float | None = None) -> Path:
    """``zephir transfer-set``: the transfer set of the image files ``images`` (named by their
    stems, read by the one loader), written under ``out``; returns the manifest's path.

    One photo at a time (memory holds one photo and its samples, whatever the set's size); the
    manifest is written last, and images of an earlier set that this one does not have are
    removed, so the folder holds exactly what the manifest lists.

    ``max_blur`` (px; ``estimation.transfer.max_blur``): first reduce every photo by
    :func:`sharpen_by_reduction`, so that level 0 means a sharp photo; the manifest then
    records each photo's factor and measured blur (columns ``source_reduction``,
    ``source_blur``) and the crops are taken from the reduced photo.
    """
    from zephir.datasets import by_stem, embedded_image
    from zephir.degrade.synth import MANIFEST, manifest_columns, rows_to_csv

    out = Path(out)
    refs = ([zio.to_float(embedded_image(n)) for n in SHARP_REFERENCES]
            if max_blur is not None else [])
    rows = []
    for name, path in sorted(by_stem(images).items()):
        pixels = zio.to_float(zio.load_image(path).pixels)
        extra = {}
        if max_blur is not None:
            pixels, factor, measured = sharpen_by_reduction(name, pixels, refs, max_blur,
                                                            crop_sizes[0])
            extra = {"source_reduction": factor, "source_blur": round(measured, 4)}
        photo_rows = _write_images(transfer_set({name: pixels}, per_type=per_type, seed=seed,
                                                types=types, crop_sizes=crop_sizes), out, types)
        rows += [{**r, **extra} for r in photo_rows]
    columns = manifest_columns(types) + (["source_reduction", "source_blur"]
                                         if max_blur is not None else [])
    zio.write_text(out / MANIFEST, rows_to_csv(rows, columns))
    keep = {out / r["path"] for r in rows}
    for old in (out / "images").glob("*.png"):
        if old not in keep:
            old.unlink()
    return out / MANIFEST
