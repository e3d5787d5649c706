"""Restoration: one image with its record, and a shard of a set that resumes, redoes what
changed, never keeps a partial file, partitions the set, reads HD-CLIP's conditioning from the
set's embeddings file, and seeds as the upstream scripts do (paired across modes)."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from zephir import checkpoints, conditioning, datasets, estimator_registry
from zephir import io as zio
from zephir.backbones import load
from zephir.backbones.tiny import TinyBackbone
from zephir.bridge import Bridge
from zephir.embed import embed_set
from zephir.hdclip.model import HDCLIPConfig
from zephir.restore import done_path, restore_folder, restore_image, shard_of

STEPS = {"steps": 2}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def hd_checkpoint(tmp_path_factory) -> Path:
    """A tiny random-init HD-CLIP saved as a model folder (as `zephir train` writes one)."""
    torch.manual_seed(0)
    cfg = HDCLIPConfig(arch="zephir-tiny-rn")
    model = estimator_registry.build("hdclip", cfg)
    return checkpoints.save_model(tmp_path_factory.mktemp("hdclip"), model,
                                  {"method": "hdclip", "hdclip": cfg.to_dict()})


@pytest.fixture(scope="module")
def lq_dir(tmp_path_factory) -> Path:
    """Three 32 px LQ images (bundled photos, area-downscaled)."""
    folder = tmp_path_factory.mktemp("lq")
    for name in ("chelsea", "coffee", "camera"):
        img = cv2.resize(datasets.embedded_image(name), (32, 32), interpolation=cv2.INTER_AREA)
        zio.write_png(folder / f"{name}.png", img)
    return folder


@pytest.fixture(scope="module")
def embeddings(hd_checkpoint, lq_dir, tmp_path_factory) -> Path:
    """The LQ images' conditioning file, as rule hdclip_embed writes it."""
    path = tmp_path_factory.mktemp("emb") / "hdclip-embeddings.safetensors"
    embed_set(hd_checkpoint, lq_dir, path)
    return path


def _run(src, out, emb, **kw):
    args = {"backbone_name": "tiny", "settings": STEPS, "weights": {}, "embeddings": emb,
            "mode": "cfpg", "bridge": "prompt", "w_par": 1.0, "w_orth": 0.6, "seed": 0,
            "shard": 0, "shards": 1, "device": "cpu"}
    return restore_folder(src, out, **{**args, **kw})


def _mtimes(out: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted(out.glob("*.png"))}


# --------------------------------------------------------------------------- one image

def test_the_embeddings_file_holds_what_hdclip_sees(hd_checkpoint, lq_dir, embeddings):
    """Each image's conditioning equals HD-CLIP run on it directly (zephir.hdclip.predict),
    and the file records its LQ file and model; it is data (safetensors, no pickle)."""
    from zephir.bridge import hdclip_texts
    from zephir.hdclip.predict import embed

    emb = conditioning.read(embeddings)
    assert sorted(emb.images) == ["camera", "chelsea", "coffee"]
    assert emb.hdclip["random_init"] is True
    assert emb.hdclip["sha1"] == zio.file_sha1(checkpoints.weights_file(hd_checkpoint))
    hd_model, _ = checkpoints.load_pretrained(hd_checkpoint)
    lq = zio.load_image(lq_dir / "chelsea.png").pixels
    direct = embed(hd_model, [lq], semantic=True)[0]
    got = emb.conditioning("chelsea", zio.file_sha1(lq_dir / "chelsea.png"))
    assert torch.allclose(got.semantic, direct.semantic, atol=1e-6)
    assert torch.allclose(got.embeddings, direct.embeddings, atol=1e-6)
    assert torch.allclose(got.levels, direct.levels, atol=1e-4)
    assert got.types == tuple(hd_model.cfg.types)
    assert list(emb.texts) == hdclip_texts()
    with pytest.raises(ValueError, match="another LQ file"):
        emb.conditioning("chelsea", "0" * 40)
    assert embeddings.read_bytes()[8:9] == b"{"  # safetensors: a JSON header, then raw tensors


