"""Backbone adapters: the tiny x4 upscaler in three modes, the diffusers folder adapter, and the
clear errors of the backbones whose weights or environments are not here."""
from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
import yaml

from tests.conftest import REPO
from zephir.backbones import BACKBONES, CFG_RATIO, canonical, load
from zephir.backbones import tiny as tiny_mod
from zephir.backbones.base import Backbone, Defaults, TextEmbeds, join_prompt

STEPS = 3
PROMPT, NEGATIVE = "a photo of an astronaut", "blurry, noisy"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny() -> Backbone:
    return load("tiny", {"steps": STEPS})


@pytest.fixture(scope="module")
def lq(astronaut) -> np.ndarray:
    return cv2.resize(astronaut, (32, 32), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def hd_pair(tiny) -> TextEmbeds:
    return tiny.encode_pair("heavy blur, moderate noise", "astronaut, space, rocket")


@pytest.fixture(scope="module")
def baseline(tiny, lq) -> np.ndarray:
    return tiny.restore(lq, prompt=PROMPT, negative_prompt=NEGATIVE, mode="baseline", seed=3)


def _restore(backbone, lq, **kw):
    return backbone.restore(lq, prompt=PROMPT, negative_prompt=NEGATIVE, seed=3, **kw)


# --------------------------------------------------------------------------- tiny

def test_tiny_restores_32_px_to_128_px_in_every_mode(tiny, lq, hd_pair, baseline):
    assert tiny.random_init and tiny.record()["random_init"] is True
    assert tiny.scale_factor == 4
    for mode in ("cfg", "cfpg"):
        out = _restore(tiny, lq, mode=mode, hd_pair=hd_pair)
        assert out.shape == (128, 128, 3) and out.dtype == np.uint8
    assert baseline.shape == (128, 128, 3) and baseline.dtype == np.uint8
    assert baseline.std() > 1  # an image, not a constant


def test_cfpg_at_zero_weights_is_byte_identical_to_the_baseline(tiny, lq, hd_pair, baseline):
    out = _restore(tiny, lq, mode="cfpg", hd_pair=hd_pair, w_par=0.0, w_orth=0.0)
    assert np.array_equal(out, baseline)


def test_cfpg_with_weights_follows_the_hd_pair(tiny, lq, hd_pair, baseline):
    out = _restore(tiny, lq, mode="cfpg", hd_pair=hd_pair)
    assert np.abs(out.astype(int) - baseline).mean() > 0.5
    other = tiny.encode_pair("slight jpeg artifacts", "cat, grass")
    out_other = _restore(tiny, lq, mode="cfpg", hd_pair=other)
    assert not np.array_equal(out, out_other)


def test_cfg_mode_at_ratio_zero_is_the_baseline_and_mixes_otherwise(tiny, lq, hd_pair,
                                                                    baseline):
    assert np.array_equal(_restore(tiny, lq, mode="cfg", hd_pair=hd_pair, cfg_ratio=0.0),
                          baseline)
    assert not np.array_equal(_restore(tiny, lq, mode="cfg", hd_pair=hd_pair), baseline)


def test_same_seed_same_bytes_other_seed_other_bytes(tiny, lq, hd_pair, baseline):
    assert np.array_equal(_restore(tiny, lq, mode="baseline"), baseline)
    out = _restore(tiny, lq, mode="cfpg", hd_pair=hd_pair)
    assert np.array_equal(_restore(tiny, lq, mode="cfpg", hd_pair=hd_pair), out)
    other = tiny.restore(lq, prompt=PROMPT, negative_prompt=NEGATIVE, seed=4)
    assert not np.array_equal(other, baseline)


def test_the_unet_comes_back_after_cfpg_even_on_error(tiny, lq, hd_pair, monkeypatch):
    unet = tiny.pipe.unet
    _restore(tiny, lq, mode="cfpg", hd_pair=hd_pair)
    assert tiny.pipe.unet is unet

    def boom(*args, **kwargs):
        raise RuntimeError("interrupted")

    monkeypatch.setattr(type(tiny.pipe), "__call__", boom)
    with pytest.raises(RuntimeError, match="interrupted"):
        _restore(tiny, lq, mode="cfpg", hd_pair=hd_pair)
    assert tiny.pipe.unet is unet


def test_modes_are_checked(tiny, lq):
    with pytest.raises(ValueError, match="mode"):
        _restore(tiny, lq, mode="apg")
    with pytest.raises(ValueError, match="hd_pair"):
        _restore(tiny, lq, mode="cfpg")
    with pytest.raises(ValueError, match="uint8"):
        _restore(tiny, lq.astype(np.float32), mode="baseline")


def test_odd_sizes_come_back_exactly_four_times_larger(tiny, lq):
    out = _restore(tiny, np.ascontiguousarray(lq[:27, :30]), mode="baseline")
    assert out.shape == (27 * 4, 30 * 4, 3)


def test_the_text_encoder_sees_real_token_ids(tiny):
    emb = tiny.encode_prompt(["a cat", "a dog", "a cat on a red sofa"])
    assert emb.hidden.shape == (3, 77, tiny_mod.TEXT_WIDTH)
    assert not torch.allclose(emb.hidden[0], emb.hidden[1])
    # <start> a cat <end>: the end token sits at position 3; longer prompts end later.
    assert emb.eos.tolist()[0] == 3 and emb.eos[2] > emb.eos[0]
    ids = tiny.pipe.tokenizer("squirrel").input_ids
    assert len(set(ids)) == len(ids) and ids[0] == tiny_mod.VOCAB - 2


def test_tiny_construction_is_seeded(tiny):
    again = tiny_mod.build_pipeline(tiny_mod.SEED)
    for a, b in zip(tiny.pipe.unet.state_dict().values(), again.unet.state_dict().values(),
                    strict=True):
        assert torch.equal(a, b)
    other = tiny_mod.build_pipeline(tiny_mod.SEED + 1)
    assert not torch.equal(next(iter(other.unet.parameters())),
                           next(iter(tiny.pipe.unet.parameters())))


def test_compose_prompts_adds_the_repository_words():
    defaults = Defaults(steps=1, scale=2.0, negative_prompt="lowres",
                        added_prompt="clean, 8k")
    backbone = object.__new__(BACKBONES["tiny"])
    backbone.defaults = defaults
    assert backbone.compose_prompts(None, "a cat") == ("a cat, clean, 8k", "lowres")
    assert backbone.compose_prompts(None, "", "noisy") == ("clean, 8k", "noisy")
    assert join_prompt("a, ", "", " b") == "a, b"


def test_seesr_prompt_is_joined_character_for_character_as_test_seesr_py():
    """test_seesr.py 142 and 185: f"{tags}, {prompt}," + added_prompt (no space after the
    second comma; an empty prompt leaves ", ,")."""
    from zephir.backbones.seesr import SeeSRBackbone

    class Tagged(SeeSRBackbone):
        def tags(self, lq):
            return "dog, grass"

    backbone = object.__new__(Tagged)
    backbone.defaults = SeeSRBackbone.DEFAULTS
    lq = np.zeros((8, 8, 3), np.uint8)
    pos, neg = backbone.compose_prompts(lq)
    assert pos == "dog, grass, ,clean, high-resolution, 8k"
    assert neg == "dotted, noise, blur, lowres, smooth"
    assert (backbone.compose_prompts(lq, "a cat")[0]
            == "dog, grass, a cat,clean, high-resolution, 8k")


def test_text_embeds_mix_is_the_papers_cfg_variant():
    g = torch.Generator().manual_seed(0)
    text = TextEmbeds(torch.randn(2, 5, 4, generator=g), torch.randn(2, 3, generator=g))
    hd = TextEmbeds(torch.randn(2, 5, 4, generator=g), torch.randn(2, 3, generator=g))
    mixed = text.mix(hd, (0.25, 0.75))
    assert torch.allclose(mixed.hidden[0], 0.75 * text.hidden[0] + 0.25 * hd.hidden[0])
    assert torch.allclose(mixed.hidden[1], 0.25 * text.hidden[1] + 0.75 * hd.hidden[1])
    assert torch.allclose(mixed.pooled[1], 0.25 * text.pooled[1] + 0.75 * hd.pooled[1])
    assert CFG_RATIO == (0.5, 0.5)


# --------------------------------------------------------------------------- registry, settings

def test_registry_names_and_settings():
    assert set(BACKBONES) == {"tiny", "sd-x4-upscaler", "faithdiff", "seesr", "pasd"}
    assert canonical("sd_x4_upscaler") == "sd-x4-upscaler"
    with pytest.raises(ValueError, match="unknown backbone 'esrgan'"):
        canonical("esrgan")
    assert BACKBONES["seesr"].DEFAULTS.steps == 50 and BACKBONES["seesr"].DEFAULTS.scale == 5.5
    assert BACKBONES["seesr"].DEFAULTS.negative_prompt == "dotted, noise, blur, lowres, smooth"
    assert BACKBONES["pasd"].DEFAULTS.steps == 20 and BACKBONES["pasd"].DEFAULTS.scale == 9.0
    assert BACKBONES["faithdiff"].DEFAULTS.steps == 20
    assert BACKBONES["faithdiff"].DEFAULTS.scale == 5.0
    up = BACKBONES["sd-x4-upscaler"].DEFAULTS
    assert (up.steps, up.scale, up.negative_prompt) == (75, 9.0, "")
    with pytest.raises(ValueError, match="unknown setting.*stepz"):
        BACKBONES["pasd"].resolve_defaults({"stepz": 3})
    got = BACKBONES["seesr"].resolve_defaults({"steps": 10, "process_size": 256,
                                               "dtype": "float16"})
    assert got.steps == 10 and got.extra["process_size"] == 256 and got.scale == 5.5


# --------------------------------------------------------------------------- sd-x4-upscaler

def test_sd_x4_upscaler_loads_a_saved_stand_in_and_restores_like_the_tiny(
        tmp_path, tiny, lq, baseline):
    folder = tiny_mod.save_standin(tmp_path / "upscaler")
    backbone = load("sd_x4_upscaler", {"steps": STEPS}, {"sd_x4_upscaler": str(folder)})
    assert backbone.name == "sd-x4-upscaler" and backbone.random_init
    assert backbone.record()["weights"] == {"sd_x4_upscaler": str(folder)}
    assert np.array_equal(_restore(backbone, lq, mode="baseline"), baseline)


def test_sd_x4_upscaler_missing_folder_names_key_and_path(tmp_path):
    missing = tmp_path / "nowhere" / "stable-diffusion-x4-upscaler"
    with pytest.raises(FileNotFoundError) as err:
        load("sd-x4-upscaler", {}, {"sd_x4_upscaler": str(missing)})
    assert "weights.sd_x4_upscaler" in str(err.value) and str(missing) in str(err.value)
    assert "hf download stabilityai/stable-diffusion-x4-upscaler" in str(err.value)


# FaithDiff: tests/backbones/test_faithdiff.py


# --------------------------------------------------------------------------- seesr, pasd

@pytest.mark.parametrize("name,key,probe,series", [
    ("seesr", "seesr_repo", "pipelines/pipeline_seesr.py", "0.21"),
    ("pasd", "pasd_repo", "pasd/pipelines/pipeline_pasd.py", "0.29"),
])
def test_upstream_backbones_fail_clearly(tmp_path, name, key, probe, series):
    with pytest.raises(FileNotFoundError) as err:
        load(name, {}, {key: str(tmp_path / "absent")})
    assert f"weights.{key}" in str(err.value) and "git clone" in str(err.value)

    checkout = tmp_path / "checkout"
    (checkout / "README.md").parent.mkdir(parents=True)
    (checkout / "README.md").write_text("not the code\n")
    with pytest.raises(FileNotFoundError, match=f"not a checkout.*{probe}"):
        load(name, {}, {key: str(checkout)})

    (checkout / probe).parent.mkdir(parents=True, exist_ok=True)
    (checkout / probe).write_text("# stand-in\n")
    try:
        with pytest.raises(RuntimeError) as err:
            load(name, {}, {key: str(checkout)})
    finally:
        sys.path.remove(str(checkout.resolve()))
    msg = str(err.value)
    assert f"diffusers {series}.x" in msg and "0.42" in msg
    assert f"workflow/envs/{name}.yaml" in msg


@pytest.mark.parametrize("name,pin", [("seesr", "diffusers==0.21.0"),
                                      ("pasd", "diffusers==0.29.2")])
def test_environment_files_pin_old_diffusers_and_leave_zephir_uninstalled(name, pin):
    env = yaml.safe_load((REPO / "workflow" / "envs" / f"{name}.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert pin in pip
    assert not any(line.startswith("-e") or "zephir" in line for line in pip)
    assert any(line.startswith("open_clip_torch") for line in pip)


def test_guidance_and_backbones_import_without_diffusers():
    """What the old-diffusers environments rely on: zephir.guidance needs torch alone, and
    the registry and every adapter import without diffusers or transformers."""
    code = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('diffusers', 'transformers'):
            raise ImportError('blocked ' + name)
sys.meta_path.insert(0, Block())
import zephir.guidance, zephir.backbones, zephir.backbones.seesr, zephir.backbones.pasd
print(sorted(zephir.backbones.BACKBONES))
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().replace("'", '"'))[0] == "faithdiff"


def test_paper_config_states_each_backbones_repository_settings():
    """The paper config writes out the settings each backbone's repository ships, and they are
    the adapters' defaults (a config that drifts from them is a deliberate change)."""
    from zephir import config as zconfig
    from zephir.backbones import BACKBONES

    from ..conftest import REPO

    settings = zconfig.load(REPO / "config" / "paper.yaml")["restoration"]["settings"]
    assert set(settings) == {"seesr", "pasd", "faithdiff"}
    for name, given in settings.items():
        defaults = BACKBONES[name].resolve_defaults({}).to_dict()
        assert {k: defaults[k] for k in given} == given, name
    assert settings["seesr"]["steps"] == 50 and settings["seesr"]["scale"] == 5.5
    assert settings["pasd"]["steps"] == 20 and settings["faithdiff"]["scale"] == 5.0


def test_the_tiny_tokenizer_tables_are_open_clips_without_importing_it():
    """The byte table in its order (the vocabulary's first 256 ids) and the BPE file equal
    open_clip's own (the reference), and tokenising gives open_clip's ids."""
    import open_clip.tokenizer as oc

    assert list(tiny_mod.bytes_to_unicode().items()) == list(oc.bytes_to_unicode().items())
    assert str(tiny_mod.bpe_file()) == oc.default_bpe()
    ids = tiny_mod.clip_tokenizer()("a photo of a cat, heavy blur").input_ids
    assert ids == oc.SimpleTokenizer()("a photo of a cat, heavy blur")[0][:len(ids)].tolist()


def test_each_backbone_runs_in_an_environment_that_pins_what_its_adapter_requires():
    """The environment each restore job runs in (Backbone.environment, the workflow's conda:)
    exists, and for SeeSR and PASD pins the diffusers series the adapter checks for
    (require_diffusers) and a torch of the release upstream names (SeeSR requirements: 2.0.1;
    PASD: 2.3.1; FaithDiff: 2.4.0)."""
    from zephir.backbones import faithdiff, pasd, seesr

    for name, cls in BACKBONES.items():
        assert (REPO / cls.environment).is_file(), (name, cls.environment)
    for module, torch_pin in ((seesr, "2.0.1"), (pasd, "2.3.1"), (faithdiff, "2.4.0")):
        cls = BACKBONES[module.__name__.rsplit(".", 1)[1]]
        assert cls.environment == module.ENV != "workflow/envs/zephir.yaml"
        env = yaml.safe_load((REPO / cls.environment).read_text())
        pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
        diffusers = [p for p in pip if p.startswith("diffusers==")]
        assert len(diffusers) == 1 and diffusers[0].removeprefix("diffusers==").startswith(
            module.DIFFUSERS + "."), diffusers
        assert f"torch=={torch_pin}" in pip
    assert BACKBONES["tiny"].environment == "workflow/envs/zephir.yaml"
