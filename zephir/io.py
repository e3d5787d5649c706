"""The one image loader and writer of zephir.

Every image that enters the pipeline goes through :func:`load_image`, which returns an RGB
``uint8`` array of shape ``(H, W, 3)`` and says what it converted. Documented conversions:

========================  ==============================================================
input                     what zephir does
========================  ==============================================================
grayscale (L, 1, I, F)    replicated to three channels
16-bit (I;16, 48-bit RGB)  reduced to 8 bits (value / 257, rounded)
RGBA / LA                 composited over a white background, alpha dropped
palette (P, PA)           expanded to RGB (through RGBA when the palette has transparency)
CMYK, YCbCr, LAB, HSV     converted to RGB by Pillow
EXIF orientation          applied, so that the pixels stand as a viewer shows them
========================  ==============================================================

Corrupt or truncated files, and files that are not images, raise :class:`ImageError` naming
the file and the reason. Writers are atomic: a file is either absent or complete.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


class ImageError(ValueError):
    """An input image that cannot be used; the message names the file and why."""


@dataclass
class LoadedImage:
    """Pixels (RGB uint8, H x W x 3) and the list of conversions applied on load."""

    path: Path
    pixels: np.ndarray
    conversions: list[str] = field(default_factory=list)


def _to_8bit(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.uint16 or (arr.dtype.kind in "iu" and arr.max(initial=0) > 255):
        return np.clip(np.rint(arr.astype(np.float64) / 257.0), 0, 255).astype(np.uint8)
    if arr.dtype.kind == "f":
        scale = 255.0 if arr.max(initial=0) <= 1.0 else 1.0
        return np.clip(np.rint(arr * scale), 0, 255).astype(np.uint8)
    return np.clip(arr, 0, 255).astype(np.uint8)


def _composite_white(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    a = alpha.astype(np.float64)[..., None] / 255.0
    out = rgb.astype(np.float64) * a + 255.0 * (1.0 - a)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _pil_to_rgb(im: Image.Image, conversions: list[str]) -> np.ndarray:
    mode = im.mode
    if mode == "P" or mode == "PA":
        has_alpha = mode == "PA" or "transparency" in im.info
        im = im.convert("RGBA" if has_alpha else "RGB")
        conversions.append("palette->RGB")
        mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(im)
        bits16 = mode.startswith("I;16") or (mode == "I" and arr.max(initial=0) > 255)
        gray = _to_8bit(arr.astype(np.uint16) if bits16 else arr)
        conversions.append("16-bit->8-bit" if bits16 else f"{mode}->8-bit")
        conversions.append("grayscale->RGB")
        return np.repeat(gray[..., None], 3, axis=2)
    if mode in ("L", "1"):
        conversions.append("grayscale->RGB")
        return np.repeat(np.asarray(im.convert("L"))[..., None], 3, axis=2)
    if mode == "LA":
        arr = np.asarray(im)
        conversions.append("alpha composited over white")
        conversions.append("grayscale->RGB")
        gray = _composite_white(arr[..., :1], arr[..., 1])
        return np.repeat(gray, 3, axis=2)
    if mode == "RGBA":
        arr = np.asarray(im)
        if arr[..., 3].min() < 255:
            conversions.append("alpha composited over white")
        else:
            conversions.append("opaque alpha dropped")
        return _composite_white(arr[..., :3], arr[..., 3])
    if mode == "RGB":
        return np.asarray(im).copy()
    conversions.append(f"{mode}->RGB")
    return np.asarray(im.convert("RGB")).copy()


def _png_bit_depth(path: Path) -> int:
    """The bit depth in a PNG's IHDR chunk (byte 24 of the file), 0 when unreadable."""
    with open(path, "rb") as fh:
        head = fh.read(25)
    return head[24] if len(head) == 25 and head[12:16] == b"IHDR" else 0


