"""The labelled dataset: schema, labels that match pixels, determinism, split, resume, bad input."""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from zephir import io as zio
from zephir.degrade import levels, ops, synth

SPEC = synth.SynthSpec(levels_per_type=3, crop_size=64, mixtures_per_image=2, val_fraction=0.25,
                       seed=7)


def read_manifest(out: Path) -> list[dict]:
    return synth.read_manifest(out / synth.MANIFEST)


def tree_digest(out: Path) -> dict[str, str]:
    return {p.relative_to(out).as_posix(): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(out.rglob("*")) if p.is_file() and ".parts" not in p.parts}


@pytest.fixture(scope="module")
def built(photo_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    report = synth.synthesize(photo_dir, out, SPEC, workers=1, progress=False)
    return out, report


def test_manifest_schema_and_counts(built, photo_dir):
    out, report = built
    rows = read_manifest(out)
    assert list(rows[0]) == synth.manifest_columns()
    n_sources = len(list(photo_dir.iterdir()))
    per_source = len(SPEC.types) * SPEC.levels_per_type + SPEC.mixtures_per_image
    assert len(rows) == report["samples"] == n_sources * per_source
    for row in rows:
        assert not Path(row["path"]).is_absolute()
        assert (out / row["path"]).is_file()
        kinds = row["types"].split("+")
        for kind in levels.LABEL_ORDER:
            present = kind in kinds
            assert (row[f"{kind}_value"] != "") == present
            assert (row[f"{kind}_level"] != "") == present
            if present:
                v, lv = float(row[f"{kind}_value"]), float(row[f"{kind}_level"])
                assert lv == pytest.approx(levels.normalize(kind, v), abs=1e-4)
        single = [r for r in rows if "+" not in r["types"] and r["source"] == row["source"]]
        assert {r["types"] for r in single} == set(SPEC.types)


def test_mixtures_have_two_to_four_types(built):
    rows = [r for r in read_manifest(built[0]) if r["sample"].startswith("mix_")]
    assert rows
    assert all(2 <= len(r["types"].split("+")) <= 4 for r in rows)


def test_levels_are_continuous_not_bin_centres(built):
    rows = read_manifest(built[0])
    lv = np.array([float(r["blur_level"]) for r in rows if r["types"] == "blur"])
    assert np.all((lv >= 0) & (lv <= 100))
    assert np.mean(np.isclose(lv % 5, 0)) < 0.5


def test_sample_pixels_equal_the_operator_applied_to_the_crop(built, photo_dir):
    out, _ = built
    for row in read_manifest(out)[::7]:
        src = zio.to_float(zio.load_image(photo_dir / row["source"]).pixels)
        x, y, c = int(row["crop_x"]), int(row["crop_y"]), int(row["crop_size"])
        params = {k: float(row[f"{k}_value"]) for k in row["types"].split("+")}
        _, _, _, r, seed = synth.draw_sample(SPEC, Path(row["source"]).stem, row["sample"],
                                             row["types"].split("+"), src.shape[:2])
        assert int(row["seed"]) == seed
        expected = zio.to_uint8(ops.apply(src[y:y + c, x:x + c], params, r))
        np.testing.assert_array_equal(zio.load_image(out / row["path"]).pixels, expected)


def test_samples_are_stored_losslessly(built):
    out, _ = built
    assert {Image.open(out / r["path"]).format for r in read_manifest(out)} == {"PNG"}


def test_split_is_by_source_image(built):
    rows = read_manifest(built[0])
    train = {r["source"] for r in rows if r["split"] == "train"}
    val = {r["source"] for r in rows if r["split"] == "val"}
    assert train and val and not train & val
    assert all(r["path"].startswith(f"images/{r['split']}/") for r in rows)


def test_one_and_two_workers_are_byte_identical(built, photo_dir, tmp_path):
    out1, _ = built
    out2 = tmp_path / "two"
    synth.synthesize(photo_dir, out2, SPEC, workers=2, progress=False)
    assert tree_digest(out1) == tree_digest(out2)


def test_other_seed_gives_other_samples(photo_dir, tmp_path):
    a = synth.synthesize(photo_dir, tmp_path / "a", SPEC, progress=False)
    b_spec = synth.SynthSpec(**{**SPEC.__dict__, "seed": 8})
    synth.synthesize(photo_dir, tmp_path / "b", b_spec, progress=False)
    assert a["samples"] > 0
    assert tree_digest(tmp_path / "a") != tree_digest(tmp_path / "b")


def test_interrupted_run_resumes_to_the_same_result(built, photo_dir, tmp_path):
    out1, _ = built
    out = tmp_path / "resumed"
    synth.synthesize(photo_dir, out, SPEC, progress=False)
    # Simulate an interruption while the first image was in progress: its finished-mark and one
    # of its samples are missing, and the manifest was never written.
    (out / synth.MANIFEST).unlink()
    parts = sorted((out / ".parts").rglob("*.csv"))
    parts[0].unlink()
    source = parts[0].name.split(".")[0]
    next((out / "images").rglob(f"{source}__*.png")).unlink()
    report = synth.synthesize(photo_dir, out, SPEC, progress=False)
    assert report["images_resumed"] == len(parts) - 1
    done, again = tree_digest(out1), tree_digest(out)
    done.pop("report.json"), again.pop("report.json")
    assert again == done


def test_val_mixtures_apply_to_validation_images_only(photo_dir, tmp_path):
    """The paper's protocol: single-type training samples, mixtures in the evaluation."""
    spec = synth.SynthSpec(**{**SPEC.__dict__, "mixtures_per_image": 0,
                              "val_mixtures_per_image": 3})
    synth.synthesize(photo_dir, tmp_path, spec, progress=False)
    rows = read_manifest(tmp_path)
    mixes = {split: sum("+" in r["types"] for r in rows if r["split"] == split)
             for split in ("train", "val")}
    n_val = len({r["source"] for r in rows if r["split"] == "val"})
    assert mixes == {"train": 0, "val": 3 * n_val}
    assert synth.SynthSpec(mixtures_per_image=2).mixtures("val") == 2  # null: the same


def test_forced_split_puts_every_image_in_val_and_reuses_what_it_may(built, photo_dir,
                                                                   tmp_path):
    """An evaluation set (split="val"): every image in val; a source's samples depend on
    (spec, source, split) only, so the images that a split by image held out come out
    byte-identical, and a part file is never taken for a source of another split."""
    out, _ = built
    report = synth.synthesize(photo_dir, tmp_path, SPEC, progress=False, split="val")
    rows = read_manifest(tmp_path)
    assert report["split"] == "val" and report["splits"]["train"] == 0
    assert {r["split"] for r in rows} == {"val"}
    assert len({r["source"] for r in rows}) == len(list(photo_dir.iterdir()))
    before, after = tree_digest(out), tree_digest(tmp_path)
    held_out = {k: v for k, v in before.items() if k.startswith("images/val/")}
    assert held_out and all(after[k] == v for k, v in held_out.items())
    # into the folder of a split by image: only its held-out images are resumed
    shutil.copytree(out, tmp_path / "mixed")
    again = synth.synthesize(photo_dir, tmp_path / "mixed", SPEC, progress=False, split="val")
    n_val = len({r["source"] for r in read_manifest(out) if r["split"] == "val"})
    assert again["images_resumed"] == n_val
    assert read_manifest(tmp_path / "mixed") == rows
    with pytest.raises(ValueError, match="split: 'test'"):
        synth.synthesize(photo_dir, tmp_path / "x", SPEC, progress=False, split="test")


def test_bad_inputs_are_reported_not_dropped(tmp_path, astronaut, capsys):
    src = tmp_path / "src"
    src.mkdir()
    zio.write_png(src / "good.png", astronaut[:128, :128])
    Image.fromarray(astronaut[:100, :100, 0]).save(src / "gray.png")           # converted
    Image.fromarray(np.dstack([astronaut[:100, :100], np.full((100, 100), 255, np.uint8)])
                    ).save(src / "rgba.png")                                   # converted
    zio.write_png(src / "tiny.png", astronaut[:32, :32])                       # too small
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0garbage")               # corrupt
    (src / "notes.txt").write_text("not an image")                              # ignored
    report = synth.synthesize(src, tmp_path / "out", SPEC, progress=False)
    assert report["images_read"] == 3
    assert set(report["images_converted"]) == {"gray", "rgba"}
    assert "grayscale->RGB" in report["images_converted"]["gray"]
    assert set(report["images_refused"]) == {"tiny", "broken"}
    assert "smaller than the crop size 64" in report["images_refused"]["tiny"]
    assert "corrupt or truncated" in report["images_refused"]["broken"]
    text = synth.describe(report)
    assert "read 3 image(s), converted 2, refused 2" in text
    assert "refused tiny" in text and "refused broken" in text


def test_no_usable_image_is_an_error(tmp_path, astronaut):
    src = tmp_path / "src"
    src.mkdir()
    zio.write_png(src / "tiny.png", astronaut[:16, :16])
    with pytest.raises(ValueError, match="no usable source image.*tiny: 16x16 is smaller"):
        synth.synthesize(src, tmp_path / "out", SPEC, progress=False)


def test_empty_folder_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="no image files"):
        synth.synthesize(tmp_path, tmp_path / "out", SPEC, progress=False)


@pytest.mark.parametrize("kw,match", [
    ({"types": ("blur", "haze")}, "synth.types: unknown degradation type 'haze'"),
    ({"level_range": (0.0, 120.0)}, r"synth.level_range: \[0.0, 120.0\]"),
    ({"level_range": (50.0, 10.0)}, "synth.level_range"),
    ({"mixtures_per_image": 1, "mixture_types": (2, 5)}, "synth.mixture_types"),
    ({"crop_size": 4}, "synth.crop_size"),
    ({"val_mixtures_per_image": 1, "mixture_types": (2, 5)}, "synth.mixture_types"),
    ({"val_mixtures_per_image": -1}, "synth.val_mixtures_per_image"),
])
def test_bad_spec_names_the_key(kw, match):
    with pytest.raises(ValueError, match=match):
        synth.SynthSpec(**kw)
