"""FaithDiff as its test scripts run it, checked on a stand-in checkout.

``tests/backbones/faithdiff_checkout`` has the import paths and call signatures of FaithDiff's
code (github.com/JyChen9811/FaithDiff) with tiny random-init diffusers/transformers models and
records what it receives; the SDXL folder, the fp16-fix VAE and FaithDiff.bin are written here
at random init. Upstream references are to FaithDiff at f11af6c: ``test_wo_llava.py`` (the
script), ``FaithDiff/create_FaithDiff_model.py`` (the load), ``pipeline_FaithDiff_tlc.py``.
"""
from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from zephir.backbones import faithdiff as fd
from zephir.backbones import load
from zephir.backbones.base import checkout_on_path
from zephir.guidance.wrap import CFPGDenoiser

CHECKOUT = Path(__file__).parent / "faithdiff_checkout"
STEPS = 2
UP = 2
PROMPT = "a photo of an astronaut"
LQ_W, LQ_H = 13, 11
"""x2: 26 x 22, which check_image_size pads to 32 x 24."""

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _forget_checkout_modules() -> None:
    for name in [m for m in sys.modules if m.split(".")[0] in ("FaithDiff", "utils")]:
        del sys.modules[name]


@pytest.fixture(scope="module")
def standin():
    """The stand-in checkout first on sys.path, its modules imported afresh; removed after."""
    _forget_checkout_modules()
    checkout_on_path(CHECKOUT, backbone="faithdiff", probe=fd.PIPELINE)
    import FaithDiff.models.unet_2d_condition_vae_extension as unet_mod
    import FaithDiff.pipelines.pipeline_FaithDiff_tlc as pipe_mod
    import utils.color_fix as color_mod
    import utils.image_process as image_mod

    yield {"unet": unet_mod.RECORD, "pipe": pipe_mod.RECORD, "color": color_mod.RECORD,
           "image": image_mod.RECORD, "pipe_mod": pipe_mod, "unet_mod": unet_mod}
    sys.path.remove(str(CHECKOUT.resolve()))
    _forget_checkout_modules()


def _clear(records: dict) -> None:
    for name in ("unet", "pipe", "color", "image"):
        for value in records[name].values():
            value.clear()


@pytest.fixture(scope="module")
def paths(tmp_path_factory, standin) -> dict:
    """Random-init weights where the weights section points: the SDXL folder (its scheduler is
    Euler, as a stand-in for RealVisXL's own), the fp16-fix VAE, FaithDiff.bin."""
    from diffusers import AutoencoderKL, EulerDiscreteScheduler

    root = tmp_path_factory.mktemp("faithdiff")
    EulerDiscreteScheduler().save_pretrained(root / "sdxl" / "scheduler")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        vae = AutoencoderKL(block_out_channels=(8, 8), layers_per_block=1, norm_num_groups=4,
                            down_block_types=("DownEncoderBlock2D",) * 2,
                            up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4,
                            sample_size=32)
        vae.save_pretrained(root / "vae")
        unet_mod = standin["unet_mod"]
        torch.manual_seed(4)
        layers = unet_mod.UNet2DConditionModel(**unet_mod.TINY)
        layers.denoise_encoder = unet_mod.Encoder()
    torch.save(layers.state_dict(), root / "FaithDiff.bin")
    return {"faithdiff_repo": CHECKOUT, "sdxl": root / "sdxl", "sdxl_vae_fp16": root / "vae",
            "faithdiff": root / "FaithDiff.bin"}


@pytest.fixture(scope="module")
def backbone(paths, standin):
    _clear(standin)
    built = fd.FaithDiffBackbone.from_checkout(paths, {"steps": STEPS, "upscale": UP}, "cpu")
    built.load_records = {k: list(v) for k, v in standin["unet"].items()}
    built.load_records["pipe"] = list(standin["pipe"]["from_pretrained"])
    return built


