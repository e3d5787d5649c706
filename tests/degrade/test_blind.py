"""Real-ESRGAN second-order degradation: kernels, sizes, seeding, parameter statistics."""
from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest

from zephir import io as zio
from zephir import seed as zseed
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


def _files(out):
    """Each output file's (inode, mtime): both change when a file is written again."""
    return {p.relative_to(out).as_posix(): (p.stat().st_ino, p.stat().st_mtime_ns)
            for sub in ("lq", "hq", "params") for p in (out / sub).iterdir()}


def _lq_bytes(out):
    return {p.name: p.read_bytes() for p in (out / "lq").iterdir()}


def test_folder_run_writes_lq_hq_manifest_and_resumes(photo_dir, tmp_path):
    out = tmp_path / "blind"
    report = blind.blind_folder(photo_dir, out, scale=4, seed=3, workers=2, progress=False)
    assert report["images_read"] == 4 and report["images_resumed"] == 0
    rows = blind.read_manifest(out / blind.MANIFEST)
    assert [r["source"] for r in rows] == sorted(p.name for p in photo_dir.iterdir())
    for row in rows:
        hq = zio.load_image(out / row["hq"]).pixels
        lq = zio.load_image(out / row["lq"]).pixels
        assert hq.shape == (row["hq_height"], row["hq_width"], 3)
        assert lq.shape == (row["lq_height"], row["lq_width"], 3)
        assert hq.shape[0] == 4 * lq.shape[0] and hq.shape[1] == 4 * lq.shape[1]
        assert row["scale"] == 4 and row["base_seed"] == 3
        record = json.loads((out / row["params"]).read_text())
        assert "first" in record["params"] and record["fingerprint"] == row["fingerprint"]
        assert record["source_sha1"] == row["source_sha1"] == zio.file_sha1(
            photo_dir / row["source"])
    before, files = _lq_bytes(out), _files(out)
    (out / blind.MANIFEST).unlink()
    report = blind.blind_folder(photo_dir, out, scale=4, seed=3, workers=1, progress=False)
    assert report["images_resumed"] == 4
    assert _files(out) == files  # nothing written again
    assert blind.read_manifest(out / blind.MANIFEST) == rows
    # a fresh run in one process gives the same bytes as the two-process run
    blind.blind_folder(photo_dir, tmp_path / "again", scale=4, seed=3, progress=False)
    assert _lq_bytes(tmp_path / "again") == before
    assert (tmp_path / "again" / blind.MANIFEST).read_bytes() == \
        (out / blind.MANIFEST).read_bytes()


def test_written_lq_is_degrade_of_the_hq_under_the_recorded_seed(photo_dir, tmp_path):
    """The folder stage adds nothing to degrade(): same seed and config, same pixels."""
    out = tmp_path / "blind"
    blind.blind_folder(photo_dir, out, scale=4, seed=5, progress=False)
    for row in blind.read_manifest(out / blind.MANIFEST):
        stem = row["source"].rsplit(".", 1)[0]
        assert row["seed"] == zseed.derive_seed(5, "blind", stem)
        hq = zio.load_image(out / row["hq"]).pixels
        src = zio.load_image(photo_dir / row["source"]).pixels
        np.testing.assert_array_equal(hq, blind.mod_crop(src, 4))
        lq, params = blind.degrade(zio.to_float(hq), np.random.default_rng(row["seed"]),
                                   blind.BlindConfig(scale=4))
        np.testing.assert_array_equal(zio.load_image(out / row["lq"]).pixels, zio.to_uint8(lq))
        record = json.loads((out / row["params"]).read_text())
        assert record["params"] == json.loads(json.dumps(params))


def test_a_new_seed_in_the_same_folder_redoes_every_image(photo_dir, tmp_path):
    out = tmp_path / "blind"
    blind.blind_folder(photo_dir, out, scale=4, seed=3, progress=False)
    first, manifest = _lq_bytes(out), (out / blind.MANIFEST).read_bytes()
    report = blind.blind_folder(photo_dir, out, scale=4, seed=4, progress=False)
    assert report["images_resumed"] == 0 and report["seed"] == 4
    second = _lq_bytes(out)
    assert second.keys() == first.keys()
    assert all(second[k] != first[k] for k in first)
    assert (out / blind.MANIFEST).read_bytes() != manifest
    rows = blind.read_manifest(out / blind.MANIFEST)
    assert {r["base_seed"] for r in rows} == {4}
    for row in rows:
        record = json.loads((out / row["params"]).read_text())
        assert record["base_seed"] == 4 and record["seed"] == row["seed"]
    # back to the first seed: the first run's bytes again
    assert blind.blind_folder(photo_dir, out, scale=4, seed=3, progress=False)[
        "images_resumed"] == 0
    assert _lq_bytes(out) == first and (out / blind.MANIFEST).read_bytes() == manifest


