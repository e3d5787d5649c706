"""Randomised synthesis (synth.randomise, issue 14): off it is the fixed pipeline; on, each
sample's implementation choices are seeded, recorded, varied, and reproduce the sample, while
the labels stay those of the fixed pipeline."""
from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import asdict, replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from PIL import Image

from zephir import cli
from zephir import io as zio
from zephir.degrade import levels, ops, synth

OFF = synth.SynthSpec(levels_per_type=3, crop_size=64, mixtures_per_image=3, val_fraction=0.25,
                      seed=11, interpolation="area")
ON = replace(OFF, randomise=True)
LABELS = ["path", "source", "split", "sample", "types", "crop_size", "seed",
          *(f"{k}_{c}" for k in levels.LABEL_ORDER for c in ("value", "level"))]
CHOICES = ["crop_scale", "blur_support", "blur_sampling", "jpeg_subsampling", "jpeg_phase_y",
           "jpeg_phase_x", "resample_down", "resample_up"]
REPO = Path(__file__).resolve().parents[2]


def tree_digest(out: Path) -> dict[str, str]:
    return {p.relative_to(out).as_posix(): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(out.rglob("*")) if p.is_file()}


def rows_of(out: Path) -> list[dict]:
    return synth.read_manifest(out / synth.MANIFEST)


@pytest.fixture(scope="module")
def built(photo_dir, tmp_path_factory):
    """The same spec and seed, off and on."""
    out = {}
    for name, spec in (("off", OFF), ("on", ON)):
        out[name] = tmp_path_factory.mktemp(name)
        synth.synthesize(photo_dir, out[name], spec, progress=False)
    return out


def noise_generator(spec, row, shape):
    """The generator that the sample's noise is drawn from (after its crop and level draws)."""
    return synth.draw_sample(spec, Path(row["source"]).stem, row["sample"],
                             row["types"].split("+"), shape)[3]


def degrade(crop, row, r, choices: dict) -> bytes:
    """Eq. 16 written out, the operators called one by one with the ``choices`` of their
    implementation: the sample's PNG."""
    out = crop
    kinds = row["types"].split("+")
    if "blur" in kinds:
        out = ops.gaussian_blur(out, float(row["blur_value"]), support=choices["blur_support"],
                                sampling=choices["blur_sampling"])
    if "downsample" in kinds:
        out = ops.downsample(out, float(row["downsample_value"]), choices["resample_down"],
                             choices["resample_up"])
    if "noise" in kinds:
        out = ops.gaussian_noise(out, float(row["noise_value"]), r)
    if "jpeg" in kinds:
        out = ops.jpeg(out, float(row["jpeg_value"]), subsampling=choices["jpeg_subsampling"],
                       phase=(int(choices["jpeg_phase_y"]), int(choices["jpeg_phase_x"])))
    return zio.encode_png(zio.to_uint8(out))


def test_off_is_the_fixed_pipeline(built, photo_dir):
    """Off: no choice columns, the fingerprint of the settings without the switch (as sets made
    before it existed), and samples equal to the operators with the fixed choices."""
    out = built["off"]
    rows = rows_of(out)
    assert list(rows[0]) == synth.manifest_columns()
    settings = {k: v for k, v in asdict(OFF).items() if k != "randomise"}
    blob = json.dumps({"spec": settings, "format": synth.FORMAT_VERSION}, sort_keys=True)
    assert OFF.fingerprint() == hashlib.sha1(blob.encode()).hexdigest()[:12]
    report = json.loads((out / synth.REPORT).read_text())
    assert "randomise" not in report["spec"] and report["fingerprint"] == OFF.fingerprint()
    assert [p.parent.name for p in (out / ".parts").rglob("*.csv")] == (
        [OFF.fingerprint()] * len(list(photo_dir.iterdir())))
    for row in rows[::5]:
        src = zio.to_float(zio.load_image(photo_dir / row["source"]).pixels)
        x, y, c = int(row["crop_x"]), int(row["crop_y"]), int(row["crop_size"])
        fixed = {"blur_support": 4.0, "blur_sampling": "sampled", "resample_down": "area",
                 "resample_up": "area", "jpeg_subsampling": "4:2:0", "jpeg_phase_y": 0,
                 "jpeg_phase_x": 0}
        png = degrade(src[y:y + c, x:x + c], row, noise_generator(OFF, row, src.shape[:2]),
                      fixed)
        assert (out / row["path"]).read_bytes() == png, row["path"]