@pytest.fixture(scope="module")
def lq(astronaut) -> np.ndarray:
    return cv2.resize(astronaut, (LQ_W, LQ_H), interpolation=cv2.INTER_AREA)


def _run(backbone, lq, standin, **kw):
    """One image through ``restore`` (seed 42, test_wo_llava.py's default) and the records of
    that call."""
    _clear(standin)
    kw.setdefault("seed", 42)
    out = backbone.restore(lq, prompt=PROMPT, negative_prompt="", **kw)
    return out, standin["pipe"]["call"][-1]


def _lanczos(lq: np.ndarray) -> np.ndarray:
    """test_wo_llava.py 78-81: the LQ image resized by upscale with LANCZOS."""
    return np.asarray(Image.fromarray(lq).resize((LQ_W * UP, LQ_H * UP), Image.LANCZOS))


def _adain_numpy(target: np.ndarray, source: np.ndarray) -> np.ndarray:
    """AdaIN as FaithDiff's utils/color_fix.py computes it, by numpy in float64: per channel
    mean and sqrt(unbiased variance + 1e-5), clamped to [0, 1], truncated to 8 bits."""
    t, s = target.astype(np.float64) / 255, source.astype(np.float64) / 255

    def stats(x):
        flat = x.reshape(-1, 3)
        return flat.mean(axis=0), np.sqrt(flat.var(axis=0, ddof=1) + 1e-5)

    (mt, st), (ms, ss) = stats(t), stats(s)
    return (np.clip((t - mt) / st * ss + ms, 0, 1) * 255).astype(np.uint8)


# --------------------------------------------------------------------------- loading

def test_loads_as_create_faithdiff_model_does(backbone, paths):
    """create_FaithDiff_model.py 10-33: UNet from the SDXL folder with variant fp16, its extra
    layers and FaithDiff.bin; a DDPM scheduler and the pipeline from the SDXL folder with
    variant fp16, the fp16-fix VAE, the UNet's denoise encoder, no watermark; the folder's own
    scheduler kept (no UniPC); tiled VAE off (test_wo_llava.py 25)."""
    from diffusers import AutoencoderKL, DDPMScheduler, EulerDiscreteScheduler

    rec = backbone.load_records
    (unet_path, unet_kw), = rec["from_pretrained"]
    assert unet_path == str(paths["sdxl"]) and unet_kw["subfolder"] == "unet"
    assert unet_kw["variant"] == "fp16"
    assert rec["layers"] == [{"dtype": torch.float32, "channel": 512, "weight_path": None}]
    state = torch.load(paths["faithdiff"], weights_only=True)
    assert rec["state_dict"] == [sorted(state)]
    got = backbone.pipe.unet.state_dict()
    assert all(torch.equal(got[k], v) for k, v in state.items())
    assert any(k.startswith("denoise_encoder.") for k in state)

    (pipe_path, pipe_kw), = rec["pipe"]
    assert pipe_path == str(paths["sdxl"]) and pipe_kw["variant"] == "fp16"
    assert pipe_kw["add_watermarker"] is False and pipe_kw["local_files_only"] is True
    assert pipe_kw["denoise_encoder"] is backbone.pipe.unet.denoise_encoder
    assert isinstance(pipe_kw["DDPM_scheduler"], DDPMScheduler)
    saved = AutoencoderKL.from_pretrained(paths["sdxl_vae_fp16"]).state_dict()
    assert isinstance(pipe_kw["vae"], AutoencoderKL)
    assert all(torch.equal(pipe_kw["vae"].state_dict()[k], v) for k, v in saved.items())
    assert type(backbone.pipe.scheduler) is EulerDiscreteScheduler
    assert not backbone.pipe.vae.use_tiling and not backbone.pipe.denoise_encoder.use_tiling
    assert backbone.scale_factor == UP and backbone.seed_scope == "image"
    assert set(backbone.record()["weights"]) == {"faithdiff_repo", "sdxl", "sdxl_vae_fp16",
                                                 "faithdiff"}


