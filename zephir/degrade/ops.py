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
#: :func:`downsample`'s shrink that low-passes first, as Pillow, scikit-image and most photo
#: software do (cv2's bilinear and bicubic shrinks alias): a Gaussian of sigma (scale - 1) / 2,
#: scikit-image's ``resize(anti_aliasing=True)`` default, then cv2's bicubic. (Randomised sets
#: are fingerprinted by the names they draw from, not by this formula: change it, and bump
#: ``synth.FORMAT_VERSION``.)
ANTIALIAS = "antialias"
#: Discretisations of the Gaussian blur kernel (:func:`gaussian_blur`).
BLUR_SAMPLINGS: tuple[str, ...] = ("sampled", "integrated")
#: JPEG chroma subsampling (:func:`jpeg`) -> libjpeg's sampling factors, through cv2.
JPEG_SUBSAMPLINGS = {"4:4:4": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444,
                     "4:2:2": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422,
                     "4:2:0": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420}


def _check(img: np.ndarray) -> np.ndarray:
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) image, got shape {img.shape}")
    return np.ascontiguousarray(img, dtype=np.float32)


def resize(img: np.ndarray, size: tuple[int, int], mode: str) -> np.ndarray:
    """cv2's resize to ``size`` = (width, height) with the resampling ``mode`` (a key of
    ``_INTERP``); not clipped (bicubic and lanczos overshoot)."""
    return cv2.resize(img, size, interpolation=_INTERP[mode])


def _gaussian_kernel(sigma: float, radius: int, sampling: str) -> np.ndarray:
    """The normalised 1-D kernel of ``2 radius + 1`` taps, the sampled or the integrated Gaussian
    kernel (Lindeberg 2024, "Discrete approximations of Gaussian smoothing and Gaussian
    derivatives", J. Math. Imaging Vis.):

        sampled:     k(x) ~ exp(-x^2 / (2 sigma^2))
        integrated:  k(x) ~ Phi((x + 1/2) / sigma) - Phi((x - 1/2) / sigma)

    the Gaussian's value at the pixel centre (cv2, scipy.ndimage, torchvision), or its mass over
    the pixel (a sensor integrates the PSF over its area).
    """
    if sampling == "sampled":
        return cv2.getGaussianKernel(2 * radius + 1, sigma, cv2.CV_64F).astype(np.float32)
    if sampling != "integrated":
        raise ValueError(f"blur sampling {sampling!r} is not one of {', '.join(BLUR_SAMPLINGS)}")
    edges = (np.arange(-radius, radius + 2) - 0.5) / (sigma * math.sqrt(2.0))
    kernel = np.diff([math.erf(e) for e in edges])
    return (kernel / kernel.sum()).astype(np.float32)[:, None]


def gaussian_blur(img: np.ndarray, sigma: float, *, support: float = 4.0,
                  sampling: str = "sampled") -> np.ndarray:
    """Isotropic Gaussian blur of standard deviation ``sigma`` pixels.

    The kernel is truncated at ``support`` sigma (radius ``ceil(support sigma)``) and
    discretised by ``sampling`` (see :func:`_gaussian_kernel`). By default the sampled kernel
    at 4 sigma, so that the blurred impulse keeps a standard deviation within 0.1 % of
    ``sigma``; borders reflect (101).
    """
    img = _check(img)
    if sigma <= 0:
        return img.copy()
    radius = max(1, math.ceil(support * sigma))
    kernel = _gaussian_kernel(sigma, radius, sampling)
    out = cv2.sepFilter2D(img, -1, kernel, kernel, borderType=cv2.BORDER_REFLECT_101)
    return np.clip(out, 0.0, 1.0)


