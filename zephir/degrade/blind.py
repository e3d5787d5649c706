"""Real-ESRGAN's second-order blind degradation (Wang et al., ICCV-W 2021), seeded per image.

The paper synthesises the LQ test images of DIV2K-Val, RealSR and DRealSR with it. Parameters
default to Real-ESRGAN's ``train_realesrgan_x4plus.yml``:

1. blur with a random kernel (iso / aniso / generalised / plateau Gaussians, or a 2-D sinc),
   random resize (up / down / keep, area / bilinear / bicubic), Gaussian or Poisson noise
   (colour or gray), JPEG;
2. the same again with the second-stage ranges (blur with probability 0.8);
3. resize to 1/scale of the input plus a final sinc filter (probability 0.8), and JPEG, in a
   random order.

Written with NumPy and OpenCV (basicsr does not import with current torchvision). Every random
draw is recorded in the returned parameters, so a result can be audited.

:func:`blind_folder` writes, under its output folder, ``lq/<stem>.png``, ``hq/<stem>.png`` (the
source mod-cropped to a multiple of the scale), ``params/<stem>.json`` (the manifest row, the
PNGs' digests and every parameter drawn), ``manifest.csv`` (:data:`MANIFEST_COLUMNS`, read back
with :func:`read_manifest`) and ``report.json``.

Determinism: each image's generator is seeded by (base seed, "blind", stem), so the files are
byte-identical whatever the number of workers. Resumption: an image is reused only when its
record carries the same :func:`fingerprint` (format version, scale, base seed, every range of
the config, the source's stem and content digest); a change of any of them degrades it again.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
from scipy import special

from zephir import datasets
from zephir import io as zio
from zephir import seed as zseed
from zephir.degrade import ops
from zephir.parallel import pmap

KERNEL_TYPES = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso",
                "plateau_aniso")
_RESIZE_MODES = {"area": cv2.INTER_AREA, "bilinear": cv2.INTER_LINEAR,
                 "bicubic": cv2.INTER_CUBIC}


@dataclass(frozen=True)
class StageConfig:
    """The ranges of one degradation stage."""

    blur_prob: float
    kernel_prob: tuple[float, ...]
    sinc_prob: float
    blur_sigma: tuple[float, float]
    betag_range: tuple[float, float]
    betap_range: tuple[float, float]
    resize_prob: tuple[float, float, float]   # up, down, keep
    resize_range: tuple[float, float]
    gaussian_noise_prob: float
    noise_range: tuple[float, float]
    poisson_scale_range: tuple[float, float]
    gray_noise_prob: float
    jpeg_range: tuple[float, float]


@dataclass(frozen=True)
class BlindConfig:
    """Real-ESRGAN x4plus degradation settings (``train_realesrgan_x4plus.yml``)."""

    scale: int = 4
    crop: int | None = None   # centre crop of the (mod-cropped) HQ image, HQ pixels; None: all
    kernel_range: tuple[int, ...] = tuple(2 * v + 1 for v in range(3, 11))  # 7 .. 21
    kernel_pad: int = 21
    final_sinc_prob: float = 0.8
    first: StageConfig = field(default_factory=lambda: StageConfig(
        blur_prob=1.0, kernel_prob=(0.45, 0.25, 0.12, 0.03, 0.12, 0.03), sinc_prob=0.1,
        blur_sigma=(0.2, 3.0), betag_range=(0.5, 4.0), betap_range=(1.0, 2.0),
        resize_prob=(0.2, 0.7, 0.1), resize_range=(0.15, 1.5), gaussian_noise_prob=0.5,
        noise_range=(1.0, 30.0), poisson_scale_range=(0.05, 3.0), gray_noise_prob=0.4,
        jpeg_range=(30.0, 95.0)))
    second: StageConfig = field(default_factory=lambda: StageConfig(
        blur_prob=0.8, kernel_prob=(0.45, 0.25, 0.12, 0.03, 0.12, 0.03), sinc_prob=0.1,
        blur_sigma=(0.2, 1.5), betag_range=(0.5, 4.0), betap_range=(1.0, 2.0),
        resize_prob=(0.3, 0.4, 0.3), resize_range=(0.3, 1.2), gaussian_noise_prob=0.5,
        noise_range=(1.0, 25.0), poisson_scale_range=(0.05, 2.5), gray_noise_prob=0.4,
        jpeg_range=(30.0, 95.0)))


# --------------------------------------------------------------------------- kernels (pure)

def _grid(size: int) -> np.ndarray:
    ax = np.arange(-(size // 2), size // 2 + 1, dtype=np.float64)
    xx, yy = np.meshgrid(ax, ax)
    return np.stack([xx, yy], axis=-1)  # (size, size, 2)


def _inv_cov(sigma_x: float, sigma_y: float, theta: float) -> np.ndarray:
    d = np.diag([sigma_x ** 2, sigma_y ** 2])
    u = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    return np.linalg.inv(u @ d @ u.T)


def _mahalanobis(size: int, sigma_x: float, sigma_y: float, theta: float) -> np.ndarray:
    g = _grid(size)
    return np.einsum("hwi,ij,hwj->hw", g, _inv_cov(sigma_x, sigma_y, theta), g)


def gaussian_kernel(size: int, sigma_x: float, sigma_y: float, theta: float) -> np.ndarray:
    """Anisotropic Gaussian kernel, normalised to sum 1."""
    k = np.exp(-0.5 * _mahalanobis(size, sigma_x, sigma_y, theta))
    return k / k.sum()


def generalized_kernel(size: int, sigma_x: float, sigma_y: float, theta: float,
                       beta: float) -> np.ndarray:
    """Generalised Gaussian ``exp(-0.5 (x' S^-1 x)^beta)``, normalised."""
    k = np.exp(-0.5 * np.power(_mahalanobis(size, sigma_x, sigma_y, theta), beta))
    return k / k.sum()


def plateau_kernel(size: int, sigma_x: float, sigma_y: float, theta: float,
                   beta: float) -> np.ndarray:
    """Plateau-shaped kernel ``1 / (1 + (x' S^-1 x)^beta)``, normalised."""
    k = 1.0 / (np.power(_mahalanobis(size, sigma_x, sigma_y, theta), beta) + 1.0)
    return k / k.sum()


def sinc_kernel(size: int, cutoff: float, pad_to: int = 0) -> np.ndarray:
    """Circular 2-D low-pass (jinc) kernel of cutoff ``cutoff`` rad/pixel, normalised."""
    g = _grid(size)
    r = np.hypot(g[..., 0], g[..., 1])
    with np.errstate(divide="ignore", invalid="ignore"):
        k = cutoff * special.j1(cutoff * r) / (2 * np.pi * r)
    k[r == 0] = cutoff ** 2 / (4 * np.pi)
    k = k / k.sum()
    if pad_to > size:
        p = (pad_to - size) // 2
        k = np.pad(k, ((p, p), (p, p)))
    return k


def _pad(k: np.ndarray, size: int) -> np.ndarray:
    p = (size - k.shape[0]) // 2
    return np.pad(k, ((p, p), (p, p))) if p > 0 else k


# --------------------------------------------------------------------------- random draws

def random_kernel(stage: StageConfig, cfg: BlindConfig, r: np.random.Generator):
    """A blur kernel for ``stage`` and the parameters that made it."""
    size = int(r.choice(cfg.kernel_range))
    if r.uniform() < stage.sinc_prob:
        lo = math.pi / 3 if size < 13 else math.pi / 5
        cutoff = float(r.uniform(lo, math.pi))
        return sinc_kernel(size, cutoff, cfg.kernel_pad), {"kind": "sinc", "size": size,
                                                            "cutoff": cutoff}
    kind = KERNEL_TYPES[int(r.choice(len(KERNEL_TYPES), p=np.asarray(stage.kernel_prob)))]
    sx = float(r.uniform(*stage.blur_sigma))
    if kind.endswith("iso") and not kind.endswith("aniso"):
        sy, theta = sx, 0.0
    else:
        sy, theta = float(r.uniform(*stage.blur_sigma)), float(r.uniform(-math.pi, math.pi))
    params = {"kind": kind, "size": size, "sigma_x": sx, "sigma_y": sy, "theta": theta}
    if kind.startswith("generalized"):
        lo, hi = stage.betag_range
        beta = float(r.uniform(lo, 1.0) if r.uniform() < 0.5 else r.uniform(1.0, hi))
        k = generalized_kernel(size, sx, sy, theta, beta)
        params["beta"] = beta
    elif kind.startswith("plateau"):
        lo, hi = stage.betap_range
        beta = float(r.uniform(lo, 1.0) if r.uniform() < 0.5 else r.uniform(1.0, hi))
        k = plateau_kernel(size, sx, sy, theta, beta)
        params["beta"] = beta
    else:
        k = gaussian_kernel(size, sx, sy, theta)
    return _pad(k, cfg.kernel_pad), params


def _filter(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    return cv2.filter2D(img, -1, kernel.astype(np.float32), borderType=cv2.BORDER_REFLECT_101)


def _resize(img: np.ndarray, size_wh: tuple[int, int], mode: str) -> np.ndarray:
    return cv2.resize(img, (max(1, size_wh[0]), max(1, size_wh[1])),
                      interpolation=_RESIZE_MODES[mode])


def _add_noise(img: np.ndarray, stage: StageConfig, r: np.random.Generator) -> tuple:
    gray = bool(r.uniform() < stage.gray_noise_prob)
    if r.uniform() < stage.gaussian_noise_prob:
        sigma = float(r.uniform(*stage.noise_range))
        shape = img.shape[:2] + ((1,) if gray else (3,))
        noise = r.standard_normal(shape).astype(np.float32) * np.float32(sigma / 255.0)
        out = img + noise
        params = {"kind": "gaussian", "sigma": sigma, "gray": gray}
    else:
        scale = float(r.uniform(*stage.poisson_scale_range))
        src = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)[..., None] if gray else img
        src = np.clip(np.rint(src.astype(np.float64) * 255.0), 0, 255) / 255.0
        vals = 2 ** math.ceil(math.log2(max(len(np.unique(src)), 2)))
        noise = (r.poisson(src * vals) / vals - src) * scale
        out = img + noise.astype(np.float32)
        params = {"kind": "poisson", "scale": scale, "gray": gray}
    return np.clip(out, 0.0, 1.0), params


def _stage(img, stage: StageConfig, cfg: BlindConfig, r, target_hw, first: bool, log: dict):
    if r.uniform() < stage.blur_prob:
        k, log["kernel"] = random_kernel(stage, cfg, r)
        img = _filter(img, k)
    else:
        log["kernel"] = None
    direction = ("up", "down", "keep")[int(r.choice(3, p=np.asarray(stage.resize_prob)))]
    if direction == "up":
        s = float(r.uniform(1.0, stage.resize_range[1]))
    elif direction == "down":
        s = float(r.uniform(stage.resize_range[0], 1.0))
    else:
        s = 1.0
    mode = str(r.choice(list(_RESIZE_MODES)))
    h, w = img.shape[:2] if first else target_hw
    size = (int(w * s), int(h * s))
    img = np.clip(_resize(img, size, mode), 0.0, 1.0)
    log["resize"] = {"direction": direction, "scale": s, "mode": mode, "size_wh": list(size)}
    img, log["noise"] = _add_noise(img, stage, r)
    q = int(round(float(r.uniform(*stage.jpeg_range))))
    log["jpeg_quality"] = q
    return img, q


def degrade(hq: np.ndarray, r: np.random.Generator,
            cfg: BlindConfig | None = None) -> tuple[np.ndarray, dict]:
    """Degrade an RGB float32 [0, 1] image of size (H, W), H and W multiples of ``cfg.scale``.

    Returns the LQ image of size (H / scale, W / scale) and every parameter drawn.
    """
    cfg = cfg or BlindConfig()
    h, w = hq.shape[:2]
    if h % cfg.scale or w % cfg.scale:
        raise ValueError(f"image size {w}x{h} is not a multiple of the scale {cfg.scale}")
    out = np.ascontiguousarray(hq, dtype=np.float32)
    params: dict = {"first": {}, "second": {}}
    out, q1 = _stage(out, cfg.first, cfg, r, None, True, params["first"])
    out = ops.jpeg(out, q1)
    target_hw = (h // cfg.scale, w // cfg.scale)
    out, q2 = _stage(out, cfg.second, cfg, r, target_hw, False, params["second"])
    if r.uniform() < cfg.final_sinc_prob:
        size = int(r.choice(cfg.kernel_range))
        cutoff = float(r.uniform(math.pi / 3, math.pi))
        final_k = sinc_kernel(size, cutoff, cfg.kernel_pad)
        params["final_sinc"] = {"size": size, "cutoff": cutoff}
    else:
        final_k = None
        params["final_sinc"] = None
    mode = str(r.choice(list(_RESIZE_MODES)))
    resize_first = bool(r.uniform() < 0.5)
    params["final"] = {"order": "resize+sinc,jpeg" if resize_first else "jpeg,resize+sinc",
                       "mode": mode}

    def resize_sinc(x):
        x = _resize(x, (target_hw[1], target_hw[0]), mode)
        return _filter(x, final_k) if final_k is not None else x

    if resize_first:
        out = ops.jpeg(np.clip(resize_sinc(out), 0, 1), q2)
    else:
        out = np.clip(resize_sinc(ops.jpeg(out, q2)), 0, 1)
    return np.clip(out, 0.0, 1.0), params


# --------------------------------------------------------------------------- folders

MANIFEST = "manifest.csv"
REPORT = "report.json"
FORMAT_VERSION = 1  # part of every fingerprint: bump it when degrade() or the files change
MANIFEST_COLUMNS = ("source", "hq", "lq", "hq_width", "hq_height", "lq_width", "lq_height",
                    "scale", "base_seed", "seed", "fingerprint", "source_sha1", "params")
_INT_COLUMNS = ("hq_width", "hq_height", "lq_width", "lq_height", "scale", "base_seed", "seed")


def centre_crop(img: np.ndarray, size: int | None) -> np.ndarray:
    """The centre ``size`` x ``size`` of ``img`` (each side at most the image's); ``None`` or a
    size the image does not exceed: the image itself."""
    if size is None:
        return img
    h, w = img.shape[:2]
    ch, cw = min(size, h), min(size, w)
    y, x = (h - ch) // 2, (w - cw) // 2
    return img[y:y + ch, x:x + cw]


def mod_crop(img: np.ndarray, scale: int) -> np.ndarray:
    """Crop the bottom/right so that both sides are multiples of ``scale``."""
    h, w = img.shape[:2]
    return img[: h - h % scale, : w - w % scale]


def settings(cfg: BlindConfig, seed: int) -> dict:
    """What an LQ set depends on besides its sources: format version, base seed, every range."""
    return {"format": FORMAT_VERSION, "seed": int(seed), "config": asdict(cfg)}


def fingerprint(cfg: BlindConfig, seed: int, stem: str, source_sha1: str) -> str:
    """The settings fingerprint of one image: its outputs are reused only under an equal one.

    It covers :func:`settings` (scale, base seed and the ranges of ``cfg``), the name stem (the
    per-image seed is derived from it) and the sha1 of the source file's bytes.
    """
    blob = json.dumps({**settings(cfg, seed), "stem": stem, "source_sha1": source_sha1},
                      sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


@dataclass
class BlindResult:
    """What happened to one source image: its manifest row, or why it was refused."""

    source: str
    row: dict | None = None
    conversions: list[str] = field(default_factory=list)
    refused: str | None = None
    resumed: bool = False


def _manifest_row(record: dict, stem: str) -> dict:
    row = {c: record[c] for c in MANIFEST_COLUMNS if c != "params"}
    row["params"] = f"params/{stem}.json"
    return row


def _reusable(record_path: Path, out: Path, fp: str) -> dict | None:
    """The record at ``record_path`` when it was made under ``fp`` and its images are intact."""
    try:
        record = json.loads(record_path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("fingerprint") != fp:
        return None
    if any(c not in record for c in MANIFEST_COLUMNS if c != "params"):
        return None
    for kind in ("hq", "lq"):
        try:
            if zio.file_sha1(out / record[kind]) != record.get(f"{kind}_sha1"):
                return None
        except OSError:
            return None
    return record


def blind_image(path, out, scale: int, seed: int, cfg: BlindConfig | None = None
                ) -> BlindResult:
    """Degrade one image file into ``out/lq`` (and its mod-cropped HQ into ``out/hq``).

    Writes ``out/params/<stem>.json`` last: the manifest row, the conversions, the digests of
    both PNGs and every parameter drawn. Resumes: when that record carries this image's
    :func:`fingerprint` and both PNGs match their digests, nothing is recomputed; otherwise
    the record is removed first and the image is degraded again.
    """
    path, out = Path(path), Path(out)
    cfg = cfg or BlindConfig(scale=scale)
    if cfg.scale != scale:
        raise ValueError(f"the config's scale {cfg.scale} differs from scale {scale}")
    stem = path.stem
    result = BlindResult(source=path.name)
    try:
        source_sha1 = zio.file_sha1(path)
    except OSError as exc:
        result.refused = ("no such file" if not path.exists()
                          else f"cannot read ({exc.strerror or exc})")
        return result
    fp = fingerprint(cfg, seed, stem, source_sha1)
    record_path = out / "params" / f"{stem}.json"
    record = _reusable(record_path, out, fp)
    if record is not None:
        result.row, result.conversions = _manifest_row(record, stem), record["conversions"]
        result.resumed = True
        return result
    try:
        loaded = zio.load_image(path)
    except zio.ImageError as exc:
        result.refused = str(exc).removeprefix(f"{path}: ")
        return result
    hq = centre_crop(mod_crop(loaded.pixels, scale), cfg.crop)
    if min(hq.shape[:2]) < 4 * scale:
        result.refused = f"{loaded.pixels.shape[1]}x{loaded.pixels.shape[0]} is too small"
        return result
    record_path.unlink(missing_ok=True)  # a stale record never vouches for the new PNGs
    sample_seed = zseed.derive_seed(seed, "blind", stem)
    lq, params = degrade(zio.to_float(hq), np.random.default_rng(sample_seed), cfg)
    lq = zio.to_uint8(lq)
    hq_png, lq_png = zio.encode_png(hq), zio.encode_png(lq)
    zio.write_bytes(out / "hq" / f"{stem}.png", hq_png)
    zio.write_bytes(out / "lq" / f"{stem}.png", lq_png)
    record = {"source": path.name, "source_sha1": source_sha1,
              "hq": f"hq/{stem}.png", "lq": f"lq/{stem}.png",
              "hq_width": hq.shape[1], "hq_height": hq.shape[0],
              "lq_width": lq.shape[1], "lq_height": lq.shape[0],
              "hq_sha1": hashlib.sha1(hq_png).hexdigest(),
              "lq_sha1": hashlib.sha1(lq_png).hexdigest(),
              "scale": scale, "base_seed": int(seed), "seed": sample_seed, "fingerprint": fp,
              "conversions": loaded.conversions, "params": params}
    zio.write_text(record_path, json.dumps(record, sort_keys=True) + "\n")
    result.row, result.conversions = _manifest_row(record, stem), loaded.conversions
    return result


def _manifest_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def read_manifest(path: str | Path) -> list[dict]:
    """The rows of a blind manifest, in file order.

    ``hq``, ``lq`` and ``params`` are paths relative to the manifest's folder; the columns of
    ``_INT_COLUMNS`` (sizes, scale, seeds) are ints, the others strings. Raises
    FileNotFoundError when ``path`` is missing and ValueError, naming the file, when it lacks
    a column, has a malformed row or lists no image.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such blind manifest (run `zephir blind` first)")
    rows = []
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            header = reader.fieldnames or []
            missing = [c for c in MANIFEST_COLUMNS if c not in header]
            if missing:
                raise ValueError(f"{path}: not a blind manifest, missing column(s) "
                                 f"{', '.join(missing)}")
            for row in reader:
                where = f"{path}, line {reader.line_num}"
                if None in row or None in row.values():
                    raise ValueError(f"{where}: {len(header)} fields expected")
                for c in _INT_COLUMNS:
                    try:
                        row[c] = int(row[c])
                    except ValueError:
                        raise ValueError(f"{where}: column {c!r} holds {row[c]!r}, "
                                         "not an integer") from None
                rows.append(row)
    except (csv.Error, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not a readable CSV ({exc})") from None
    if not rows:
        raise ValueError(f"{path}: the blind manifest lists no image")
    return rows


def blind_folder(images, out, *, scale: int = 4, seed: int = 0, workers: int = 1,
                 progress: bool = True, config: BlindConfig | None = None) -> dict:
    """Degrade every image of a folder, index CSV or list; write the manifest and the report.

    ``config`` defaults to ``BlindConfig(scale=scale)``. Images whose recorded fingerprint
    matches are reused (counted in ``images_resumed``); the others are degraded again.
    The output is the same whatever ``workers`` is. Raises ValueError when no image is usable
    or two files share a name stem.
    """
    out = Path(out)
    cfg = config or BlindConfig(scale=scale)
    if cfg.scale != scale:
        raise ValueError(f"the config's scale {cfg.scale} differs from scale {scale}")
    if cfg.crop is not None and (cfg.crop < 4 * scale or cfg.crop % scale):
        raise ValueError(f"blind.crop: {cfg.crop} must be a multiple of the scale {scale} and "
                         f"at least {4 * scale}")
    files = list(datasets.by_stem(datasets.image_list(images) if isinstance(images, (str, Path))
                                  else sorted(map(Path, images))).values())
    results = pmap(blind_image, [(f, out, scale, seed, cfg) for f in files], workers=workers,
                   desc="blind", progress=progress)
    done = [r for r in results if r.refused is None]
    report = {"images_read": len(done),
              "images_converted": {r.source: r.conversions for r in done if r.conversions},
              "images_refused": {r.source: r.refused for r in results if r.refused},
              "images_resumed": sum(r.resumed for r in results),
              "scale": scale, "seed": seed, "settings": settings(cfg, seed)}
    if not done:
        reasons = "; ".join(f"{k}: {v}" for k, v in report["images_refused"].items())
        raise ValueError(f"no usable image among {len(files)} file(s): {reasons}")
    zio.write_text(out / REPORT, json.dumps(report, indent=2, sort_keys=True) + "\n")
    zio.write_text(out / MANIFEST, _manifest_csv([r.row for r in done]))
    return report
