"""The four degradation operators (paper, section 4.1 and eq. 16), one pure function each.

Images are float32 RGB arrays in [0, 1] of shape (H, W, 3); every operator returns the same
shape and dtype, clipped to [0, 1]. Parameters are native (see :mod:`zephir.degrade.levels`).
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import cv2
import numpy as np

from zephir.degrade.levels import TYPES, get

_INTERP = {"bicubic": cv2.INTER_CUBIC, "bilinear": cv2.INTER_LINEAR, "area": cv2.INTER_AREA,
           "nearest": cv2.INTER_NEAREST, "lanczos": cv2.INTER_LANCZOS4}


def _check(img: np.ndarray) -> np.ndarray:
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) image, got shape {img.shape}")
    return np.ascontiguousarray(img, dtype=np.float32)


def gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Isotropic Gaussian blur of standard deviation ``sigma`` pixels.

    The sampled kernel is truncated at 4 sigma (radius ``ceil(4 sigma)``), so that the blurred
    impulse keeps a standard deviation within 0.1 % of ``sigma``; borders reflect (101).
    """
    img = _check(img)
    if sigma <= 0:
        return img.copy()
    radius = max(1, math.ceil(4.0 * sigma))
    kernel = cv2.getGaussianKernel(2 * radius + 1, sigma, cv2.CV_64F).astype(np.float32)
    out = cv2.sepFilter2D(img, -1, kernel, kernel, borderType=cv2.BORDER_REFLECT_101)
    return np.clip(out, 0.0, 1.0)


def gaussian_noise(img: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Additive white Gaussian noise, ``sigma`` on the 0..255 scale, independent per channel."""
    img = _check(img)
    noise = rng.standard_normal(img.shape, dtype=np.float32) * np.float32(sigma / 255.0)
    return np.clip(img + noise, 0.0, 1.0)


def jpeg(img: np.ndarray, quality: float) -> np.ndarray:
    """JPEG compression at integer ``quality`` (cv2/libjpeg, 4:2:0), decoded back."""
    img = _check(img)
    q = int(round(quality))
    if not 1 <= q <= 100:
        raise ValueError(f"jpeg quality {quality!r} outside 1..100")
    u8 = np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", u8[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, q])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    dec = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]
    return dec.astype(np.float32) / 255.0


def downsample(img: np.ndarray, scale: float, interpolation: str = "bicubic") -> np.ndarray:
    """Shrink by ``scale`` and resize back to the input size (bicubic both ways by default).

    The output has the input's size, so that the level shows through content only.
    """
    img = _check(img)
    if scale < 1:
        raise ValueError(f"downsample scale {scale!r} must be >= 1")
    h, w = img.shape[:2]
    mode = _INTERP[interpolation]
    small = cv2.resize(img, (max(1, round(w / scale)), max(1, round(h / scale))),
                       interpolation=mode)
    return np.clip(cv2.resize(small, (w, h), interpolation=mode), 0.0, 1.0)


def apply(img: np.ndarray, params: Mapping[str, float], rng: np.random.Generator,
          *, interpolation: str = "bicubic") -> np.ndarray:
    """Composite degradation ``{type: native value}`` in the order blur, downsample, noise, jpeg.

    Eq. 16 of the paper (the Real-ESRGAN order). Types absent from ``params`` are skipped.
    """
    for kind in params:
        get(kind)  # unknown names fail here, before any work
    out = _check(img)
    for kind in TYPES:
        if kind not in params:
            continue
        v = params[kind]
        if kind == "blur":
            out = gaussian_blur(out, v)
        elif kind == "downsample":
            out = downsample(out, v, interpolation)
        elif kind == "noise":
            out = gaussian_noise(out, v, rng)
        else:
            out = jpeg(out, v)
    return out
