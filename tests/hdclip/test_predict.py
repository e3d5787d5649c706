"""`zephir predict`: JSON schema, native values, any image size, the random-init label."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from zephir import cli
from zephir import io as zio
from zephir.checkpoints import load_pretrained
from zephir.degrade import levels, ops
from zephir.hdclip import predict
from zephir.hdclip.model import HDCLIPConfig
from zephir.training import TrainConfig, train


@pytest.fixture(scope="module")
def checkpoint(labelled, tmp_path_factory):
    out = tmp_path_factory.mktemp("ckpt")
    train(labelled, out, HDCLIPConfig(arch="zephir-tiny-rn"),
          TrainConfig(steps=3, batch_size=8, eval_every=100, checkpoint_every=100),
          progress=False)
    return out


def test_crops_cover_any_size():
    big = np.zeros((300, 500, 3), np.uint8)
    c = predict.crops(big, 128)
    assert c.shape == (9, 3, 128, 128) and c.dtype == torch.uint8
    small = np.arange(50 * 60 * 3, dtype=np.uint8).reshape(50, 60, 3)
    c = predict.crops(small, 128)
    assert c.shape == (1, 3, 128, 128)
    assert torch.equal(c[0, :, :50, :60], torch.from_numpy(small).permute(2, 0, 1))
    assert predict.crops(np.zeros((128, 128, 3), np.uint8), 128).shape[0] == 1


def test_json_schema_and_round_trip(checkpoint, astronaut, tmp_path, capsys):
    rng = np.random.default_rng(0)
    files = []
    for kind, level in (("blur", 60.0), ("noise", 80.0), ("jpeg", 90.0)):
        value, _ = levels.realizable(kind, level)
        img = ops.apply(zio.to_float(astronaut[:200, :260]), {kind: value}, rng)
        files.append(tmp_path / f"{kind}.png")
        zio.write_png(files[-1], zio.to_uint8(img))
    zio.write_png(tmp_path / "tiny.png", astronaut[:40, :40])
    files.append(tmp_path / "tiny.png")
    assert cli.main(["predict", "--checkpoint", str(checkpoint), "--json",
                     *map(str, files)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == len(files)
    for path, line in zip(files, lines):
        r = json.loads(line)
        assert r["image"] == str(path)
        assert set(r["degradations"]) == {"blur", "noise", "jpeg", "downsample"}
        assert r["random_init"] is True
        best = max(r["degradations"], key=lambda t: r["degradations"][t]["present"])
        assert r["type"] == best
        for kind, d in r["degradations"].items():
            assert set(d) == {"present", "level", "value"}
            assert 0 <= d["present"] <= 1 and 0 <= d["level"] <= 100
            assert d["value"] == pytest.approx(levels.denormalize(kind, d["level"]), abs=1e-3)


def test_batching_does_not_change_results(checkpoint, astronaut):
    model, _ = load_pretrained(checkpoint)
    imgs = [astronaut[:300, :300], astronaut[100:228, 50:178], astronaut[:64, :64]]
    one = predict.estimate(model, imgs, batch=1)
    many = predict.estimate(model, imgs, batch=64)
    for a, b in zip(one, many):
        for t in a["degradations"]:
            assert a["degradations"][t]["level"] == pytest.approx(b["degradations"][t]["level"],
                                                                  abs=0.02)


def test_table_output_labels_random_init(checkpoint, photo_dir, capsys):
    assert cli.main(["predict", "--checkpoint", str(checkpoint),
                     str(photo_dir / "chelsea.png")]) == 0
    out = capsys.readouterr().out
    assert "chelsea.png" in out and "trained from random init" in out


def test_bad_checkpoint_is_a_clear_error(tmp_path, photo_dir, capsys):
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"not a checkpoint")
    assert cli.main(["predict", "--checkpoint", str(bad), str(photo_dir / "camera.png")]) == 2
    assert f"{bad}: not a readable zephir checkpoint" in capsys.readouterr().err
    assert cli.main(["predict", "--checkpoint", str(tmp_path / "none.pt"),
                     str(photo_dir / "camera.png")]) == 2
    assert f"{tmp_path / 'none.pt'}: no such model folder" in capsys.readouterr().err


def test_unreadable_files_are_reported_and_the_others_predicted(checkpoint, photo_dir, tmp_path,
                                                               capsys):
    """One bad file among several: each bad one named on stderr, the good ones predicted, and a
    non-zero exit at the end."""
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    missing = tmp_path / "missing.jpg"
    good = [photo_dir / "camera.png", photo_dir / "chelsea.png"]
    assert cli.main(["predict", "--checkpoint", str(checkpoint), "--json", str(good[0]),
                     str(broken), str(missing), str(good[1])]) == 1
    out, err = capsys.readouterr()
    assert [json.loads(line)["image"] for line in out.strip().splitlines()] == list(map(str, good))
    assert str(broken) in err and str(missing) in err and "2 of 4 file(s)" in err
    assert "No pretrained weights" not in err  # the weights come from the checkpoint


def test_embed_gives_both_branches_and_agrees_with_estimate(checkpoint, astronaut):
    """The restoration entry point: unit semantic and per-type embeddings of a full-size image,
    through the crops of `zephir predict`, whose levels are the ones `estimate` reports."""
    import torch

    model, _ = load_pretrained(checkpoint)
    imgs = [astronaut[:300, :260], astronaut[:90, :90]]
    embs = predict.embed(model, imgs)
    d, k = model.embed_dim, len(model.cfg.types)
    for e, r in zip(embs, predict.estimate(model, imgs)):
        assert e.semantic.shape == e.degradation.shape == (d,)
        assert e.embeddings.shape == (k, d) and e.levels.shape == e.present.shape == (k,)
        assert torch.allclose(e.semantic.norm(), torch.tensor(1.0), atol=1e-5)
        assert torch.allclose(e.embeddings.norm(dim=-1), torch.ones(k), atol=1e-5)
        for i, t in enumerate(model.cfg.types):
            assert r["degradations"][t]["level"] == pytest.approx(float(e.levels[i]), abs=0.01)
    # the semantic embedding of one crop is the frozen CLIP's (no controller: plain CLIP)
    crop = astronaut[:128, :128]
    x = torch.from_numpy(crop).permute(2, 0, 1)[None].float().div(255)
    with torch.no_grad():
        ref = torch.nn.functional.normalize(model.clip.encode_image(model.normalize(x)), dim=-1)
    assert torch.allclose(predict.embed(model, [crop])[0].semantic, ref[0], atol=1e-5)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_named_not_blamed_on_the_checkpoint(checkpoint, tmp_path,
                                                                   capsys):
    """A config with resources.gpu > 0 makes the rules pass --device cuda; on a machine without
    one the error says so, instead of calling a good checkpoint unreadable."""
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("path\n")
    assert cli.main(["evaluate", "--checkpoint", str(checkpoint), "--manifest", str(manifest),
                     "--out", str(tmp_path / "eval"), "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert "'cuda' asks for CUDA, and torch sees no CUDA device" in err
    assert "resources.gpu" in err and "not a readable" not in err
    assert not (tmp_path / "eval").exists()
