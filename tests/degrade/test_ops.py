"""The four operators against independent references (moments, PIL's JPEG, PSNR trends)."""
from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from zephir import io as zio
from zephir.degrade import ops, transfer


def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(1.0 / mse)


@pytest.mark.parametrize("sigma", [0.8, 1.0, 2.0, 3.3, 4.0])
def test_blur_of_impulse_has_std_sigma(sigma):
    img = np.zeros((81, 81, 3), np.float32)
    img[40, 40] = 1.0
    out = ops.gaussian_blur(img, sigma)[..., 0].astype(np.float64)
    assert out.sum() == pytest.approx(1.0, rel=1e-4)
    y, x = np.mgrid[:81, :81] - 40
    measured = np.sqrt((out * x**2).sum() / out.sum())
    measured_y = np.sqrt((out * y**2).sum() / out.sum())
    assert measured == pytest.approx(sigma, rel=0.02)
    assert measured_y == pytest.approx(sigma, rel=0.02)


@pytest.mark.parametrize("noise_op", [ops.gaussian_noise, transfer.gaussian_noise],
                         ids=["ops", "transfer"])
@pytest.mark.parametrize("sigma", [1.0, 10.0, 25.0, 40.0])
def test_noise_std_is_sigma_over_255(sigma, noise_op):
    """Both implementations (the synthesiser's and the transfer evaluation's)."""
    img = np.full((512, 512, 3), 0.5, np.float32)
    out = noise_op(img, sigma, np.random.default_rng(1))
    noise = out.astype(np.float64) - 0.5
    assert noise.std() == pytest.approx(sigma / 255, rel=0.03)
    assert abs(noise.mean()) < 0.1 * sigma / 255
    # channels are independent
    c = np.corrcoef(noise[..., 0].ravel(), noise[..., 1].ravel())[0, 1]
    assert abs(c) < 0.02
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_noise_depends_only_on_the_generator(astronaut):
    img = zio.to_float(astronaut[:64, :64])
    a = ops.gaussian_noise(img, 10, np.random.default_rng(5))
    b = ops.gaussian_noise(img, 10, np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("quality", [30, 55, 80, 95])
def test_jpeg_equals_pil_encoding(astronaut, quality):
    ours = zio.to_uint8(ops.jpeg(zio.to_float(astronaut), quality))
    buf = io.BytesIO()
    Image.fromarray(astronaut).save(buf, "JPEG", quality=quality, subsampling=2)
    ref = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    np.testing.assert_array_equal(ours, ref)


def test_jpeg_size_and_psnr_fall_with_quality(astronaut):
    sizes, psnrs = [], []
    for q in (95, 80, 60, 45, 30):
        ok, buf = cv2.imencode(".jpg", astronaut[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, q])
        sizes.append(len(buf))
        psnrs.append(psnr(ops.jpeg(zio.to_float(astronaut), q), zio.to_float(astronaut)))
    assert sizes == sorted(sizes, reverse=True)
    assert psnrs == sorted(psnrs, reverse=True)


def test_downsample_keeps_size_and_psnr_falls_with_scale(astronaut):
    img = zio.to_float(astronaut)
    prev = np.inf
    for s in (1.1, 2.0, 3.5, 5.0, 7.0):
        out = ops.downsample(img, s)
        assert out.shape == img.shape and out.dtype == np.float32
        p = psnr(out, img)
        assert p < prev
        prev = p


def test_downsample_matches_two_bicubic_resizes(astronaut):
    img = zio.to_float(astronaut)
    small = cv2.resize(img, (round(512 / 3.0), round(512 / 3.0)), interpolation=cv2.INTER_CUBIC)
    ref = np.clip(cv2.resize(small, (512, 512), interpolation=cv2.INTER_CUBIC), 0, 1)
    np.testing.assert_allclose(ops.downsample(img, 3.0), ref, atol=1e-6)


def test_composite_order_is_blur_downsample_noise_jpeg(astronaut):
    img = zio.to_float(astronaut[:96, :96])
    params = {"jpeg": 50, "noise": 12.0, "blur": 1.5, "downsample": 2.5}
    got = ops.apply(img, params, np.random.default_rng(3))
    r = np.random.default_rng(3)
    blurred = ops.gaussian_blur(img, 1.5)
    ref = ops.jpeg(ops.gaussian_noise(ops.downsample(blurred, 2.5), 12.0, r), 50)
    np.testing.assert_array_equal(got, ref)


def test_unknown_type_is_refused(astronaut):
    with pytest.raises(ValueError, match="unknown degradation type 'haze'"):
        ops.apply(zio.to_float(astronaut[:8, :8]), {"haze": 1.0}, np.random.default_rng(0))


def test_operators_refuse_non_rgb():
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        ops.gaussian_blur(np.zeros((8, 8), np.float32), 1.0)