def test_restore_image_returns_the_output_and_its_record(embeddings, lq_dir):
    emb = conditioning.read(embeddings)
    backbone = load("tiny", STEPS)
    bridge = Bridge("prompt", backbone, emb.text_embeddings)
    cond = emb.conditioning("chelsea")
    lq = zio.load_image(lq_dir / "chelsea.png").pixels
    out, record = restore_image(lq, backbone=backbone, conditioning=cond, bridge=bridge,
                                mode="cfpg", w_par=1.0, w_orth=0.6, cfg_ratio=0.5, seed=1,
                                prompt="a cat", hdclip=emb.hdclip)
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
    assert base_record["noise_state_sha1"] == record["noise_state_sha1"]  # paired
    same, _ = restore_image(lq, backbone=backbone, conditioning=cond, bridge=bridge,
                            mode="cfpg", w_par=0.0, w_orth=0.0, seed=1, prompt="a cat")
    assert np.array_equal(same, base)
    with pytest.raises(ValueError, match="needs the image's HD-CLIP conditioning"):
        restore_image(lq, backbone=backbone, mode="cfg")


def test_restore_image_hands_the_backbone_cfpgs_two_weights_in_order(embeddings, lq_dir):
    """Unequal weights (issue 29): restore_image's pixels equal the backbone run directly with
    w_par and w_orth as given, and differ from the same run with the two swapped."""
    emb = conditioning.read(embeddings)
    backbone = load("tiny", STEPS)
    bridge = Bridge("prompt", backbone, emb.text_embeddings)
    cond = emb.conditioning("coffee")
    lq = zio.load_image(lq_dir / "coffee.png").pixels
    w_par, w_orth = 1.0, 0.2
    out, record = restore_image(lq, backbone=backbone, conditioning=cond, bridge=bridge,
                                mode="cfpg", w_par=w_par, w_orth=w_orth, seed=4, prompt="cup")
    assert (record["w_par"], record["w_orth"]) == (w_par, w_orth)
    positive, negative = backbone.compose_prompts(lq, "cup", None)
    hd_pair, _ = bridge.pair(cond, prompt=positive, negative_prompt=negative)

    def direct(a, b):
        return backbone.restore(lq, prompt=positive, negative_prompt=negative, hd_pair=hd_pair,
                                mode="cfpg", w_par=a, w_orth=b, cfg_ratio=0.5,
                                steps=record["steps"], scale=record["scale"],
                                generator=torch.Generator().manual_seed(4), controlnet="rerun")

    assert np.array_equal(out, direct(w_par, w_orth))
    swapped = direct(w_orth, w_par)
    assert np.abs(swapped.astype(int) - out.astype(int)).max() > 0


# --------------------------------------------------------------------------- a shard of a set

def test_restore_folder_resumes_and_redoes_what_changed(embeddings, lq_dir, tmp_path):
    out = tmp_path / "out"
    done = _run(lq_dir, out, embeddings)
    assert done["restored"] == 3 and done["resumed"] == 0
    assert [i["stem"] for i in done["images"]] == ["camera", "chelsea", "coffee"]
    assert done["random_init"] and done["hdclip_random_init"]
    assert json.loads(done_path(out, 0, 1).read_text())["restored"] == 3
    record = json.loads((out / "chelsea.json").read_text())
    assert record["png_sha1"] == zio.file_sha1(out / "chelsea.png")
    assert record["job"]["w_orth"] == 0.6 and record["job"]["bridge"] == "prompt"
    assert record["job"]["controlnet"] == record["controlnet"] == "rerun"
    assert zio.load_image(out / "chelsea.png").pixels.shape == (128, 128, 3)
    before = _mtimes(out)

    (out / "coffee.png").unlink()
    again = _run(lq_dir, out, embeddings)
    assert again["restored"] == 1 and again["resumed"] == 2
    after = _mtimes(out)
    assert after["camera.png"] == before["camera.png"]
    assert after["chelsea.png"] == before["chelsea.png"]
    assert (out / "coffee.png").is_file()

    # a corrupted output, or a record of other settings, is never reused
    (out / "camera.png").write_bytes(b"not a png")
    assert _run(lq_dir, out, embeddings)["restored"] == 1

    changed = _run(lq_dir, out, embeddings, w_orth=0.3)
    assert changed["restored"] == 3
    assert _run(lq_dir, out, embeddings, w_orth=0.3, controlnet="reuse")["restored"] == 3
    assert json.loads((out / "chelsea.json").read_text())["w_orth"] == 0.3