def test_vae_tiling_covers_the_faithdiff_encoder(paths, standin, lq):
    """--use_tile_vae (test_wo_llava.py 41-44): set_encoder_tile_settings, then the pipeline's
    enable_vae_tiling, which tiles the VAE and FaithDiff's encoder both."""
    tiled = fd.FaithDiffBackbone.from_checkout(
        paths, {"steps": 1, "upscale": UP, "vae_tiling": True}, "cpu")
    assert tiled.pipe.vae.use_tiling and tiled.pipe.denoise_encoder.use_tiling
    _, call = _run(tiled, lq, standin, mode="baseline")
    assert call["tiling"] == (True, True)
    (encoded,) = standin["unet"]["encoder"]
    assert encoded["tiling"] and encoded["tile"] == (1024, 0.25)


# --------------------------------------------------------------------------- one call

def test_calls_the_pipeline_as_test_wo_llava(backbone, standin, lq):
    """test_wo_llava.py 78-88: LANCZOS x upscale, check_image_size's padded image with its
    padded height and width, 20 steps (here 2), guidance 5, start_point lr, latent tiles of
    1024 with overlap 0.5, negative_prompt "", the output cropped to the upscaled size."""
    out, call = _run(backbone, lq, standin, mode="baseline")
    up = _lanczos(lq)
    assert np.array_equal(standin["image"]["check_image_size"][0], up)
    padded = np.pad(up, ((0, 24 - 22), (0, 32 - 26), (0, 0)), mode="edge")
    assert np.array_equal(call["lr_img"], padded)
    assert (call["height"], call["width"]) == (24, 32)
    assert call["steps"] == STEPS and call["scale"] == 5.0 and call["start_point"] == "lr"
    assert call["overlap"] == 0.5 and call["target_size"] == (1024, 1024)
    assert call["negative_prompt"] == ""
    assert out.shape == (LQ_H * UP, LQ_W * UP, 3) and out.dtype == np.uint8


def test_the_empty_negative_prompt_is_encoded_not_zeroed(backbone, standin, lq):
    """The scripts pass negative_prompt="" (test_wo_llava.py 84-86), which encode_prompt
    encodes (zeros only for None, pipeline_FaithDiff_tlc.py 622-626): the UNet's batch is
    [encoding of ""; encoding of the prompt], and the pooled rows likewise."""
    _run(backbone, lq, standin, mode="baseline")
    asked = standin["pipe"]["encode_prompt"]
    assert asked[0] == {"prompt": PROMPT, "negative_prompt": "", "cfg": True}
    pipe = backbone.pipe
    empty, empty_pooled = pipe._encode([""])
    text, text_pooled = pipe._encode([PROMPT])
    first = standin["unet"]["forward"][0]
    rows = first["encoder_hidden_states"]
    assert rows.shape[0] == 2 and rows[0].abs().sum() > 0
    assert torch.allclose(rows[0], empty[0]) and torch.allclose(rows[1], text[0])
    pooled = first["added_cond_kwargs"]["text_embeds"]
    assert torch.allclose(pooled[0], empty_pooled[0])
    assert torch.allclose(pooled[1], text_pooled[0])
    assert first["add_sample"] is True and first["input_embedding"].shape[0] == 2
    rows = backbone.encode_prompt(["", PROMPT])  # the bridge's route: the same encoders
    assert torch.allclose(rows.hidden[0], empty[0]) and torch.allclose(rows.hidden[1], text[0])
    assert torch.allclose(rows.pooled[1], text_pooled[0])