def test_on_records_choices_that_reproduce_each_sample(built, photo_dir):
    """Each sample re-made from its manifest row alone (region, levels, recorded choices) and
    its seed is the same PNG, byte for byte."""
    out = built["on"]
    rows = rows_of(out)
    assert list(rows[0]) == LABELS[:5] + ["crop_x", "crop_y"] + LABELS[5:] + CHOICES
    for row in rows:
        src = zio.to_float(zio.load_image(photo_dir / row["source"]).pixels)
        x, y, c = int(row["crop_x"]), int(row["crop_y"]), int(row["crop_size"])
        side = round(c * float(row["crop_scale"]))
        crop = src[y:y + side, x:x + side]
        assert crop.shape == (side, side, 3)
        if side != c:
            crop = np.clip(cv2.resize(crop, (c, c), interpolation=cv2.INTER_AREA), 0, 1)
        recorded = {k: row[k] for k in CHOICES}
        recorded["blur_support"] = float(recorded["blur_support"] or "nan")
        png = degrade(crop, row, noise_generator(ON, row, src.shape[:2]), recorded)
        assert (out / row["path"]).read_bytes() == png, row["path"]


def test_on_keeps_the_labels_of_the_fixed_pipeline(built, photo_dir):
    """The label distribution is unchanged: types, values and levels of every sample (and its
    seed) are the fixed pipeline's; the choices are a function of the sample's seed (and the
    fixed crop); the randomised region holds the fixed pipeline's crop."""
    off, on = rows_of(built["off"]), rows_of(built["on"])
    assert [{k: r[k] for k in LABELS} for r in on] == [{k: r[k] for k in LABELS} for r in off]
    shapes = {p.name: Image.open(p).size[::-1] for p in photo_dir.iterdir()}
    for a, b in zip(off, on):
        corner, drawn = synth.draw_choices(ON, int(b["seed"]), (int(a["crop_x"]),
                                           int(a["crop_y"])), shapes[a["source"]])
        assert corner == (int(b["crop_x"]), int(b["crop_y"]))
        assert {k: synth._fmt(v) for k, v in drawn.items() if b[k]} == {
            k: b[k] for k in CHOICES if b[k]}
        c, side = int(a["crop_size"]), round(int(b["crop_size"]) * float(b["crop_scale"]))
        for axis in ("crop_x", "crop_y"):
            assert int(b[axis]) <= int(a[axis]) <= int(a[axis]) + c <= int(b[axis]) + side


def test_choices_follow_their_sets_apply_where_they_should_and_vary(built, photo_dir):
    rows = rows_of(built["on"])
    shapes = {p.name: Image.open(p).size for p in photo_dir.iterdir()}
    seen = {k: set() for k in CHOICES}
    for row in rows:
        kinds = row["types"].split("+")
        c, scale = int(row["crop_size"]), float(row["crop_scale"])
        side = round(c * scale)
        assert 1.0 <= scale <= synth.MAX_CROP_SCALE and side == pytest.approx(c * scale)
        w, h = shapes[row["source"]]
        assert int(row["crop_x"]) + side <= w and int(row["crop_y"]) + side <= h
        for kind, cols in synth.CHOICE_COLUMNS.items():
            for col in cols:
                assert (row[col] != "") == (kind in kinds), (row["sample"], col)
        for k in CHOICES:
            if row[k]:
                seen[k].add(row[k])
    assert len(seen["crop_scale"]) > 5
    supports = sorted(map(float, seen["blur_support"]))
    assert synth.BLUR_SUPPORT[0] <= supports[0] < supports[-1] <= synth.BLUR_SUPPORT[1]
    assert len(supports) > 5
    assert seen["blur_sampling"] == set(ops.BLUR_SAMPLINGS)
    assert seen["resample_down"] == set(synth.RESAMPLINGS) | {ops.ANTIALIAS}
    assert seen["resample_up"] == set(synth.RESAMPLINGS)
    assert seen["jpeg_subsampling"] == set(ops.JPEG_SUBSAMPLINGS)
    for axis in ("jpeg_phase_y", "jpeg_phase_x"):
        phases = set(map(int, seen[axis]))
        assert phases <= set(range(synth.JPEG_PHASES)) and len(phases) > 3


def test_on_is_seeded_same_bytes_whatever_the_workers(built, photo_dir, tmp_path):
    synth.synthesize(photo_dir, tmp_path, ON, workers=2, progress=False)
    assert tree_digest(tmp_path) == tree_digest(built["on"])
    other = tmp_path / "other"
    synth.synthesize(photo_dir, other, replace(ON, seed=12), progress=False)
    assert rows_of(other)[0]["crop_scale"] != rows_of(built["on"])[0]["crop_scale"]