def test_a_killed_run_leaves_no_partial_png_and_resumes(embeddings, lq_dir, tmp_path,
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
        _run(lq_dir, out, embeddings, mode="cfg")
    monkeypatch.setattr(zio, "write_bytes", real)
    assert sorted(p.name for p in out.iterdir()) == ["camera.json", "camera.png"]
    assert not done_path(out, 0, 1).exists()

    # a process killed with SIGKILL leaves its temporary file; the rerun clears it
    (out / ".chelsea.png.abc123.tmp").write_bytes(b"partial")
    done = _run(lq_dir, out, embeddings, mode="cfg")
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


def test_a_blind_manifest_is_read_through_its_lq_column(photo_dir, tmp_path):
    from zephir.degrade.blind import blind_folder

    hq = tmp_path / "hq"
    for p in sorted(photo_dir.glob("*.png"))[:2]:
        img = zio.load_image(p).pixels
        zio.write_png(hq / p.name, cv2.resize(img, (128, 128), interpolation=cv2.INTER_AREA))
    blind = tmp_path / "blind"
    blind_folder(hq, blind, scale=4, seed=0, progress=False)
    out = tmp_path / "out"
    done = _run(blind / "manifest.csv", out, None, mode="baseline")
    assert done["restored"] == 2
    for item in done["images"]:
        record = json.loads((out / item["record"]).read_text())
        assert Path(record["lq"]).parent == blind / "lq"
        assert zio.load_image(out / item["png"]).pixels.shape == (128, 128, 3)


def test_restore_folder_checks_its_arguments(lq_dir, embeddings, tmp_path):
    with pytest.raises(ValueError, match="needs the set's HD-CLIP embeddings"):
        _run(lq_dir, tmp_path / "o", None, mode="cfpg")
    with pytest.raises(FileNotFoundError, match="no such HD-CLIP embeddings file"):
        _run(lq_dir, tmp_path / "o", tmp_path / "missing.safetensors", mode="cfpg")
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="bad.safetensors: not a readable safetensors"):
        _run(lq_dir, tmp_path / "o", tmp_path / "bad.safetensors", mode="cfg")
    with pytest.raises(ValueError, match="bridge"):
        _run(lq_dir, tmp_path / "o", embeddings, bridge="clip")
    with pytest.raises(ValueError, match="unknown setting"):
        _run(lq_dir, tmp_path / "o", None, mode="baseline", settings={"stepz": 1})
    with pytest.raises(ValueError, match="controlnet: expected one of rerun, reuse"):
        _run(lq_dir, tmp_path / "o", embeddings, controlnet="again")


def test_an_image_missing_from_the_embeddings_is_refused_by_name(embeddings, lq_dir,
                                                                 tmp_path):
    src = tmp_path / "lq"
    src.mkdir()
    for p in lq_dir.glob("*.png"):
        (src / p.name).write_bytes(p.read_bytes())
    img = cv2.resize(datasets.embedded_image("astronaut"), (32, 32), interpolation=cv2.INTER_AREA)
    zio.write_png(src / "astronaut.png", img)
    zio.write_png(src / "camera.png", np.zeros((32, 32, 3), np.uint8))  # another LQ file
    done = _run(src, tmp_path / "out", embeddings, mode="cfg")
    assert sorted(done["refused"]) == ["astronaut", "camera"]
    assert "no HD-CLIP embedding of image 'astronaut'" in done["refused"]["astronaut"]
    assert "another LQ file" in done["refused"]["camera"]


# --------------------------------------------------------------------------- seeding

class _FolderScope(TinyBackbone):
    """The tiny backbone seeded as SeeSR's and PASD's scripts seed (one generator a folder)."""

    seed_scope = "folder"


@pytest.fixture()
def folder_scope(monkeypatch):
    from zephir.backbones import registry

    monkeypatch.setitem(registry.BACKBONES, "tiny", _FolderScope)


def _noise(out: Path) -> dict[str, str]:
    return {p.stem: json.loads(p.read_text())["noise_state_sha1"]
            for p in sorted(out.glob("*.json")) if not p.name.startswith("shard-")}


