"""Restoration: one image with its record, and a shard of a set that resumes, redoes what
changed, never keeps a partial file, and partitions the set."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from zephir import checkpoints, data, methods
from zephir import io as zio
from zephir.backbones import load
from zephir.hdclip.model import HDCLIPConfig
from zephir.restore import done_path, restore_folder, restore_image, shard_of

STEPS = {"steps": 2}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def hd_checkpoint(tmp_path_factory) -> Path:
    """A tiny random-init HD-CLIP saved as a checkpoint (as `zephir train` writes one)."""
    torch.manual_seed(0)
    cfg = HDCLIPConfig(arch="zephir-tiny-rn")
    model = methods.build("hdclip", cfg)
    return checkpoints.save_model(tmp_path_factory.mktemp("hdclip"), model,
                                  {"method": "hdclip", "hdclip": cfg.to_dict()})


@pytest.fixture(scope="module")
def lq_dir(tmp_path_factory) -> Path:
    """Three 32 px LQ images (bundled photos, area-downscaled)."""
    folder = tmp_path_factory.mktemp("lq")
    for name in ("chelsea", "coffee", "camera"):
        img = cv2.resize(data.embedded_image(name), (32, 32), interpolation=cv2.INTER_AREA)
        zio.write_png(folder / f"{name}.png", img)
    return folder


def _run(src, out, ckpt, **kw):
    args = {"backbone_name": "tiny", "settings": STEPS, "weights": {}, "hdclip_checkpoint": ckpt,
            "mode": "cfpg", "bridge": "prompt", "w_par": 1.0, "w_orth": 0.6, "seed": 0,
            "shard": 0, "shards": 1, "device": "cpu"}
    return restore_folder(src, out, **{**args, **kw})


def _mtimes(out: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted(out.glob("*.png"))}


# --------------------------------------------------------------------------- one image

def test_restore_image_returns_the_output_and_its_record(hd_checkpoint, lq_dir):
    hd_model, _ = checkpoints.load_pretrained(hd_checkpoint)
    backbone = load("tiny", STEPS)
    lq = zio.load_image(lq_dir / "chelsea.png").pixels
    out, record = restore_image(lq, backbone=backbone, hd_model=hd_model, mode="cfpg",
                                bridge="prompt", w_par=1.0, w_orth=0.6, cfg_ratio=0.5,
                                seed=1, prompt="a cat")
    assert out.shape == (128, 128, 3) and out.dtype == np.uint8
    assert record["random_init"] is True and record["hdclip"]["random_init"] is True
    assert (record["mode"], record["steps"], record["w_orth"]) == ("cfpg", 2, 0.6)
    assert record["prompt"] == "a cat" and record["bridge"] == "prompt"
    assert set(record["degradation"]["degradations"]) == {"blur", "noise", "jpeg",
                                                          "downsample"}
    assert record["hd_positive_prompt"].startswith("a cat, ")
    json.dumps(record)  # JSON-ready
    base, base_record = restore_image(lq, backbone=backbone, mode="baseline", seed=1,
                                      prompt="a cat")
    assert "hdclip" not in base_record and "w_orth" not in base_record
    same, _ = restore_image(lq, backbone=backbone, hd_model=hd_model, mode="cfpg", w_par=0.0,
                            w_orth=0.0, seed=1, prompt="a cat")
    assert np.array_equal(same, base)
    with pytest.raises(ValueError, match="needs an HD-CLIP model"):
        restore_image(lq, backbone=backbone, mode="cfg")


# --------------------------------------------------------------------------- a shard of a set

def test_restore_folder_resumes_and_redoes_what_changed(hd_checkpoint, lq_dir, tmp_path):
    out = tmp_path / "out"
    done = _run(lq_dir, out, hd_checkpoint)
    assert done["restored"] == 3 and done["resumed"] == 0
    assert [i["stem"] for i in done["images"]] == ["camera", "chelsea", "coffee"]
    assert done["random_init"] and done["hdclip_random_init"]
    assert json.loads(done_path(out, 0, 1).read_text())["restored"] == 3
    record = json.loads((out / "chelsea.json").read_text())
    assert record["png_sha1"] == zio.file_sha1(out / "chelsea.png")
    assert record["job"]["w_orth"] == 0.6 and record["job"]["bridge"] == "prompt"
    assert zio.load_image(out / "chelsea.png").pixels.shape == (128, 128, 3)
    before = _mtimes(out)

    (out / "coffee.png").unlink()
    again = _run(lq_dir, out, hd_checkpoint)
    assert again["restored"] == 1 and again["resumed"] == 2
    after = _mtimes(out)
    assert after["camera.png"] == before["camera.png"]
    assert after["chelsea.png"] == before["chelsea.png"]
    assert (out / "coffee.png").is_file()

    # a corrupted output, or a record of other settings, is never reused
    (out / "camera.png").write_bytes(b"not a png")
    assert _run(lq_dir, out, hd_checkpoint)["restored"] == 1

    changed = _run(lq_dir, out, hd_checkpoint, w_orth=0.3)
    assert changed["restored"] == 3
    assert json.loads((out / "chelsea.json").read_text())["w_orth"] == 0.3


def test_a_killed_run_leaves_no_partial_png_and_resumes(hd_checkpoint, lq_dir, tmp_path,
                                                        monkeypatch):
    out = tmp_path / "out"
    real = zio.write_bytes
    calls = {"n": 0}

    def crash_on_second_png(path, data):
        if str(path).endswith(".png"):
            calls["n"] += 1
            if calls["n"] == 2:  # half the bytes reach the disk, then the process dies
                with zio.atomic_path(path) as tmp:
                    tmp.write_bytes(data[: len(data) // 2])
                    raise KeyboardInterrupt
        real(path, data)

    monkeypatch.setattr(zio, "write_bytes", crash_on_second_png)
    with pytest.raises(KeyboardInterrupt):
        _run(lq_dir, out, hd_checkpoint, mode="cfg")
    monkeypatch.setattr(zio, "write_bytes", real)
    assert sorted(p.name for p in out.iterdir()) == ["camera.json", "camera.png"]
    assert not done_path(out, 0, 1).exists()

    # a process killed with SIGKILL leaves its temporary file; the rerun clears it
    (out / ".chelsea.png.abc123.tmp").write_bytes(b"partial")
    done = _run(lq_dir, out, hd_checkpoint, mode="cfg")
    assert done["restored"] == 2 and done["resumed"] == 1
    assert not list(out.glob(".*.tmp"))
    for stem in ("camera", "chelsea", "coffee"):
        record = json.loads((out / f"{stem}.json").read_text())
        assert record["png_sha1"] == zio.file_sha1(out / f"{stem}.png")
        assert record["cfg_ratio"] == [0.5, 0.5]


def test_shards_partition_the_set(lq_dir, tmp_path):
    stems = ["a", "b", "c", "d", "e"]
    parts = [shard_of(stems, i, 2) for i in range(2)]
    assert parts == [["a", "c", "e"], ["b", "d"]]
    with pytest.raises(ValueError, match="shard 2 of 2"):
        shard_of(stems, 2, 2)

    out = tmp_path / "out"
    got = [_run(lq_dir, out, None, mode="baseline", shard=i, shards=2) for i in range(2)]
    names = [{i["stem"] for i in d["images"]} for d in got]
    assert names[0].isdisjoint(names[1])
    assert names[0] | names[1] == {"camera", "chelsea", "coffee"}
    assert done_path(out, 0, 2).is_file() and done_path(out, 1, 2).is_file()
    assert "hdclip_sha1" not in got[0]["job"]  # baseline does not depend on HD-CLIP
    assert len(list(out.glob("*.png"))) == 3


def test_a_blind_manifest_is_read_through_its_lq_column(hd_checkpoint, photo_dir, tmp_path):
    from zephir.degrade.blind import blind_folder

    hq = tmp_path / "hq"
    for p in sorted(photo_dir.glob("*.png"))[:2]:
        img = zio.load_image(p).pixels
        zio.write_png(hq / p.name, cv2.resize(img, (128, 128), interpolation=cv2.INTER_AREA))
    blind = tmp_path / "blind"
    blind_folder(hq, blind, scale=4, seed=0, progress=False)
    out = tmp_path / "out"
    done = _run(blind / "manifest.csv", out, hd_checkpoint, mode="baseline")
    assert done["restored"] == 2
    for item in done["images"]:
        record = json.loads((out / item["record"]).read_text())
        assert Path(record["lq"]).parent == blind / "lq"
        assert zio.load_image(out / item["png"]).pixels.shape == (128, 128, 3)


def test_restore_folder_checks_its_arguments(lq_dir, tmp_path):
    with pytest.raises(ValueError, match="needs an HD-CLIP checkpoint"):
        _run(lq_dir, tmp_path / "o", None, mode="cfpg")
    with pytest.raises(FileNotFoundError, match="no such HD-CLIP checkpoint"):
        _run(lq_dir, tmp_path / "o", tmp_path / "missing.pt", mode="cfpg")
    with pytest.raises(ValueError, match="bridge"):
        _run(lq_dir, tmp_path / "o", tmp_path / "missing.pt", bridge="clip")
    with pytest.raises(ValueError, match="unknown setting"):
        _run(lq_dir, tmp_path / "o", None, mode="baseline", settings={"stepz": 1})
