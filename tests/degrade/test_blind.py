"""Real-ESRGAN second-order degradation: kernels, sizes, seeding, parameter statistics."""
from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from zephir import io as zio
from zephir.degrade import blind

CFG = blind.BlindConfig()


def test_gaussian_kernel_moments():
    k = blind.gaussian_kernel(41, 2.0, 2.0, 0.0)
    assert k.sum() == pytest.approx(1.0)
    ax = np.arange(-20, 21)
    assert np.sqrt((k.sum(0) * ax**2).sum()) == pytest.approx(2.0, rel=1e-3)


def test_anisotropic_kernel_rotates():
    k = blind.gaussian_kernel(41, 4.0, 1.0, math.pi / 2)  # long axis turned to vertical
    ax = np.arange(-20, 21)
    assert np.sqrt((k.sum(1) * ax**2).sum()) == pytest.approx(4.0, rel=1e-2)   # along y
    assert np.sqrt((k.sum(0) * ax**2).sum()) == pytest.approx(1.0, rel=1e-2)   # along x


def test_generalized_kernel_with_beta_one_is_gaussian():
    np.testing.assert_allclose(blind.generalized_kernel(21, 1.5, 2.5, 0.3, 1.0),
                               blind.gaussian_kernel(21, 1.5, 2.5, 0.3), atol=1e-12)


def test_plateau_kernel_is_flat_topped_and_decreasing():
    k = blind.plateau_kernel(21, 2.0, 2.0, 0.0, 2.0)
    row = k[10, 10:]
    assert k.sum() == pytest.approx(1.0)
    assert np.all(np.diff(row) <= 0)
    g = blind.gaussian_kernel(21, 2.0, 2.0, 0.0)[10, 10:]
    assert row[1] / row[0] > g[1] / g[0]  # flatter top than a Gaussian


def test_sinc_kernel_is_a_low_pass_at_its_cutoff():
    cutoff = math.pi / 3
    k = blind.sinc_kernel(21, cutoff, pad_to=21)
    assert k.sum() == pytest.approx(1.0)
    resp = np.abs(np.fft.fftshift(np.fft.fft2(k, s=(256, 256))))
    f = np.fft.fftshift(np.fft.fftfreq(256)) * 2 * math.pi
    fy, fx = np.meshgrid(f, f, indexing="ij")
    r = np.hypot(fx, fy)
    assert resp[r < 0.5 * cutoff].min() > 0.85
    assert resp[r > 1.5 * cutoff].max() < 0.15


def test_output_is_quarter_size_and_seeded(astronaut):
    hq = zio.to_float(astronaut[:256, :200])
    lq, params = blind.degrade(hq, np.random.default_rng(11))
    assert lq.shape == (64, 50, 3) and lq.dtype == np.float32
    assert lq.min() >= 0 and lq.max() <= 1
    lq2, params2 = blind.degrade(hq, np.random.default_rng(11))
    np.testing.assert_array_equal(lq, lq2)
    assert params == params2
    lq3, _ = blind.degrade(hq, np.random.default_rng(12))
    assert not np.array_equal(lq, lq3)


def test_size_must_be_a_multiple_of_the_scale(astronaut):
    with pytest.raises(ValueError, match="not a multiple of the scale 4"):
        blind.degrade(zio.to_float(astronaut[:30, :32]), np.random.default_rng(0))


def _within(v, rng_):
    return rng_[0] - 1e-9 <= v <= rng_[1] + 1e-9


def test_parameters_stay_within_the_published_ranges(astronaut):
    hq = zio.to_float(astronaut[128:192, 128:192])
    kinds, final_sinc, gauss, brightness = [], 0, 0, []
    n = 150
    for seed in range(n):
        lq, p = blind.degrade(hq, np.random.default_rng(seed))
        brightness.append(lq.mean() - hq.mean())
        for name, stage in (("first", CFG.first), ("second", CFG.second)):
            s = p[name]
            assert _within(s["jpeg_quality"], stage.jpeg_range)
            k = s["kernel"]
            if k is not None:
                assert k["size"] in CFG.kernel_range
                kinds.append(k["kind"])
                if k["kind"] == "sinc":
                    lo = math.pi / 3 if k["size"] < 13 else math.pi / 5
                    assert _within(k["cutoff"], (lo, math.pi))
                else:
                    assert _within(k["sigma_x"], stage.blur_sigma)
                    assert _within(k["sigma_y"], stage.blur_sigma)
                    if k["kind"].startswith("generalized"):
                        assert _within(k["beta"], stage.betag_range)
                    if k["kind"].startswith("plateau"):
                        assert _within(k["beta"], stage.betap_range)
            rs = s["resize"]
            lo_hi = {"up": (1.0, stage.resize_range[1]), "down": (stage.resize_range[0], 1.0),
                     "keep": (1.0, 1.0)}[rs["direction"]]
            assert _within(rs["scale"], lo_hi)
            nz = s["noise"]
            if nz["kind"] == "gaussian":
                gauss += 1
                assert _within(nz["sigma"], stage.noise_range)
            else:
                assert _within(nz["scale"], stage.poisson_scale_range)
        if p["final_sinc"] is not None:
            final_sinc += 1
            assert _within(p["final_sinc"]["cutoff"], (math.pi / 3, math.pi))
    # frequencies agree with the configured probabilities (binomial, ~4 standard deviations)
    assert abs(final_sinc / n - CFG.final_sinc_prob) < 4 * math.sqrt(0.8 * 0.2 / n)
    assert abs(gauss / (2 * n) - 0.5) < 4 * math.sqrt(0.25 / (2 * n))
    share_iso = kinds.count("iso") / len(kinds)
    assert abs(share_iso - 0.9 * 0.45) < 4 * math.sqrt(0.25 / len(kinds))
    assert {"iso", "aniso", "sinc"} <= set(kinds)
    # degradations do not shift the mean brightness much (noise is zero-mean, kernels sum to 1)
    assert abs(np.median(brightness)) < 0.02


def test_folder_run_writes_lq_hq_manifest_and_resumes(photo_dir, tmp_path):
    out = tmp_path / "blind"
    report = blind.blind_folder(photo_dir, out, scale=4, seed=3, workers=2, progress=False)
    assert report["images_read"] == 4
    with (out / "manifest.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4
    for row in rows:
        hq = zio.load_image(out / row["hq"]).pixels
        lq = zio.load_image(out / row["lq"]).pixels
        assert hq.shape[0] == 4 * lq.shape[0] and hq.shape[1] == 4 * lq.shape[1]
        assert "first" in json.loads(row["params"])
    before = {p: p.read_bytes() for p in (out / "lq").iterdir()}
    (out / "manifest.csv").unlink()
    blind.blind_folder(photo_dir, out, scale=4, seed=3, workers=1, progress=False)
    assert {p: p.read_bytes() for p in (out / "lq").iterdir()} == before
    # a fresh run in one process gives the same bytes as the two-process run
    blind.blind_folder(photo_dir, tmp_path / "again", scale=4, seed=3, progress=False)
    assert {p.name: p.read_bytes() for p in (tmp_path / "again" / "lq").iterdir()} == \
        {p.name: v for p, v in before.items()}
