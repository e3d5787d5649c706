"""What restoration writes down and when it reuses it, key by key (issue 29: mutation testing
of zephir/restore.py; docs/mutation.md).

The expected records are written out by hand from the docstrings of restore.py, or come from
the other path to the same output (restore_image called directly beside restore_folder), never
from the function under test. A key that a record or a job loses, a setting that stops reaching
the backbone, or a fingerprint that stops depending on something an output depends on makes
one of these fail.
"""
# ruff: noqa: F811 (the fixtures are test_restore's, imported; tests name them as arguments)
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from tests.test_restore import (  # noqa: F401 (fixtures)
    STEPS,
    embeddings,
    folder_scope,
    hd_checkpoint,
    lq_dir,
)
from zephir import conditioning
from zephir import io as zio
from zephir import restore as zrestore
from zephir import weights as zweights
from zephir.backbones import CFG_RATIO, load
from zephir.backbones.tiny import TinyBackbone
from zephir.bridge import Bridge, BridgeOptions
from zephir.guidance import W_ORTH, W_PAR
from zephir.restore import (
    FORMAT_VERSION,
    done_path,
    fingerprint,
    generator_state,
    hdclip_info,
    job_settings,
    restore_folder,
    restore_image,
    set_generator_state,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

STEMS = ["camera", "chelsea", "coffee"]


# --------------------------------------------------------------------------- hdclip_info

def _model(arch: str = "zephir-tiny-rn", random_init: bool = True):
    return SimpleNamespace(cfg=SimpleNamespace(arch=arch, random_init=random_init))


def test_hdclip_info_of_a_trained_checkpoint_says_what_its_metadata_says():
    """The checkpoint's own word on random_init wins over the model's config."""
    info = hdclip_info(_model(random_init=True),
                       {"method": "daclip", "step": 40, "random_init": False}, Path("runs/a"))
    assert info == {"checkpoint": "runs/a", "method": "daclip", "step": 40,
                    "arch": "zephir-tiny-rn", "random_init": False, "trained": True}


def test_hdclip_info_without_a_checkpoint_reads_the_models_config():
    assert hdclip_info(_model("ViT-B-32", random_init=False)) == {
        "checkpoint": None, "method": "hdclip", "step": None, "arch": "ViT-B-32",
        "random_init": False, "trained": False}
    assert hdclip_info(_model(random_init=True))["random_init"] is True


def test_a_checkpoint_that_does_not_say_counts_as_random_init():
    """A record never claims trained CLIP weights its checkpoint does not vouch for."""
    info = hdclip_info(_model(random_init=False), {"method": "hdclip"}, "m")
    assert info["random_init"] is True and info["step"] is None and info["checkpoint"] == "m"


def test_the_embeddings_file_records_the_checkpoints_metadata(hd_checkpoint, embeddings):
    """zephir embed writes hdclip_info of the checkpoint it loaded, plus its weights' sha1."""
    emb = conditioning.read(embeddings)
    meta = json.loads((hd_checkpoint / "config.json").read_text())
    assert emb.hdclip == {"checkpoint": str(hd_checkpoint), "method": meta["method"],
                          "step": meta.get("step"), "arch": "zephir-tiny-rn",
                          "random_init": True, "trained": True,
                          "sha1": zio.file_sha1(hd_checkpoint / "model.safetensors")}


# --------------------------------------------------------------------------- noise state

def test_a_generators_state_survives_its_text_form():
    g = torch.Generator().manual_seed(11)
    torch.randn(5, generator=g)
    text = generator_state(g)
    assert text.isascii()
    expected = torch.randn(7, generator=g)
    again = set_generator_state(torch.Generator().manual_seed(0), text)
    assert torch.equal(torch.randn(7, generator=again), expected)


# --------------------------------------------------------------------------- fingerprint

def test_a_fingerprint_does_not_depend_on_the_order_of_a_jobs_keys():
    a = {"mode": "cfpg", "seed": 1, "w_par": 1.0}
    b = {"w_par": 1.0, "seed": 1, "mode": "cfpg"}
    fp = fingerprint(a, "x", "0" * 40)
    assert fp == fingerprint(b, "x", "0" * 40)
    assert len(fp) == 16 and int(fp, 16) >= 0  # 16 hex digits


def test_a_fingerprint_changes_with_everything_an_output_depends_on():
    job = {"mode": "cfpg", "seed": 1}
    base = {"job": job, "stem": "x", "lq_sha1": "a" * 40, "conditioning_sha1": "c" * 40,
                "noise_state": "state-1"}
    ref = fingerprint(base["job"], base["stem"], base["lq_sha1"],
                      conditioning_sha1=base["conditioning_sha1"], noise_state=base["noise_state"])
    for key, other in [("job", {"mode": "cfpg", "seed": 2}), ("stem", "y"),
                       ("lq_sha1", "b" * 40), ("conditioning_sha1", "d" * 40),
                       ("conditioning_sha1", None), ("noise_state", "state-2"),
                       ("noise_state", None)]:
        changed = {**base, key: other}
        got = fingerprint(changed["job"], changed["stem"], changed["lq_sha1"],
                          conditioning_sha1=changed["conditioning_sha1"],
                          noise_state=changed["noise_state"])
        assert got != ref, key


# --------------------------------------------------------------------------- job_settings

def _job(**kw):
    args = {"backbone_name": "tiny", "settings": {"steps": 2}, "weights": {}, "hdclip_sha1": "h" * 40,
                "mode": "cfpg", "bridge": "prompt", "bridge_options": BridgeOptions(tags=1),
                "w_par": 1.5, "w_orth": 0.25, "cfg_ratio": (0.3, 0.7), "seed": 9, "steps": None, "scale": None,
                "prompt": "a cat", "negative_prompt": "blurry"}
    return job_settings(**{**args, **kw})


def _tiny_common(mode: str) -> dict:
    """The keys of every tiny job, written out from job_settings' docstring."""
    return {"format": FORMAT_VERSION, "backbone": "tiny", "settings": {"steps": 2},
            "defaults": {"steps": 2, "scale": 9.0, "negative_prompt": "", "added_prompt": "",
                         "noise_level": 20},
            "seed_scope": "image", "weights": {}, "mode": mode, "seed": 9, "steps": 2,
            "scale": 9.0, "prompt": "a cat", "negative_prompt": "blurry"}


def test_a_jobs_settings_hold_what_its_mode_uses_and_nothing_else():
    assert TinyBackbone.DEFAULTS.scale == 9.0 and TinyBackbone.DEFAULTS.steps == 8
    bridged = {"hdclip_sha1": "h" * 40, "bridge": "prompt",
               "bridge_options": BridgeOptions(tags=1).to_dict()}
    assert _job(mode="baseline") == _tiny_common("baseline")
    assert _job(mode="cfg") == {**_tiny_common("cfg"), **bridged, "cfg_ratio": [0.3, 0.7]}
    assert _job(mode="cfpg") == {**_tiny_common("cfpg"), **bridged, "w_par": 1.5,
                                 "w_orth": 0.25, "controlnet": "rerun"}
    assert _job(mode="cfpg", controlnet="reuse")["controlnet"] == "reuse"
    assert _job(mode="cfg", cfg_ratio=0.4)["cfg_ratio"] == [0.4, 0.4]
    # explicit steps and scale win over the backbone's defaults; no settings: the defaults
    assert (_job(steps=3, scale=2.5)["steps"], _job(steps=3, scale=2.5)["scale"]) == (3, 2.5)
    bare = _job(settings=None)
    assert bare["settings"] == {} and bare["defaults"]["steps"] == 8 and bare["steps"] == 8


def test_a_job_names_every_weight_its_backbone_reads_by_its_configured_path(tmp_path):
    mine = str(tmp_path / "seesr")
    job = _job(backbone_name="seesr", settings={}, weights={"seesr": mine}, mode="baseline")
    names = ("seesr_repo", "sd2_base", "seesr", "seesr_dape", "seesr_ram", "seesr_bert")
    # the others at their defaults (the registry read without a weights section)
    assert job["weights"] == {k: mine if k == "seesr" else str(zweights.entry(None, k).path)
                              for k in names}
    assert mine != str(zweights.entry(None, "seesr").path)
    assert job["seed_scope"] == "folder" and job["backbone"] == "seesr"


# --------------------------------------------------------------------------- restore_folder

def test_restore_folder_defaults_are_its_documented_ones(lq_dir, embeddings, tmp_path, capsys):
    """Called with only its inputs: the tiny backbone, CFPG with the embedding bridge at the
    paper's weights, seed 0, one shard, no prompt, no progress lines."""
    out = tmp_path / "out"
    done = restore_folder(lq_dir, out, embeddings=embeddings, settings=STEPS)
    assert capsys.readouterr().out == ""
    assert done_path(out, 0, 1) == out / "shard-0-of-1.done.json" and done_path(out, 0, 1).is_file()
    job = done["job"]
    assert (job["backbone"], job["mode"], job["bridge"], job["seed"], job["prompt"],
            job["negative_prompt"], job["controlnet"]) == (
        "tiny", "cfpg", "embedding", 0, "", None, "rerun")
    assert (job["w_par"], job["w_orth"]) == (float(W_PAR), float(W_ORTH))
    assert (done["shard"], done["shards"]) == (0, 1) and [i["stem"] for i in done["images"]] == STEMS


def _direct(lq_dir, emb_path, stem, *, mode, options, **kw):
    """restore_image run by hand: the other path to restore_folder's output of ``stem``."""
    emb = conditioning.read(emb_path)
    backbone = load("tiny", STEPS)
    bridge = Bridge("prompt", backbone, emb.text_embeddings, options)
    lq = zio.load_image(lq_dir / f"{stem}.png").pixels
    return restore_image(lq, backbone=backbone, conditioning=emb.conditioning(stem),
                         bridge=bridge, mode=mode, hdclip=emb.hdclip, **kw)


@pytest.mark.parametrize("mode", ["cfg", "cfpg"])
def test_restore_folder_writes_what_restore_image_makes_of_its_settings(
        mode, lq_dir, embeddings, tmp_path, capsys):
    """Every setting reaches the backbone: the PNG and the record equal restore_image's with
    the same settings (unequal weights, a two-value ratio, a prompt pair, other steps and
    scale, bridge options that change the prompt), plus the keys restore_folder adds."""
    settings = {"w_par": 1.25, "w_orth": 0.4, "cfg_ratio": (0.2, 0.9), "seed": 5, "steps": 1, "scale": 4.0,
                    "prompt": "a photo", "negative_prompt": "ugly", "controlnet": "reuse"}
    options = BridgeOptions(tags=1, present_threshold=0.0)
    out = tmp_path / "out"
    done = restore_folder(lq_dir, out, backbone_name="tiny", settings=STEPS, weights={},
                          embeddings=embeddings, mode=mode, bridge="prompt",
                          bridge_options=options.to_dict(), progress=True, **settings)
    printed = capsys.readouterr().out.splitlines()
    assert printed == [f"restore {mode} shard 0/1: {n}/3 {s}" for n, s in enumerate(STEMS, 1)]
    emb = conditioning.read(embeddings)
    for stem in STEMS:
        image, expected = _direct(lq_dir, embeddings, stem, mode=mode, options=options,
                                  **settings)
        png = zio.encode_png(image)
        assert (out / f"{stem}.png").read_bytes() == png
        record = json.loads((out / f"{stem}.json").read_text())
        lq = lq_dir / f"{stem}.png"
        extra = {"stem": stem, "lq": str(lq), "lq_sha1": zio.file_sha1(lq), "png": f"{stem}.png",
                 "png_sha1": zio.file_sha1(out / f"{stem}.png"), "job": done["job"]}
        fp = record.pop("fingerprint")
        assert record == json.loads(json.dumps({**expected, **extra}))
        cond_sha1 = emb.conditioning(stem).sha1()
        assert fp == fingerprint(done["job"], stem, extra["lq_sha1"],
                                 conditioning_sha1=cond_sha1)
    assert done["job"]["hdclip_sha1"] == emb.hdclip["sha1"] is not None
    assert (done["job"]["steps"], done["job"]["scale"], done["job"]["prompt"],
            done["job"]["negative_prompt"]) == (1, 4.0, "a photo", "ugly")
    assert done["job"]["bridge_options"] == options.to_dict()
    # a BridgeOptions object is taken as it is
    again = restore_folder(lq_dir, out, settings=STEPS, embeddings=embeddings, mode=mode,
                           bridge="prompt", bridge_options=options, progress=True, **settings)
    assert again["resumed"] == 3 and again["restored"] == 0
    assert capsys.readouterr().out.splitlines() == [
        f"restore {mode} shard 0/1: {n}/3 {s} (kept)" for n, s in enumerate(STEMS, 1)]


def test_the_done_record_lists_the_shard_key_by_key(lq_dir, tmp_path):
    out = tmp_path / "out"
    done = restore_folder(lq_dir, out, settings=STEPS, mode="baseline", shard=1, shards=2)
    text = (out / "shard-1-of-2.done.json").read_text()
    assert json.loads(text) == done
    # records and done files: one key a line, sorted (stable diffs of results/ under DVC)
    for written in (text, (out / "chelsea.json").read_text()):
        assert written == json.dumps(json.loads(written), indent=1, sort_keys=True) + "\n"
    seconds = done.pop("seconds")
    assert isinstance(seconds, float) and 0 <= seconds < 600 and seconds == round(seconds, 2)
    assert done == {
        "shard": 1, "shards": 2, "job": job_settings(
            backbone_name="tiny", settings=STEPS, weights=None, hdclip_sha1=None,
            mode="baseline", bridge="embedding", bridge_options=BridgeOptions(), w_par=0, w_orth=0,
            cfg_ratio=0.5, seed=0, steps=None, scale=None, prompt="", negative_prompt=None),
        "images": [{"stem": "chelsea", "png": "chelsea.png", "record": "chelsea.json",
                    "resumed": False, "random_init": True, "hdclip_random_init": None}],
        "refused": {}, "restored": 1, "resumed": 0, "random_init": True,
        "hdclip_random_init": False}


def test_unreadable_inputs_are_refused_by_name_and_the_rest_restored(lq_dir, embeddings,
                                                                     tmp_path, monkeypatch):
    """An index listing a missing file and an undecodable one, both sorted first: each gets
    its exact reason, and the shard goes on to the other images."""
    src = tmp_path / "lq"
    src.mkdir()
    for stem in STEMS:
        (src / f"{stem}.png").write_bytes((lq_dir / f"{stem}.png").read_bytes())
    (src / "a_bad.png").write_bytes(b"not an image")
    index = tmp_path / "index.csv"
    index.write_text("path\nlq/a_absent.png\nlq/a_bad.png\n"
                     + "".join(f"lq/{s}.png\n" for s in STEMS))
    done = restore_folder(index, tmp_path / "out", settings=STEPS, mode="baseline")
    with pytest.raises(zio.ImageError) as bad:
        zio.load_image(src / "a_bad.png")
    assert done["refused"] == {
        "a_absent": f"{src / 'a_absent.png'}: cannot read (No such file or directory)",
        "a_bad": str(bad.value)}
    assert [i["stem"] for i in done["images"]] == STEMS and done["restored"] == 3
    # in a mode with HD-CLIP, an image the embeddings lack: the KeyError's words, unquoted and
    # whole (the file named by a relative path that begins with a letter)
    monkeypatch.chdir(tmp_path)
    Path("Xemb.safetensors").write_bytes(embeddings.read_bytes())
    zio.write_png(src / "zebra.png", np.zeros((32, 32, 3), np.uint8))
    done = restore_folder(src, tmp_path / "cfg", settings=STEPS, mode="cfg",
                          embeddings="Xemb.safetensors", bridge="prompt")
    assert done["refused"]["zebra"] == (
        "Xemb.safetensors: no HD-CLIP embedding of image 'zebra'; recompute it with "
        "`zephir embed` over the same LQ images")


def test_a_changed_lq_file_is_redone_even_without_hdclip(lq_dir, tmp_path):
    src = tmp_path / "lq"
    src.mkdir()
    for stem in STEMS:
        (src / f"{stem}.png").write_bytes((lq_dir / f"{stem}.png").read_bytes())
    out = tmp_path / "out"
    restore_folder(src, out, settings=STEPS, mode="baseline")
    zio.write_png(src / "chelsea.png", np.full((32, 32, 3), 200, np.uint8))
    done = restore_folder(src, out, settings=STEPS, mode="baseline")
    assert done["restored"] == 1 and [i["resumed"] for i in done["images"]] == [True, False, True]
    assert json.loads((out / "chelsea.json").read_text())["lq_sha1"] == zio.file_sha1(
        src / "chelsea.png")


def test_a_changed_conditioning_of_one_image_redoes_that_image(lq_dir, embeddings, tmp_path):
    """The same LQ files and HD-CLIP, one image's conditioning recomputed differently (another
    embeddings file): only that image is redone."""
    emb = conditioning.read(embeddings)
    images = dict(emb.images)
    c = images["coffee"]
    images["coffee"] = conditioning.Conditioning(
        semantic=c.semantic, embeddings=c.embeddings, present=c.present,
        levels=c.levels + 1.0, types=c.types)
    other = tmp_path / "other.safetensors"
    conditioning.write(other, images, texts=emb.texts, text=emb.text, hdclip=emb.hdclip,
                       lq_sha1=emb.lq_sha1)
    out = tmp_path / "out"
    restore_folder(lq_dir, out, settings=STEPS, mode="cfg", embeddings=embeddings,
                   bridge="prompt")
    done = restore_folder(lq_dir, out, settings=STEPS, mode="cfg", embeddings=other,
                          bridge="prompt")
    assert [i["resumed"] for i in done["images"]] == [True, True, False]


def test_folder_scope_redoes_what_follows_an_image_that_drew_more_noise(folder_scope, lq_dir,
                                                                       tmp_path):
    """One generator for the shard: when the first image becomes larger it draws more noise,
    so the start noise of every later image moves; they are redone, and the shard equals a
    fresh run of the changed set byte for byte."""
    src = tmp_path / "lq"
    src.mkdir()
    for stem in STEMS:
        (src / f"{stem}.png").write_bytes((lq_dir / f"{stem}.png").read_bytes())
    out = tmp_path / "out"
    restore_folder(src, out, settings=STEPS, mode="baseline", seed=2)
    zio.write_png(src / "camera.png", np.full((48, 48, 3), 90, np.uint8))
    done = restore_folder(src, out, settings=STEPS, mode="baseline", seed=2)
    assert done["restored"] == 3
    fresh = tmp_path / "fresh"
    restore_folder(src, fresh, settings=STEPS, mode="baseline", seed=2)
    for stem in STEMS:
        assert (out / f"{stem}.png").read_bytes() == (fresh / f"{stem}.png").read_bytes()


def test_folder_scope_redoes_an_image_whose_record_lacks_the_state_after_it(folder_scope,
                                                                          lq_dir, tmp_path):
    """A record without ``noise_state_after`` (written before it existed) cannot resume the
    stream: that image is redone, with the bytes of an uninterrupted run."""
    out = tmp_path / "out"
    restore_folder(lq_dir, out, settings=STEPS, mode="baseline", seed=2)
    before = {s: (out / f"{s}.png").read_bytes() for s in STEMS}
    path = out / "camera.json"
    record = json.loads(path.read_text())
    del record["noise_state_after"]
    path.write_text(json.dumps(record))
    done = restore_folder(lq_dir, out, settings=STEPS, mode="baseline", seed=2)
    assert [i["resumed"] for i in done["images"]] == [False, True, True]
    assert {s: (out / f"{s}.png").read_bytes() for s in STEMS} == before


def test_restore_folder_loads_its_backbone_once_with_its_settings_and_weights(
        lq_dir, tmp_path, monkeypatch):
    """load() gets the job's backbone name, settings, weights and device, once a shard; the
    job records the weights' configured paths (SeeSR's six, one of them set)."""
    calls = []

    def recording_load(name, settings, weights, device):
        calls.append((name, settings, weights, device))
        return load("tiny", STEPS)

    monkeypatch.setattr(zrestore, "load", recording_load)
    weights = {"seesr": str(tmp_path / "seesr")}
    done = restore_folder(lq_dir, tmp_path / "out", backbone_name="seesr",
                          settings={"steps": 1}, weights=weights, mode="baseline",
                          device="cpu")
    assert calls == [("seesr", {"steps": 1}, weights, "cpu")]
    assert done["job"]["weights"]["seesr"] == weights["seesr"]
    assert done["job"]["settings"] == {"steps": 1} and done["job"]["steps"] == 1


# --------------------------------------------------------------------------- restore_image

class _Recording(TinyBackbone):
    """The tiny backbone, recording what restore() receives; its prompts carry a tag read from
    the image, as SeeSR's carry DAPE's tags of the LQ image."""

    calls: list

    def compose_prompts(self, lq=None, prompt="", negative_prompt=None):
        positive, negative = super().compose_prompts(lq, prompt, negative_prompt)
        return f"{positive}, brightness {int(lq.mean())}", negative

    def restore(self, lq, **kw):
        self.calls.append(kw)
        return super().restore(lq, **kw)


@pytest.fixture()
def recording(embeddings, lq_dir):
    backbone = load("tiny", STEPS)
    backbone.__class__ = _Recording
    backbone.calls = []
    emb = conditioning.read(embeddings)
    lq = zio.load_image(lq_dir / "coffee.png").pixels
    return SimpleNamespace(backbone=backbone, emb=emb, cond=emb.conditioning("coffee"), lq=lq,
                           bridge=Bridge("prompt", backbone, emb.text_embeddings))


def _same_pair(a, b) -> bool:
    return all((x is None and y is None) or torch.equal(x, y)
               for x, y in [(a.hidden, b.hidden), (a.pooled, b.pooled), (a.eos, b.eos)])


@pytest.mark.parametrize("mode", ["baseline", "cfg", "cfpg"])
def test_restore_image_record_and_backbone_call_written_out_by_hand(mode, recording):
    """The record, key by key (restore_image's docstring), and the backbone's call, argument by
    argument, with settings unlike every default."""
    r = recording
    g = torch.Generator().manual_seed(5)
    seeded = g.get_state().numpy().tobytes()
    out, record = restore_image(
        r.lq, backbone=r.backbone, conditioning=r.cond, bridge=r.bridge, mode=mode,
        w_par=1.25, w_orth=0.4, cfg_ratio=(0.2, 0.9), seed=5, generator=g, steps=1, scale=4.0,
        prompt="a cup", negative_prompt="ugly", hdclip={"arch": "x"}, controlnet="reuse")
    positive = f"a cup, brightness {int(r.lq.mean())}"
    expected = {"mode": mode, "seed": 5, "steps": 1, "scale": 4.0, "user_prompt": "a cup",
                "prompt": positive, "negative_prompt": "ugly",
                "noise_state_sha1": hashlib.sha1(seeded).hexdigest(),
                "backbone": "tiny", "random_init": True,
                "weights": {"tiny": "built in code, torch.manual_seed(0)"},
                "defaults": {"steps": 2, "scale": 9.0, "negative_prompt": "",
                             "added_prompt": "", "noise_level": 20},
                "size": {"lq": [32, 32], "output": [128, 128]}}
    hd_pair = None
    if mode != "baseline":
        hd_pair, bridge_record = r.bridge.pair(r.cond, prompt=positive, negative_prompt="ugly")
        assert bridge_record["hd_negative_prompt"].startswith("ugly")
        expected.update(hdclip={"arch": "x"}, degradation=r.cond.describe(), **bridge_record)
    if mode == "cfg":
        expected["cfg_ratio"] = [0.2, 0.9]
    if mode == "cfpg":
        expected.update(w_par=1.25, w_orth=0.4, controlnet="reuse")
    assert record == expected
    (call,) = r.backbone.calls
    got_pair = call.pop("hd_pair")
    assert (got_pair is None) if hd_pair is None else _same_pair(got_pair, hd_pair)
    assert call == {"prompt": positive, "negative_prompt": "ugly", "mode": mode, "w_par": 1.25,
                    "w_orth": 0.4, "cfg_ratio": (0.2, 0.9), "steps": 1, "scale": 4.0,
                    "generator": g, "controlnet": "reuse"}
    assert out.shape == (128, 128, 3)


def test_restore_image_defaults_are_its_documented_ones(recording):
    """CFPG at the paper's weights, seed 0 (a generator made from it), no prompt, the backbone's
    steps, scale and negative prompt, ControlNet rerun."""
    r = recording
    _, record = restore_image(r.lq, backbone=r.backbone, conditioning=r.cond, bridge=r.bridge)
    (call,) = r.backbone.calls
    assert (record["mode"], record["seed"], record["user_prompt"], record["steps"],
            record["scale"], record["negative_prompt"], record["controlnet"]) == (
        "cfpg", 0, "", 2, 9.0, "", "rerun")
    assert (record["w_par"], record["w_orth"]) == (W_PAR, W_ORTH) == (call["w_par"], call["w_orth"])
    assert call["cfg_ratio"] == CFG_RATIO and call["controlnet"] == "rerun"
    seeded = torch.Generator().manual_seed(0).get_state().numpy().tobytes()
    assert record["noise_state_sha1"] == hashlib.sha1(seeded).hexdigest()


def test_restore_image_needs_both_conditioning_and_bridge(recording):
    r = recording
    message = ("mode 'cfg' needs the image's HD-CLIP conditioning and a bridge "
               "(conditioning=, bridge=)")
    for kw in ({"conditioning": r.cond}, {"bridge": r.bridge}, {}):
        with pytest.raises(ValueError) as err:
            restore_image(r.lq, backbone=r.backbone, mode="cfg", **kw)
        assert str(err.value) == message
    with pytest.raises(ValueError) as err:
        restore_image(r.lq, backbone=r.backbone, mode="cfgp")
    assert str(err.value) == "mode: expected one of baseline, cfg, cfpg, got 'cfgp'"
    assert r.backbone.calls == []


def test_a_shard_with_no_usable_image_is_an_error_listing_every_reason(tmp_path):
    src = tmp_path / "lq"
    src.mkdir()
    (src / "a.png").write_bytes(b"junk")
    (src / "b.png").write_bytes(b"junk too")
    reasons = []
    for name in ("a", "b"):
        with pytest.raises(zio.ImageError) as err:
            zio.load_image(src / f"{name}.png")
        reasons.append(f"{name}: {err.value}")
    with pytest.raises(ValueError) as err:
        restore_folder(src, tmp_path / "out", settings=STEPS, mode="baseline")
    assert str(err.value) == f"no usable image among 2: {'; '.join(reasons)}"
    assert not done_path(tmp_path / "out", 0, 1).exists()


def test_restore_folders_argument_errors_word_for_word(lq_dir, embeddings, tmp_path):
    out = tmp_path / "out"
    cases = [
        ({"mode": "cfgp"}, "mode: expected one of baseline, cfg, cfpg, got 'cfgp'"),
        ({"bridge": "clip", "embeddings": embeddings},
         "bridge: expected one of embedding, prompt, got 'clip'"),
        ({"mode": "cfg"}, ("mode 'cfg' needs the set's HD-CLIP embeddings (embeddings=; "
                           "written by `zephir embed`)")),
    ]
    for kw, message in cases:
        with pytest.raises(ValueError) as err:
            restore_folder(lq_dir, out, settings=STEPS, **kw)
        assert str(err.value) == message
    assert not out.exists()
