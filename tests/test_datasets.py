"""Datasets: bundled photos, dataset check, image index."""
from __future__ import annotations

import csv

import numpy as np
import pytest

from zephir import config as zconfig
from zephir import datasets
from zephir import io as zio

from .conftest import REPO


def test_every_bundled_photo_loads_as_rgb():
    for name in datasets.EMBEDDED:
        img = datasets.embedded_image(name)
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
        assert min(img.shape[:2]) >= 200, name


def test_kodak_photos_come_from_pyiqa_and_a_missing_one_is_named():
    img = datasets.embedded_image("kodim03")
    assert img.shape == (384, 512, 3)                 # TID2013's size of the Kodak photos
    assert img[..., 0].mean() > img[..., 2].mean()    # RGB order: the hats are red and yellow
    with pytest.raises(FileNotFoundError, match=r"ResultsCalibra/ref_dir/I99\.bmp.*pyiqa"):
        datasets._pyiqa("I99")()


def test_write_embedded_writes_pngs_and_index(tmp_path):
    paths = datasets.write_embedded(tmp_path, ["astronaut", "china"])
    assert [p.name for p in paths] == ["astronaut.png", "china.png"]
    np.testing.assert_array_equal(zio.load_image(paths[1]).pixels, datasets.embedded_image("china"))
    assert datasets.embedded_image("china").shape == (213, 320, 3)  # a JPEG source, halved
    assert [p.name for p in datasets.image_list(tmp_path / "index.csv")] == ["astronaut.png",
                                                                          "china.png"]


def test_check_reports_missing_incomplete_and_found(tmp_path, astronaut):
    cfg = zconfig.load(REPO / "config" / "paper.yaml")
    folder = tmp_path / "data" / "DIV2K" / "DIV2K_valid_HR"
    for i in range(3):
        zio.write_png(folder / f"{i:04d}.png", astronaut[:8, :8])
    folder = tmp_path / "data" / "RealSR" / "HR" / "Canon"
    zio.write_png(folder / "a.png", astronaut[:8, :8])
    rows = {r["dataset"]: r for r in datasets.check(cfg, root=tmp_path)}
    assert rows["div2k_train"]["status"] == "missing" and rows["div2k_train"]["files"] == 0
    assert rows["div2k_val"]["status"] == "incomplete"
    assert (rows["div2k_val"]["files"], rows["div2k_val"]["expected"]) == (3, 100)
    assert rows["realsr"]["status"] == "found" and rows["realsr"]["files"] == 1


def test_index_pins_content_and_is_relative(tmp_path, astronaut):
    folder = tmp_path / "set"
    zio.write_png(folder / "b.png", astronaut[:8, :8])
    zio.write_png(folder / "a.png", astronaut[8:16, :8])
    out = tmp_path / "results" / "index.csv"
    assert datasets.index_folder(folder, out) == 2
    with out.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["path"] for r in rows] == ["../set/a.png", "../set/b.png"]
    import hashlib
    assert rows[0]["sha1"] == hashlib.sha1((folder / "a.png").read_bytes()).hexdigest()
    assert datasets.image_list(out) == [out.parent / "../set/a.png", out.parent / "../set/b.png"]


def test_missing_dataset_folder_names_it_and_the_source(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"data/DIV2K does not exist\. Get the dataset "
                                                r"from https://example\.org"):
        datasets.index_folder(tmp_path / "data" / "DIV2K", tmp_path / "i.csv",
                              url="https://example.org")


def test_check_reports_the_captions_file_found_incomplete_missing_or_invalid(tmp_path, astronaut):
    """The paper config's DIV2K captions (the CLIP loss's texts): a row of their own, found
    when every image has a caption in DA-CLIP's layout, else what is wrong or how to make it."""
    cfg = zconfig.load(REPO / "config" / "paper.yaml")
    path = cfg["datasets"]["div2k_train"]["captions"]
    folder = tmp_path / "data" / "DIV2K" / "DIV2K_train_HR"
    for i in range(1, 4):
        zio.write_png(folder / f"{i:04d}.png", astronaut[:8, :8])

    def row():
        return {r["dataset"]: r for r in datasets.check(cfg, root=tmp_path)}["div2k_train captions"]

    assert row()["status"] == "missing" and "filepath<TAB>title" in row()["hint"]
    caps = tmp_path / path
    caps.write_text("filepath\ttitle\n/x/LQ/0001.png\ta boat\n0002.png\ttwo cats\n")
    got = row()
    assert (got["status"], got["files"], got["expected"]) == ("incomplete", 2, 3)
    assert "0003.png" in got["hint"]
    caps.write_text(caps.read_text() + "0003.png\ta bridge\n")
    assert row()["status"] == "found" and row()["files"] == 3
    caps.write_text("path\tcaption\n0001.png\ta boat\n")
    assert row()["status"] == "invalid" and "'filepath' and 'title'" in row()["hint"]