def test_start_latent_encodes_the_image_once_in_minus_one_to_one(backbone, standin, lq):
    """start_point lr: the VAE encodes the preprocessed image itself, x / 127.5 - 1 of the
    padded image (FaithDiff's fix ade5713; before it, 2 x - 1 of that), once per image; the
    FaithDiff encoder sees the same tensor."""
    seen = []
    hook = backbone.pipe.vae.encoder.register_forward_pre_hook(
        lambda module, args: seen.append(args[0].detach().clone()))
    try:
        _, call = _run(backbone, lq, standin, mode="baseline")
    finally:
        hook.remove()
    expected = torch.from_numpy(call["lr_img"].astype(np.float32) / 127.5 - 1).permute(2, 0, 1)
    assert len(seen) == 1
    assert torch.allclose(seen[0][0], expected, atol=1e-6)
    assert seen[0].min() >= -1 and seen[0].max() <= 1
    assert torch.allclose(standin["unet"]["encoder"][0]["input"][0], expected, atol=1e-6)


def test_refuses_a_checkout_from_before_the_fix(tmp_path):
    """A pipeline file still holding vae.encode(lr_img*2-1) (FaithDiff before ade5713)."""
    pipeline = tmp_path / fd.PIPELINE
    pipeline.parent.mkdir(parents=True)
    pipeline.write_text("latents = self.vae.encode(lr_img*2-1).latent_dist.sample()\n")
    with pytest.raises(RuntimeError, match="ade5713"):
        fd.check_fixed(tmp_path)
    fd.check_fixed(CHECKOUT)


def test_generator_seeded_per_image_draws_noise_and_posterior(backbone, standin, lq):
    """test_wo_llava.py 85 seeds a generator with 42 for every image: two images get the same
    start noise; the VAE posterior sample is the generator's next draw, not the global RNG's
    (a changed global seed changes nothing)."""
    from diffusers.utils.torch_utils import randn_tensor

    torch.manual_seed(0)
    out, call = _run(backbone, lq, standin, mode="baseline")
    assert call["seed"] == 42
    gen = torch.Generator().manual_seed(42)
    noise = randn_tensor(call["noise"].shape, generator=gen)
    draw = randn_tensor(call["posterior"].shape, generator=gen)
    assert torch.equal(call["noise"], noise)
    image = torch.from_numpy(call["lr_img"].astype(np.float32) / 127.5 - 1)
    dist = backbone.pipe.vae.encode(image.permute(2, 0, 1)[None]).latent_dist
    assert torch.allclose(call["posterior"], dist.mean + dist.std * draw, atol=1e-6)

    torch.manual_seed(1)
    again, _ = _run(backbone, lq, standin, mode="baseline")
    assert np.array_equal(out, again)
    _, other = _run(backbone, np.ascontiguousarray(lq[::-1]), standin, mode="baseline")
    assert torch.equal(other["noise"], call["noise"])


def test_adain_colour_fix_against_the_lanczos_input(backbone, standin, lq, paths):
    """--color_fix adain (test_wo_llava.py 28, 90-96): the cropped output corrected to the
    LANCZOS-upscaled input (not the padded one); wavelet gets the same two images; nofix
    leaves the crop as it is."""
    out, call = _run(backbone, lq, standin, mode="baseline")
    crop = call["image"][:LQ_H * UP, :LQ_W * UP]
    (target, source), = standin["color"]["adain"]
    assert np.array_equal(np.asarray(source), _lanczos(lq))
    assert np.array_equal(np.asarray(target), crop)
    assert np.abs(out.astype(int) - _adain_numpy(crop, _lanczos(lq))).max() <= 1
    assert not np.array_equal(out, crop)

    plain = fd.FaithDiffBackbone.from_checkout(
        paths, {"steps": STEPS, "upscale": UP, "color_fix": "nofix"}, "cpu")
    out, call = _run(plain, lq, standin, mode="baseline")
    assert np.array_equal(out, call["image"][:LQ_H * UP, :LQ_W * UP])
    wavelet = fd.FaithDiffBackbone.from_checkout(
        paths, {"steps": STEPS, "upscale": UP, "color_fix": "wavelet"}, "cpu")
    out, call = _run(wavelet, lq, standin, mode="baseline")
    crop = call["image"][:LQ_H * UP, :LQ_W * UP]
    (target, source), = standin["color"]["wavelet"]  # --color_fix wavelet: the same two images
    assert np.array_equal(np.asarray(source), _lanczos(lq))
    assert np.array_equal(np.asarray(target), crop)
    assert not standin["color"]["adain"] and not np.array_equal(out, crop)
    with pytest.raises(ValueError, match="color_fix must be one of adain, wavelet, nofix"):
        fd.FaithDiffBackbone.from_checkout(paths, {"color_fix": "hist"}, "cpu")