def test_a_new_scale_or_config_redoes_every_image(photo_dir, tmp_path):
    out = tmp_path / "blind"
    blind.blind_folder(photo_dir, out, scale=4, seed=3, progress=False)
    report = blind.blind_folder(photo_dir, out, scale=2, seed=3, progress=False)
    assert report["images_resumed"] == 0
    for row in blind.read_manifest(out / blind.MANIFEST):
        assert row["scale"] == 2 and row["hq_width"] == 2 * row["lq_width"]
        assert zio.load_image(out / row["lq"]).pixels.shape[1] == row["lq_width"]
    fingerprints = {r["fingerprint"] for r in blind.read_manifest(out / blind.MANIFEST)}
    cfg = blind.BlindConfig(scale=2, final_sinc_prob=0.5)
    report = blind.blind_folder(photo_dir, out, scale=2, seed=3, config=cfg, progress=False)
    assert report["images_resumed"] == 0
    assert report["settings"]["config"]["final_sinc_prob"] == 0.5
    assert not fingerprints & {r["fingerprint"] for r in blind.read_manifest(out / blind.MANIFEST)}
    with pytest.raises(ValueError, match="scale 2 differs from scale 4"):
        blind.blind_folder(photo_dir, out, scale=4, seed=3, config=cfg, progress=False)


def test_a_changed_source_or_damaged_output_is_redone_alone(photo_dir, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(photo_dir, src)
    out = tmp_path / "blind"
    blind.blind_folder(src, out, scale=4, seed=3, progress=False)
    first, files = _lq_bytes(out), _files(out)
    img = zio.load_image(src / "coffee.png").pixels
    zio.write_png(src / "coffee.png", np.ascontiguousarray(img[:, ::-1]))  # mirrored
    report = blind.blind_folder(src, out, scale=4, seed=3, progress=False)
    assert report["images_resumed"] == 3
    now = _files(out)
    assert {k for k in files if now[k] != files[k]} == {
        "lq/coffee.png", "hq/coffee.png", "params/coffee.json"}
    assert _lq_bytes(out)["coffee.png"] != first["coffee.png"]
    row = next(r for r in blind.read_manifest(out / blind.MANIFEST) if r["source"] == "coffee.png")
    assert row["source_sha1"] == zio.file_sha1(src / "coffee.png")
    # interrupted or damaged work: a missing record, an overwritten LQ file
    (out / "params" / "camera.json").unlink()
    (out / "lq" / "chelsea.png").write_bytes(b"not a png")
    report = blind.blind_folder(src, out, scale=4, seed=3, progress=False)
    assert report["images_resumed"] == 2
    lq = _lq_bytes(out)
    assert lq["camera.png"] == first["camera.png"] and lq["chelsea.png"] == first["chelsea.png"]


def test_names_that_need_quoting_round_trip(photo_dir, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(photo_dir / "camera.png", src / 'my, "odd" photo.png')
    out = tmp_path / "blind"
    blind.blind_folder(src, out, scale=4, seed=0, progress=False)
    (row,) = blind.read_manifest(out / blind.MANIFEST)
    assert row["source"] == 'my, "odd" photo.png'
    assert row["lq"] == 'lq/my, "odd" photo.png' and (out / row["lq"]).is_file()
    assert row["params"] == 'params/my, "odd" photo.json'
    record = json.loads((out / row["params"]).read_text())
    assert {c: record[c] for c in blind.MANIFEST_COLUMNS if c != "params"} == \
        {c: v for c, v in row.items() if c != "params"}
    assert all(isinstance(row[c], int) for c in ("hq_width", "hq_height", "lq_width",
                                                 "lq_height", "scale", "base_seed", "seed"))


def test_two_files_with_one_stem_are_refused(photo_dir, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(photo_dir / "camera.png", src / "a.png")
    zio.write_bytes(src / "a.jpg", (photo_dir / "camera.png").read_bytes())
    with pytest.raises(ValueError, match="share the name 'a'"):
        blind.blind_folder(src, tmp_path / "out", progress=False)


def _header(columns):
    return ",".join(columns) + "\n"


def test_read_manifest_names_the_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'nope.csv'}: no such blind"):
        blind.read_manifest(tmp_path / "nope.csv")


def test_read_manifest_names_the_file_and_the_missing_column(tmp_path):
    path = tmp_path / "manifest.csv"
    cols = [c for c in blind.MANIFEST_COLUMNS if c != "fingerprint"]
    path.write_text(_header(cols) + ",".join("1" for _ in cols) + "\n")
    with pytest.raises(ValueError, match=rf"{path}: not a blind manifest, missing column\(s\) "
                       "fingerprint$"):
        blind.read_manifest(path)
    path.write_text("")
    with pytest.raises(ValueError, match=f"{path}: .*missing column"):
        blind.read_manifest(path)


def test_read_manifest_names_the_file_and_line_of_a_bad_row(tmp_path):
    path = tmp_path / "manifest.csv"
    good = {c: "1" for c in blind.MANIFEST_COLUMNS}
    row = ",".join(good.values()) + "\n"
    path.write_text(_header(good) + row + row.replace("1,", "x,", 4))
    with pytest.raises(ValueError, match=f"{path}, line 3: column 'hq_width' holds 'x'"):
        blind.read_manifest(path)
    path.write_text(_header(good) + row + "a,b\n")
    with pytest.raises(ValueError, match=f"{path}, line 3: 13 fields expected"):
        blind.read_manifest(path)
    path.write_text(_header(good))
    with pytest.raises(ValueError, match=f"{path}: the blind manifest lists no image"):
        blind.read_manifest(path)
    path.write_text(_header(good) + row)
    assert blind.read_manifest(path)[0]["scale"] == 1
