"""The transfer protocol (issue 25, item 5): every transfer photo is reduced (area) by the
first factor after which its model-free blur measure is below estimation.transfer.max_blur,
one rule for every photo whatever its content, recorded in the set's manifest."""
from __future__ import annotations

import csv

import numpy as np
import pytest
import yaml

from zephir import datasets
from zephir import io as zio
from zephir.degrade import transfer as T

from ..conftest import REPO


@pytest.fixture(scope="module")
def refs():
    return [zio.to_float(datasets.embedded_image(n)) for n in T.SHARP_REFERENCES]


def test_measure_reads_a_known_blur(refs):
    """A sharp photo blurred by sigma 1 px measures about 1 px against itself; the sharp
    photo itself measures 0."""
    sharp = refs[0]
    assert T.own_blur(sharp, sharp) == 0.0
    assert T.own_blur(T.gaussian_blur(sharp, 1.0), sharp) == pytest.approx(1.0, abs=0.05)


def test_reduction_by_area_averages():
    img = np.arange(4 * 6 * 3, dtype=np.float32).reshape(4, 6, 3)
    small = T.reduce_area(img, 2.0)
    np.testing.assert_allclose(small, img.reshape(2, 2, 3, 2, 3).mean(axis=(1, 3)))
    assert T.reduce_area(img, 1.0) is img


@pytest.mark.slow
def test_embedded_transfer_photos_follow_the_rule(refs):
    """cell (soft at native resolution, sigma 1.35 px) is reduced until below the config's
    threshold; the other photos of the embedded transfer set are sharp as they are."""
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    limit = cfg["estimation"]["transfer"]["max_blur"]
    names = cfg["datasets"]["transfer"]["images"]
    got = {}
    for n in names:
        img = zio.to_float(datasets.embedded_image(n))
        small, factor, measured = T.sharpen_by_reduction(n, img, refs, limit, 160)
        assert measured < limit and small.shape[0] == round(img.shape[0] / factor)
        if factor > 1:  # the factor before it was not enough
            before = T.REDUCTIONS[T.REDUCTIONS.index(factor) - 1]
            assert T.blur_measure(T.reduce_area(img, before), refs) >= limit
        got[n] = factor
    assert got["cell"] > 1 and all(f == 1 for n, f in got.items() if n != "cell"), got


@pytest.mark.slow
def test_manifest_records_the_reduction(tmp_path, refs):
    photos = tmp_path / "photos"
    for n in ("cell", "kodim04"):
        zio.write_png(photos / f"{n}.png", datasets.embedded_image(n))
    manifest = T.make(sorted(photos.glob("*.png")), tmp_path / "set", per_type=2, seed=0,
                      crop_sizes=(64, 96), max_blur=0.9)
    with manifest.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    by = {r["source"]: r for r in rows}
    assert float(by["cell"]["source_reduction"]) > 1 and float(by["cell"]["source_blur"]) < 0.9
    assert float(by["kodim04"]["source_reduction"]) == 1
    cell = datasets.embedded_image("cell")
    factor = float(by["cell"]["source_reduction"])
    for r in rows:
        if r["source"] == "cell":  # crops lie inside the reduced photo
            assert int(r["crop_y"]) + int(r["crop_size"]) <= round(cell.shape[0] / factor)
    blurry = T.gaussian_blur(zio.to_float(datasets.embedded_image("kodim04")), 6.0)
    with pytest.raises(ValueError, match="blurry_one: no area reduction"):
        T.sharpen_by_reduction("blurry_one", blurry, refs, 0.9, 160)