def test_cfpg_wraps_the_unet_for_the_call_only(backbone, standin, lq):
    """CFPG: the pipeline calls a CFPGDenoiser (one UNet call a step on the rows
    [t-; t+; h-; h+], FaithDiff's input embedding repeated for the HD rows), the plain UNet is
    back afterwards, and w = 0 is the baseline bit for bit."""
    unet = backbone.pipe.unet
    hd = backbone.encode_pair("heavy blur, heavy noise", "astronaut, space suit")
    base, _ = _run(backbone, lq, standin, mode="baseline")
    out, call = _run(backbone, lq, standin, mode="cfpg", hd_pair=hd, w_par=1.0, w_orth=0.6)
    assert isinstance(call["unet"], CFPGDenoiser) and call["unet"].unet is unet
    assert backbone.pipe.unet is unet
    forwards = standin["unet"]["forward"]
    assert len(forwards) == STEPS
    rows = forwards[0]["encoder_hidden_states"]
    assert rows.shape[0] == 4 and torch.allclose(rows[2:], hd.hidden)
    emb = forwards[0]["input_embedding"]
    assert emb.shape[0] == 4 and torch.equal(emb[2:], emb[:2])
    assert not np.array_equal(out, base)
    zero, _ = _run(backbone, lq, standin, mode="cfpg", hd_pair=hd, w_par=0.0, w_orth=0.0)
    assert np.array_equal(zero, base)
    unmixed, _ = _run(backbone, lq, standin, mode="cfg", hd_pair=hd, cfg_ratio=0.0)
    mixed, call = _run(backbone, lq, standin, mode="cfg", hd_pair=hd, cfg_ratio=0.5)
    assert np.array_equal(unmixed, base) and not np.array_equal(mixed, base)
    assert call["unet"] is unet


# --------------------------------------------------------------------------- load's checks

def _placeholders(tmp_path: Path) -> dict[str, str]:
    out = {"faithdiff_repo": str(CHECKOUT)}
    for key, rel in (("sdxl", "RealVisXL_V4.0"), ("sdxl_vae_fp16", "sdxl-vae-fp16-fix")):
        (tmp_path / rel).mkdir(parents=True)
        (tmp_path / rel / "placeholder.txt").write_text("placeholder\n")
        out[key] = str(tmp_path / rel)
    (tmp_path / "FaithDiff.bin").write_text("placeholder\n")
    out["faithdiff"] = str(tmp_path / "FaithDiff.bin")
    return out


def test_load_checks_checkout_environment_weights_and_device(tmp_path, monkeypatch, standin):
    weights = _placeholders(tmp_path)
    with pytest.raises(FileNotFoundError) as err:
        load("faithdiff", {}, {**weights, "faithdiff_repo": str(tmp_path / "absent")},
             device="cuda")
    assert "weights.faithdiff_repo" in str(err.value)
    assert "git clone https://github.com/JyChen9811/FaithDiff" in str(err.value)
    with pytest.raises(RuntimeError) as err:  # this environment has diffusers 0.42
        load("faithdiff", {}, weights, device="cuda")
    assert "diffusers 0.28.x" in str(err.value) and "workflow/envs/faithdiff.yaml" in str(err.value)
    monkeypatch.setattr(fd, "require_diffusers", lambda *a, **k: "0.28.0")
    for key in ("sdxl", "sdxl_vae_fp16", "faithdiff"):
        with pytest.raises(FileNotFoundError) as err:
            load("faithdiff", {}, {**weights, key: str(tmp_path / "absent" / key)},
                 device="cuda")
        assert f"weights.{key}" in str(err.value)
    with pytest.raises(RuntimeError, match="hard-codes device 'cuda'"):
        load("faithdiff", {}, weights, device="cpu")