def test_the_switch_never_resumes_stale_samples(built, photo_dir, tmp_path):
    """A set made off, rerun on into the same folder, makes every image again (another
    fingerprint) and comes out as a fresh on run; switched back off, it makes them again too
    (the on run overwrote the off images), never resuming the off parts."""
    assert ON.fingerprint() != OFF.fingerprint()
    resumed = []
    for spec in (OFF, ON, OFF, OFF):
        resumed.append(synth.synthesize(photo_dir, tmp_path, spec, progress=False)
                       ["images_resumed"])
        made, fresh = tree_digest(tmp_path), tree_digest(built["on" if spec.randomise else "off"])
        made.pop(synth.REPORT), fresh.pop(synth.REPORT)
        assert made == fresh
    assert resumed == [0, 0, 0, len(list(photo_dir.iterdir()))]


def test_a_set_drawn_from_other_choices_never_resumes(monkeypatch):
    """On, the fingerprint covers what the choices are drawn from (a set made before the
    antialiased shrink joined them is not resumed); off, it does not change."""
    assert set(synth.randomised_choices()) == set(CHOICES)
    before = ON.fingerprint(), OFF.fingerprint()
    monkeypatch.setattr(synth, "SHRINKS", synth.RESAMPLINGS)
    assert ON.fingerprint() != before[0] and OFF.fingerprint() == before[1]
    monkeypatch.undo()
    monkeypatch.setattr(synth, "BLUR_SUPPORT", (3.0, 5.0))
    assert ON.fingerprint() != before[0]


def test_cli_switch_overrides_the_config(photo_dir, tmp_path, capsys):
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg["synth"]["randomise"] = True
    (tmp_path / "on.yaml").write_text(yaml.safe_dump(cfg))
    common = ["synth", "--images", str(photo_dir), "--levels-per-type", "1", "--mixtures", "0",
              "--crop-size", "32", "--quiet"]
    runs = {"config": ["--config", str(tmp_path / "on.yaml")],
            "flag off": ["--config", str(tmp_path / "on.yaml"), "--no-randomise"],
            "flag on": ["--randomise"]}
    for name, flags in runs.items():
        assert cli.main([*common, "--out", str(tmp_path / name), *flags]) == 0
    capsys.readouterr()
    header = {n: next(csv.reader((tmp_path / n / synth.MANIFEST).open())) for n in runs}
    assert "crop_scale" in header["config"] and "crop_scale" in header["flag on"]
    assert header["flag off"] == synth.manifest_columns()


# --- the operators' implementation choices ----------------------------------------------------

def impulse_response(sigma, **kw) -> np.ndarray:
    img = np.zeros((81, 81, 3), np.float32)
    img[40, 40] = 1.0
    return ops.gaussian_blur(img, sigma, **kw)[40, :, 0].astype(np.float64)


@pytest.mark.parametrize("sigma", [1.0, 2.5, 4.0])
def test_integrated_kernel_is_the_gaussian_mass_per_pixel(sigma):
    """Sheppard's correction: integrating over unit pixels adds 1/12 to the variance."""
    row = impulse_response(sigma, sampling="integrated") / impulse_response(
        sigma, sampling="integrated").sum()
    x = np.arange(81) - 40
    std = np.sqrt((row * x**2).sum())
    assert std == pytest.approx(np.sqrt(sigma**2 + 1 / 12), rel=0.01)


@pytest.mark.parametrize("support", [3.0, 3.5, 4.0])
def test_blur_support_sets_the_kernel_radius(support):
    sigma = 2.3
    row = impulse_response(sigma, support=support)
    nonzero = np.flatnonzero(row > 0)
    radius = int(np.ceil(support * sigma))
    assert nonzero[0] == 40 - radius and nonzero[-1] == 40 + radius


def test_unknown_blur_sampling_is_refused(astronaut):
    with pytest.raises(ValueError, match="blur sampling 'box'"):
        ops.gaussian_blur(zio.to_float(astronaut[:16, :16]), 1.0, sampling="box")


@pytest.mark.parametrize("subsampling,pil", [("4:4:4", 0), ("4:2:2", 1), ("4:2:0", 2)])
def test_jpeg_chroma_subsampling_equals_pil(astronaut, subsampling, pil):
    ours = zio.to_uint8(ops.jpeg(zio.to_float(astronaut), 60, subsampling=subsampling))
    buf = io.BytesIO()
    Image.fromarray(astronaut).save(buf, "JPEG", quality=60, subsampling=pil)
    np.testing.assert_array_equal(ours, np.asarray(Image.open(buf).convert("RGB")))
    with pytest.raises(ValueError, match="jpeg subsampling '4:1:1'"):
        ops.jpeg(zio.to_float(astronaut), 60, subsampling="4:1:1")