def gaussian_noise(img: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Additive white Gaussian noise, ``sigma`` on the 0..255 scale, independent per channel."""
    img = _check(img)
    noise = rng.standard_normal(img.shape, dtype=np.float32) * np.float32(sigma / 255.0)
    return np.clip(img + noise, 0.0, 1.0)


def jpeg_settings(quality: float, subsampling: str, allowed: Mapping = JPEG_SUBSAMPLINGS) -> int:
    """The integer JPEG quality of ``quality`` after checking it (1..100) and ``subsampling``
    (a key of ``allowed``: this module's ``JPEG_SUBSAMPLINGS``, or another encoder's)."""
    q = int(round(quality))
    if not 1 <= q <= 100:
        raise ValueError(f"jpeg quality {quality!r} outside 1..100")
    if subsampling not in allowed:
        raise ValueError(f"jpeg subsampling {subsampling!r} is not one of {', '.join(allowed)}")
    return q


def jpeg(img: np.ndarray, quality: float, *, subsampling: str = "4:2:0",
         phase: tuple[int, int] = (0, 0)) -> np.ndarray:
    """JPEG compression at integer ``quality`` (cv2/libjpeg), decoded back.

    ``subsampling`` is the chroma subsampling (a key of ``JPEG_SUBSAMPLINGS``): 4:2:0 is
    libjpeg's default, 4:2:2 halves chroma horizontally only (what many cameras write), 4:4:4
    keeps full-resolution chroma. ``phase`` = (dy, dx) puts the codec's block grid that many
    pixels above and left of the image's corner, as for a crop of a larger JPEG: the image is
    padded there by reflection (``dcb|abcd``) before encoding and cropped back after decoding.
    """
    img = _check(img)
    q = jpeg_settings(quality, subsampling)
    dy, dx = phase
    if dy < 0 or dx < 0:
        raise ValueError(f"jpeg phase {phase!r} must be >= 0")
    u8 = np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)
    if dy or dx:
        u8 = np.pad(u8, ((dy, 0), (dx, 0), (0, 0)), mode="reflect")
    ok, buf = cv2.imencode(".jpg", u8[..., ::-1], [
        cv2.IMWRITE_JPEG_QUALITY, q,
        cv2.IMWRITE_JPEG_SAMPLING_FACTOR, JPEG_SUBSAMPLINGS[subsampling]])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    dec = cv2.imdecode(buf, cv2.IMREAD_COLOR)[dy:, dx:, ::-1]
    return dec.astype(np.float32) / 255.0


def downsample(img: np.ndarray, scale: float, down: str = "bicubic", up: str = "bicubic"
               ) -> np.ndarray:
    """Shrink by ``scale`` with resampling ``down`` (a key of ``_INTERP`` or :data:`ANTIALIAS`)
    and resize back to the input size with ``up`` (a key of ``_INTERP``); bicubic both ways by
    default.

    The output has the input's size, so that the level shows through content only.
    """
    img = _check(img)
    if scale < 1:
        raise ValueError(f"downsample scale {scale!r} must be >= 1")
    if down not in (*_INTERP, ANTIALIAS) or up not in _INTERP:
        raise ValueError(f"downsample resampling {down!r} down, {up!r} up: down is one of "
                         f"{', '.join((*_INTERP, ANTIALIAS))}, up one of {', '.join(_INTERP)}")
    if down == ANTIALIAS:
        img, down = gaussian_blur(img, (scale - 1) / 2), "bicubic"
    h, w = img.shape[:2]
    small = resize(img, (max(1, round(w / scale)), max(1, round(h / scale))), down)
    return np.clip(resize(small, (w, h), up), 0.0, 1.0)


def apply(img: np.ndarray, params: Mapping[str, float], rng: np.random.Generator,
          *, options: Mapping[str, Mapping[str, object]] | None = None) -> np.ndarray:
    """Composite degradation ``{type: native value}`` in the order blur, downsample, noise, jpeg.

    Eq. 16 of the paper (the Real-ESRGAN order). Types absent from ``params`` are skipped.
    ``options`` gives a type's operator its keyword arguments beyond the native value (how it
    is implemented, which the label does not fix), e.g. ``{"downsample": {"down": "area"}}``.
    """
    for kind in params:
        get(kind)  # unknown names fail here, before any work
    options = options or {}
    out = _check(img)
    for kind in TYPES:
        if kind not in params:
            continue
        v, kw = params[kind], options.get(kind, {})
        if kind == "blur":
            out = gaussian_blur(out, v, **kw)
        elif kind == "downsample":
            out = downsample(out, v, **kw)
        elif kind == "noise":
            out = gaussian_noise(out, v, rng, **kw)
        else:
            out = jpeg(out, v, **kw)
    return out