def test_environment_file_pins_faithdiffs_requirements():
    import yaml

    env = yaml.safe_load((Path(__file__).parents[2] / fd.ENV).read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    for pin in ("diffusers==0.28.0", "torch==2.4.0", "transformers==4.46.1"):
        assert pin in pip
    assert not any("zephir" in line for line in pip)


# --------------------------------------------------------------------------- paper config

def test_paper_config_restores_realdeg_with_faithdiff_at_x2():
    """Table 7 (paper, section 4: "Using FaithDiff as the baseline generative prior") runs
    FaithDiff only, at x2 as FaithDiff's README runs RealDeg (README 131-135); the sets with
    HQ images keep every backbone, FaithDiff at its script's x4."""
    from zephir import config as zconfig

    from ..conftest import REPO

    cfg = zconfig.load(REPO / "config" / "paper.yaml")
    real = [d for d in cfg["restoration"]["sets"] if not cfg["datasets"][d]["hq"]]
    assert real == ["realdeg_film", "realdeg_social", "realdeg_old"]
    for d in real:
        assert zconfig.restoration_backbones(cfg, d) == ["faithdiff"]
        settings = zconfig.backbone_settings(cfg, "faithdiff", d)
        assert fd.FaithDiffBackbone.resolve_defaults(settings).extra["upscale"] == 2
    assert zconfig.restoration_backbones(cfg, "div2k_val") == ["seesr", "pasd", "faithdiff"]
    settings = zconfig.backbone_settings(cfg, "faithdiff", "div2k_val")
    assert fd.FaithDiffBackbone.resolve_defaults(settings).extra["upscale"] == 4
    with pytest.raises(zconfig.ConfigError, match="'nowhere' is not a key of datasets"):
        zconfig.backbone_settings(cfg, "faithdiff", "nowhere")


# --------------------------------------------------------------------------- mutation gaps
# (docs/mutation.md, "FaithDiff"): what each of these pins was left unchecked by the tests above.

def test_the_bridge_route_asks_for_one_row_per_text_without_cfg(backbone, standin):
    """encode_prompt: one row per text (num_images_per_prompt 1; upstream repeats the rows
    that many times, pipeline_FaithDiff_tlc.py 684-704), no negative asked for, and each
    text's first end-of-text token as the tokenizer places it (start, words, end)."""
    standin["pipe"]["encode_prompt"].clear()
    texts = ["", PROMPT, "a b"]
    rows = backbone.encode_prompt(texts)
    (asked,) = standin["pipe"]["encode_prompt"]
    assert asked["cfg"] is False and asked["negative_prompt"] is None
    assert rows.hidden.shape[0] == 3 and rows.pooled.shape[0] == 3
    words = [len(t.split()) for t in texts]
    assert rows.eos.tolist() == [n + 1 for n in words]
    pair = backbone.encode_pair("blur", PROMPT)
    assert pair.hidden.shape[0] == 2 and pair.pooled.shape[0] == 2
    assert torch.allclose(pair.hidden[1], rows.hidden[1])


def test_scale_and_overlap_reach_the_pipeline(paths, standin, lq):
    """guidance_scale and the latent tiles' overlap are passed, not left to the pipeline's
    defaults (5.0 and 0.5, which equal the script's)."""
    other = fd.FaithDiffBackbone.from_checkout(
        paths, {"steps": 1, "upscale": UP, "latent_tiled_overlap": 0.25}, "cpu")
    _, call = _run(other, lq, standin, mode="baseline", scale=3.0)
    assert call["scale"] == 3.0 and call["overlap"] == 0.25
    assert call["prompt"] == ""  # a str: upstream's check_inputs refuses None


def test_conditioning_of_another_dtype_is_cast_to_the_unets(backbone, standin, lq):
    """_sample casts the conditioning to the UNet's dtype: float64 rows give the float32
    result (a file of embeddings may hold another dtype than the pipeline's)."""
    cond = backbone.encode_pair("", PROMPT)
    runs = []
    for rows in (cond, cond.to(dtype=torch.float64)):
        _clear(standin)
        runs.append(backbone._sample(lq, rows, steps=STEPS, scale=5.0,
                                     generator=torch.Generator().manual_seed(42)))
    assert np.array_equal(runs[0], runs[1])


def test_from_checkout_settings_dtype_variant_and_local_files(paths, standin, monkeypatch):
    """The dtype and variant settings reach every part and from_pretrained; every
    from_pretrained is local-only; the progress bar is off; the weights record holds the
    paths; the outputs are not marked random-init (real weights are loaded)."""
    from diffusers import AutoencoderKL, DDPMScheduler

    asked = []
    for cls in (AutoencoderKL, DDPMScheduler):
        original = cls.from_pretrained.__func__

        def recording(klass, *args, _original=original, **kwargs):
            asked.append((klass.__name__, kwargs))
            return _original(klass, *args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", classmethod(recording))
    _clear(standin)
    built = fd.FaithDiffBackbone.from_checkout(
        paths, {"steps": 1, "upscale": UP, "dtype": "bfloat16", "variant": "bf16"}, "cpu")
    assert sorted(name for name, _ in asked) == ["AutoencoderKL", "DDPMScheduler"]
    assert all(kwargs.get("local_files_only") is True for _, kwargs in asked)
    (_, unet_kw), = standin["unet"]["from_pretrained"]
    (_, pipe_kw), = standin["pipe"]["from_pretrained"]
    assert unet_kw["variant"] == "bf16" and pipe_kw["variant"] == "bf16"
    assert unet_kw["local_files_only"] is True
    assert standin["unet"]["layers"][0]["dtype"] is torch.bfloat16
    assert pipe_kw.get("dtype", pipe_kw.get("torch_dtype")) is torch.bfloat16
    pipe = built.pipe
    for part in (pipe.unet, pipe.vae, pipe.text_encoder, pipe.text_encoder_2):
        assert part.dtype is torch.bfloat16, type(part).__name__
    assert pipe._progress_bar_config == {"disable": True}
    assert built.random_init is False
    assert built.weights == {k: str(v) for k, v in paths.items()}


def test_from_checkout_puts_the_pipeline_on_the_device(paths, standin):
    """``.to(device)`` and the backbone's device ("meta" stands in for a GPU: the parts can
    live there, nothing runs)."""
    built = fd.FaithDiffBackbone.from_checkout(paths, {"steps": 1, "upscale": UP}, "meta")
    assert built.device == torch.device("meta")
    assert built.pipe.unet.device.type == "meta" and built.pipe.vae.device.type == "meta"


def test_faithdiff_bin_must_match_the_unet_key_for_key(paths, tmp_path, standin):
    """FaithDiff.bin goes into the UNet with strict=True: a file without one of its keys is
    refused, not half-loaded."""
    state = torch.load(paths["faithdiff"], weights_only=True)
    state.pop(next(k for k in state if k.startswith("denoise_encoder.")))
    torch.save(state, tmp_path / "FaithDiff.bin")
    with pytest.raises(RuntimeError, match="Missing key"):
        fd.FaithDiffBackbone.from_checkout({**paths, "faithdiff": tmp_path / "FaithDiff.bin"},
                                           {"steps": 1}, "cpu")


_RAN: list[str] = []


class _Payload:
    """Unpickling it would run code (any global outside torch's allow-list)."""

    def __reduce__(self):
        return (_RAN.append, ("unpickled",))


def test_faithdiff_bin_is_read_as_data_even_where_torch_defaults_to_pickle(tmp_path,
                                                                          monkeypatch):
    """FaithDiff's environment has torch 2.4, whose torch.load unpickles anything unless told
    weights_only=True: with that default put in place, a file holding code is refused, and a
    file that is not a state dict is named with what it holds."""
    real = torch.load

    def torch_24(f, map_location=None, weights_only=False, **kwargs):
        return real(f, map_location=map_location, weights_only=bool(weights_only), **kwargs)

    monkeypatch.setattr(torch, "load", torch_24)
    torch.save({"x": _Payload()}, tmp_path / "code.bin")
    with pytest.raises(Exception, match="(?i)weights.only|unpickl"):
        fd.load_layers(tmp_path / "code.bin")
    assert _RAN == []
    torch.save([torch.zeros(1)], tmp_path / "list.bin")
    with pytest.raises(TypeError) as err:
        fd.load_layers(tmp_path / "list.bin")
    assert str(err.value) == f"{tmp_path / 'list.bin'}: expected a state dict (FaithDiff.bin), got list"


def test_check_fixed_reads_any_bytes_and_says_what_to_do(tmp_path):
    """A pipeline file with bytes that are not UTF-8 is still read (errors replaced), and the
    refusal says, word for word, what is wrong and how to fix it."""
    pipeline = tmp_path / fd.PIPELINE
    pipeline.parent.mkdir(parents=True)
    pipeline.write_bytes(b"# \xff\xfe latin-1 bytes\n"
                         b"latents = self.vae.encode(lr_img*2-1).latent_dist.sample()\n")
    with pytest.raises(RuntimeError) as err:
        fd.check_fixed(tmp_path)
    assert str(err.value) == (
        f"backbone faithdiff: {pipeline} encodes the start latent as vae.encode(lr_img*2-1), "
        "an image already in [-1, 1]; FaithDiff fixed this in commit ade5713 (2025-06-29): "
        f"update the checkout (git -C {tmp_path} pull)")
    pipeline.write_bytes(b"# \xff\xfe\nlatents = self.vae.encode(lr_img).latent_dist.sample()\n")
    fd.check_fixed(tmp_path)


def test_load_hands_checked_paths_to_from_checkout_on_cuda(tmp_path, monkeypatch, standin):
    """load's default device is CUDA, and what it checked goes to from_checkout as it is;
    its refusals name the backbone."""
    weights = _placeholders(tmp_path)
    monkeypatch.setattr(fd, "require_diffusers", lambda *a, **k: "0.28.0")
    got = []
    monkeypatch.setattr(fd.FaithDiffBackbone, "from_checkout",
                        classmethod(lambda cls, *args: got.append(args) or "built"))
    settings = {"steps": 3}
    assert fd.FaithDiffBackbone.load(settings, weights) == "built"
    (paths, passed, device), = got
    assert passed is settings and device == torch.device("cuda")
    assert {k: str(v) for k, v in paths.items()} == {
        k: str(Path(v).resolve()) if k == "faithdiff_repo" else v for k, v in weights.items()}
    with pytest.raises(RuntimeError) as err:
        fd.FaithDiffBackbone.load({}, weights, device="cpu")
    assert str(err.value) == ("backbone faithdiff: FaithDiff's pipeline hard-codes device "
                              "'cuda' (__call__, encode_prompt); got device cpu")
    (tmp_path / "other").mkdir()  # a folder, but not FaithDiff's checkout
    (tmp_path / "other" / "README.md").write_text("another project\n")
    with pytest.raises(FileNotFoundError, match="^backbone faithdiff: .* is not a checkout"):
        fd.FaithDiffBackbone.load({}, {**weights, "faithdiff_repo": str(tmp_path / "other")})
    monkeypatch.undo()
    with pytest.raises(RuntimeError, match="^backbone faithdiff: its upstream code needs "
                                           "diffusers 0.28.x"):
        fd.FaithDiffBackbone.load({}, weights)