@pytest.mark.parametrize("phase", [(0, 3), (5, 0), (7, 13)])
def test_jpeg_phase_moves_the_block_grid(astronaut, phase):
    """A phase (dy, dx) is the crop of a larger JPEG: the image padded by reflection above and
    to the left, encoded and decoded by Pillow, and cut back, is the same bytes; the block
    edges (where neighbouring columns differ most) move with it."""
    img = astronaut[:96, :96]
    dy, dx = phase
    ours = zio.to_uint8(ops.jpeg(zio.to_float(img), 20, phase=phase))
    buf = io.BytesIO()
    Image.fromarray(np.pad(img, ((dy, 0), (dx, 0), (0, 0)), mode="reflect")).save(
        buf, "JPEG", quality=20, subsampling=2)
    np.testing.assert_array_equal(ours, np.asarray(Image.open(buf).convert("RGB"))[dy:, dx:])

    def edge(out, axis):  # the offset (mod 8) of the strongest steps along axis
        steps = np.abs(np.diff(out.astype(np.float64), axis=axis))
        steps = steps.mean(axis=tuple(a for a in range(3) if a != axis))
        return int(np.argmax([steps[k::8].mean() for k in range(8)]))

    flat = zio.to_uint8(ops.jpeg(zio.to_float(img), 20))
    assert edge(flat, 0) == edge(flat, 1) == 7  # between rows (columns) 7 and 8
    assert (edge(ours, 0), edge(ours, 1)) == ((7 - dy) % 8, (7 - dx) % 8)
    with pytest.raises(ValueError, match="phase"):
        ops.jpeg(zio.to_float(img), 20, phase=(-1, 0))


@pytest.mark.parametrize("down,up", [("area", "bilinear"), ("bilinear", "bicubic"),
                                     ("bicubic", "area")])
def test_downsample_resamples_each_way_as_asked(astronaut, down, up):
    img = zio.to_float(astronaut[:120, :120])
    modes = {"area": cv2.INTER_AREA, "bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC}
    small = cv2.resize(img, (40, 40), interpolation=modes[down])
    ref = np.clip(cv2.resize(small, (120, 120), interpolation=modes[up]), 0, 1)
    np.testing.assert_array_equal(ops.downsample(img, 3.0, down, up), ref)


@pytest.mark.parametrize("scale", [1.5, 3.0, 7.0])
def test_antialiased_shrink_is_a_gaussian_prefilter_then_bicubic(astronaut, scale):
    """scikit-image's anti-aliasing sigma (scale - 1) / 2, recomputed by scipy.ndimage (mirror
    borders = cv2's reflect-101, truncated at ops' radius ceil(4 sigma))."""
    from scipy import ndimage
    img = zio.to_float(astronaut[:140, :140])
    sigma = (scale - 1) / 2
    radius = int(np.ceil(4 * sigma))
    pre = ndimage.gaussian_filter(img.astype(np.float64), (sigma, sigma, 0), mode="mirror",
                                  truncate=radius / sigma)
    side = round(140 / scale)
    small = cv2.resize(np.clip(pre, 0, 1).astype(np.float32), (side, side),
                       interpolation=cv2.INTER_CUBIC)
    ref = np.clip(cv2.resize(small, (140, 140), interpolation=cv2.INTER_LINEAR), 0, 1)
    out = ops.downsample(img, scale, ops.ANTIALIAS, "bilinear")
    np.testing.assert_allclose(out, ref, atol=2e-5)
    with pytest.raises(ValueError, match="'antialias' up"):
        ops.downsample(img, scale, "area", ops.ANTIALIAS)


def test_antialiased_shrink_does_not_alias():
    """A grating above the small image's Nyquist frequency aliases through cv2's bicubic shrink
    into a coarse pattern; the antialiased shrink removes it (its mean is what is left)."""
    x = np.arange(128)
    grating = 0.5 + 0.4 * np.cos(2 * np.pi * 0.4 * x)  # 0.4 cycles/px; Nyquist at 1/4 is 0.125
    img = np.repeat(np.tile(grating, (128, 1))[..., None], 3, axis=2).astype(np.float32)
    aliased = ops.downsample(img, 4.0, "bicubic", "bilinear")
    clean = ops.downsample(img, 4.0, ops.ANTIALIAS, "bilinear")
    inner = (slice(16, -16), slice(16, -16))
    assert aliased[inner].std() > 0.05
    assert clean[inner].std() < 0.01
    assert clean[inner].mean() == pytest.approx(0.5, abs=0.01)