def _load_16bit_png(path: Path) -> np.ndarray | None:
    """Pillow reads 48/64-bit PNGs as 8-bit by truncation; cv2 keeps all 16 bits."""
    if _png_bit_depth(path) != 16:
        return None  # spares a second decode of every 8-bit PNG
    import cv2  # here: reading a config or a model folder needs no OpenCV

    arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if arr is None or arr.dtype != np.uint16 or arr.ndim != 3:
        return None
    if arr.shape[2] == 4:
        rgb = _to_8bit(arr[..., 2::-1])
        alpha = _to_8bit(arr[..., 3])
        return _composite_white(rgb, alpha)
    return _to_8bit(arr[..., ::-1])


def load_image(path: str | os.PathLike) -> LoadedImage:
    """Load any supported image as RGB uint8 (H, W, 3); see the module doc for conversions."""
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: no such file")
    conversions: list[str] = []
    try:
        with Image.open(path) as im:
            im.load()  # decodes everything: truncated data raises here
            transposed = ImageOps.exif_transpose(im)
            if transposed is not im:
                orientation = im.getexif().get(0x0112, 1)
                if orientation not in (None, 1):
                    conversions.append(f"EXIF orientation {orientation} applied")
            im = transposed
            pixels = _pil_to_rgb(im, conversions)
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image file zephir can read") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{path}: corrupt or truncated image ({exc})") from None
    if path.suffix.lower() == ".png":
        deep = _load_16bit_png(path)
        if deep is not None and deep.shape == pixels.shape:
            pixels = deep
            if "16-bit->8-bit" not in conversions:
                conversions.append("16-bit->8-bit")
    if pixels.ndim != 3 or pixels.shape[2] != 3 or min(pixels.shape[:2]) < 1:
        raise ImageError(f"{path}: unexpected pixel layout {pixels.shape}")
    return LoadedImage(path=path, pixels=np.ascontiguousarray(pixels, dtype=np.uint8),
                       conversions=conversions)


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files directly inside ``folder`` (by suffix), sorted by name.

    Raises ImageError when the folder does not exist or holds no image file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageError(f"{folder}: not a directory")
    files = sorted(p for p in folder.iterdir()
                   if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ImageError(f"{folder}: no image files (looked for {', '.join(IMAGE_SUFFIXES)})")
    return files


def _umask() -> int:
    """The process's umask (reading it means setting it: set it straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically.

    The file gets the mode a plain ``open(path, "w")`` would give (0666 less the umask), not
    ``mkstemp``'s 0600, so that colleagues on a shared file system can read the results.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def file_sha1(path: str | os.PathLike) -> str:
    """The sha1 of a file's bytes (hex)."""
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    write_bytes(path, text.encode("utf-8"))


def encode_png(rgb: np.ndarray) -> bytes:
    """Lossless PNG bytes of an RGB uint8 array (deterministic for equal pixels)."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected RGB uint8 (H, W, 3), got {rgb.dtype} {rgb.shape}")
    import cv2

    ok, buf = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]),
                           [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.tobytes()


def write_png(path: str | os.PathLike, rgb: np.ndarray) -> None:
    """Write an RGB uint8 image losslessly as PNG, atomically."""
    write_bytes(path, encode_png(rgb))


def read_png(path: str | os.PathLike) -> np.ndarray:
    """RGB uint8 (H, W, 3) of a PNG that :func:`write_png` wrote (a synthesised sample).

    The training loader's read: such a file has nothing for :func:`load_image` to convert
    (no EXIF, no alpha, no 16 bits), so one OpenCV decode does, at about 2x its speed.
    """
    import cv2

    bgr = cv2.imread(os.fspath(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ImageError(f"{path}: missing or not a PNG zephir wrote")
    return bgr[..., ::-1]


def to_float(rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB -> float32 in [0, 1]."""
    return rgb.astype(np.float32) / 255.0


def to_uint8(img: np.ndarray) -> np.ndarray:
    """float image in [0, 1] -> uint8, rounded and clipped."""
    return np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)


def describe_reads(report: dict) -> list[str]:
    """Lines saying how many input images a run read, converted and refused, and why."""
    lines = [f"read {report['images_read']} image(s), converted "
             f"{len(report['images_converted'])}, refused {len(report['images_refused'])}"]
    lines += [f"  converted {name}: {', '.join(conv)}"
              for name, conv in report["images_converted"].items()]
    lines += [f"  refused {name}: {why}" for name, why in report["images_refused"].items()]
    return lines
