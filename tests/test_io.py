"""The loader: documented conversions and clear errors for bad files; atomic writes."""
from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from zephir import io as zio


def _save(path, arr, **kw):
    Image.fromarray(arr).save(path, **kw)
    return path


def test_rgb_png_roundtrip_is_lossless(tmp_path, astronaut):
    zio.write_png(tmp_path / "a.png", astronaut)
    loaded = zio.load_image(tmp_path / "a.png")
    assert loaded.conversions == []
    np.testing.assert_array_equal(loaded.pixels, astronaut)


def test_grayscale_is_replicated(tmp_path):
    gray = np.arange(64 * 48, dtype=np.uint32).reshape(48, 64).astype(np.uint8)
    loaded = zio.load_image(_save(tmp_path / "g.png", gray))
    assert loaded.pixels.shape == (48, 64, 3)
    for c in range(3):
        np.testing.assert_array_equal(loaded.pixels[..., c], gray)
    assert "grayscale->RGB" in loaded.conversions


def test_rgba_is_composited_over_white(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 200          # red
    rgba[0, 0, 3] = 255         # opaque
    rgba[0, 1, 3] = 0           # transparent -> white
    rgba[0, 2, 3] = 128         # half -> mix
    loaded = zio.load_image(_save(tmp_path / "a.png", rgba))
    px = loaded.pixels
    assert tuple(px[0, 0]) == (200, 0, 0)
    assert tuple(px[0, 1]) == (255, 255, 255)
    a = 128 / 255
    assert tuple(px[0, 2]) == tuple(int(round(v * a + 255 * (1 - a))) for v in (200, 0, 0))
    assert "alpha composited over white" in loaded.conversions


def test_palette_png_is_expanded(tmp_path, astronaut):
    pal = Image.fromarray(astronaut[:64, :64]).quantize(colors=16)
    pal.save(tmp_path / "p.png")
    loaded = zio.load_image(tmp_path / "p.png")
    np.testing.assert_array_equal(loaded.pixels, np.asarray(pal.convert("RGB")))
    assert "palette->RGB" in loaded.conversions


@pytest.mark.parametrize("channels", [1, 3])
def test_16bit_png_is_reduced_to_8bit(tmp_path, channels):
    rng = np.random.default_rng(0)
    deep = rng.integers(0, 65536, size=(16, 20, channels) if channels == 3 else (16, 20),
                        dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "d.png"), deep)  # cv2 writes true 16-bit PNGs
    loaded = zio.load_image(tmp_path / "d.png")
    expected = np.clip(np.rint(deep / 257.0), 0, 255).astype(np.uint8)
    expected = expected[..., ::-1] if channels == 3 else np.repeat(expected[..., None], 3, 2)
    np.testing.assert_array_equal(loaded.pixels, expected)
    assert "16-bit->8-bit" in loaded.conversions


def test_truncated_png_names_the_file(tmp_path, astronaut):
    data = zio.encode_png(astronaut)
    bad = tmp_path / "cut.png"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(zio.ImageError, match=r"cut\.png: corrupt or truncated"):
        zio.load_image(bad)


def test_truncated_jpeg_is_refused_not_padded(tmp_path, astronaut):
    buf = io.BytesIO()
    Image.fromarray(astronaut).save(buf, "JPEG", quality=90)
    bad = tmp_path / "cut.jpg"
    bad.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(zio.ImageError, match=r"cut\.jpg: corrupt or truncated"):
        zio.load_image(bad)


def test_not_an_image(tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("hello")
    with pytest.raises(zio.ImageError, match=r"notes\.png: not an image"):
        zio.load_image(bad)


def test_missing_file(tmp_path):
    with pytest.raises(zio.ImageError, match="no such file"):
        zio.load_image(tmp_path / "nope.png")


def test_folder_without_images(tmp_path):
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(zio.ImageError, match="no image files"):
        zio.list_images(tmp_path)


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    zio.write_text(target, "old")
    with pytest.raises(RuntimeError):
        with zio.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077])
def test_written_files_get_the_umask_mode(tmp_path, umask):
    """Atomic writes give the mode of a plain open() (0666 less the umask), not mkstemp's 0600."""
    import os
    import stat

    old = os.umask(umask)
    try:
        zio.write_text(tmp_path / "a.txt", "x")
        zio.write_png(tmp_path / "b.png", np.zeros((4, 4, 3), np.uint8))
        with open(tmp_path / "plain.txt", "w") as fh:
            fh.write("x")
    finally:
        os.umask(old)
    plain = stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode)
    assert plain == 0o666 & ~umask
    for name in ("a.txt", "b.png"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == plain, name


def test_read_png_gives_load_image_pixels_of_a_written_png(tmp_path, astronaut):
    path = tmp_path / "sample.png"
    crop = np.ascontiguousarray(astronaut[100:228, 50:178])
    zio.write_png(path, crop)
    assert np.array_equal(zio.read_png(path), crop)
    assert np.array_equal(zio.read_png(path), zio.load_image(path).pixels)
    with pytest.raises(zio.ImageError, match="missing.png: missing"):
        zio.read_png(tmp_path / "missing.png")