def test_image_scope_gives_every_image_the_seed_and_pairs_the_modes(embeddings, lq_dir,
                                                                    tmp_path):
    runs = {m: tmp_path / m for m in ("baseline", "cfg", "cfpg")}
    for mode, out in runs.items():
        _run(lq_dir, out, embeddings, mode=mode, seed=7)
    noise = {m: _noise(out) for m, out in runs.items()}
    assert noise["baseline"] == noise["cfg"] == noise["cfpg"]
    seeded = torch.Generator().manual_seed(7).get_state().numpy().tobytes()
    import hashlib

    assert set(noise["baseline"].values()) == {hashlib.sha1(seeded).hexdigest()}
    # w = 0 CFPG is the baseline bit for bit, image by image
    _run(lq_dir, tmp_path / "w0", embeddings, mode="cfpg", seed=7, w_par=0.0, w_orth=0.0)
    for stem in ("camera", "chelsea", "coffee"):
        assert ((tmp_path / "w0" / f"{stem}.png").read_bytes()
                == (runs["baseline"] / f"{stem}.png").read_bytes())


def test_folder_scope_draws_one_stream_and_resumes_it_exactly(folder_scope, embeddings,
                                                              lq_dir, tmp_path):
    """One generator for the shard (SeeSR test_seesr.py 171-173): the images' noise differs,
    baseline and CFPG stay paired image by image, and a shard resumed after losing an image
    in the middle writes the bytes of an uninterrupted run."""
    full = tmp_path / "full"
    _run(lq_dir, full, None, mode="baseline", seed=3)
    noise = _noise(full)
    assert len(set(noise.values())) == 3  # the stream moves on from image to image
    _run(lq_dir, tmp_path / "cfpg", embeddings, mode="cfpg", seed=3)
    assert _noise(tmp_path / "cfpg") == noise
    # the same images, the middle one lost: its rerun starts where the first image left off
    part = tmp_path / "part"
    _run(lq_dir, part, None, mode="baseline", seed=3)
    (part / "chelsea.png").unlink()
    done = _run(lq_dir, part, None, mode="baseline", seed=3)
    assert done["restored"] == 1 and done["resumed"] == 2
    for stem in ("camera", "chelsea", "coffee"):
        assert (part / f"{stem}.png").read_bytes() == (full / f"{stem}.png").read_bytes()


def test_the_restore_job_runs_without_hdclip_or_open_clip(embeddings, lq_dir, tmp_path):
    """The workflow's restore job (`python -m zephir restore --embeddings`), in a process of its
    own: it restores with HD-CLIP's conditioning but never imports open_clip, the HD-CLIP model
    (only its settings, zephir.hdclip.config, standard library, which the config loader reads)
    or the degradation operators (none of which the backbones' environments need)."""
    import subprocess
    import sys

    import zephir.config
    from tests.conftest import REPO

    cfg = tmp_path / "config.yaml"  # as rule restore_config writes it
    full = zephir.config.load(REPO / "config" / "config.yaml")
    zephir.config.dump(zephir.config.subset(full, "datasets", "blind_sets", "restoration",
                                            "weights"), cfg)
    out = tmp_path / "out"
    script = (
        "import sys\n"
        "from zephir.cli import main\n"
        f"code = main(['restore', '--config', {str(cfg)!r}, '--lq', {str(lq_dir)!r},"
        f" '--embeddings', {str(embeddings)!r}, '--mode', 'cfpg', '--out', {str(out)!r},"
        " '--quiet'])\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('open_clip', 'timm')"
        " or (m.startswith(('zephir.hdclip', 'zephir.degrade.ops', 'zephir.training'))"
        " and m not in ('zephir.hdclip', 'zephir.hdclip.config'))))\n"
        "sys.exit(code)\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}, cwd=tmp_path,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"
    done = json.loads(done_path(out, 0, 1).read_text())
    assert done["restored"] == 3 and done["job"]["bridge"] == "embedding"
    record = json.loads((out / "chelsea.json").read_text())
    assert record["norms"]["hidden"]["added_negative"] > 0
    assert record["hdclip"]["sha1"] == done["job"]["hdclip_sha1"]
