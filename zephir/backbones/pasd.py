"""PASD (SD 1.5 + pixel-aware ControlNet) as a backbone, from a checkout of its code.

PASD's pipeline imports ``diffusers.pipelines.controlnet.multicontrolnet``, which diffusers 0.42
moved, so it runs in its own environment (``workflow/envs/pasd.yaml``: diffusers 0.29.2) with
zephir taken from the source tree (docs/restoration.md). The adapter imports the upstream package
``pasd`` from the configured checkout (``weights.pasd_repo``) on first use, and fails with a
message that names what is wrong: a missing checkout or weight (its config key), or the wrong
diffusers.

Everything follows ``test_pasd.py`` at its defaults (``control_type realisr``), except two
settings named here: ``--upscale 4`` (the LQ sets are 4x smaller; the script's default is 1) and
no high-level prompt model (the script's default runs a CoCa captioner; here the prompt is the
user's): prompt ``"<prompt>, clean, high-resolution, 8k"``, negative ``blurry, dotted, noise,
raster lines, unclear, lowres, over-smoothed``, 20 UniPC steps, guidance 9.0; the LQ image resized
x4 (bicubic), its short side brought to ``process_size`` 768 when smaller, to multiples of 8;
latent tiles of 320 with overlap 8; wavelet colour fix; resized back to 4x the LQ size.
"""
from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace

import numpy as np
import torch

from zephir.backbones.base import (
    Backbone,
    Defaults,
    TextEmbeds,
    checkout_on_path,
    clip_encode,
    require_diffusers,
    torch_dtype,
)
from zephir.backbones.sd_x4_upscaler import is_standin

ENV = "workflow/envs/pasd.yaml"
DIFFUSERS = "0.29"

DEFAULTS = Defaults(
    steps=20, scale=9.0,
    negative_prompt="blurry, dotted, noise, raster lines, unclear, lowres, over-smoothed",
    added_prompt="clean, high-resolution, 8k",
    extra={"upscale": 4, "process_size": 768, "conditioning_scale": 1.0,
           "encoder_tiled_size": 1024, "decoder_tiled_size": 224, "latent_tiled_size": 320,
           "latent_tiled_overlap": 8, "init_latent_with_noise": False,
           "added_noise_level": 900, "offset_noise_scale": 0.0, "use_pasd_light": False},
    source=("PASD test_pasd.py (github.com/yangxy/PASD) argument defaults, with --upscale 4 "
            "and --high_level_info none"))


class PASDBackbone(Backbone):
    """PASD's ``StableDiffusionControlNetPipeline``."""

    name = "pasd"
    DEFAULTS = DEFAULTS
    environment = ENV
    seed_scope = "folder"  # one generator for the whole folder (test_pasd.py 203-205)

    def __init__(self, pipe, **kwargs) -> None:
        super().__init__(pipe, **kwargs)
        self.scale_factor = int(self.defaults.extra["upscale"])

    @classmethod
    def load(cls, settings: dict | None, weights: dict | None, device="cuda") -> PASDBackbone:
        """Check the checkout (``weights.pasd_repo``), diffusers 0.29 and the weights
        (``sd15``, ``pasd``) in that order, then build the pipeline as test_pasd.py does."""
        from zephir.weights import resolve

        repo = resolve(weights, "pasd_repo")
        checkout_on_path(repo, backbone=cls.name, probe="pasd/pipelines/pipeline_pasd.py")
        require_diffusers(DIFFUSERS, backbone=cls.name, env=ENV)
        paths = {"pasd_repo": repo, "sd15": resolve(weights, "sd15"),
                 "pasd": resolve(weights, "pasd")}
        settings = dict(settings or {})
        defaults = cls.resolve_defaults(settings)
        device = torch.device(device)
        dtype = torch_dtype(settings.get("dtype"), device)
        extra = defaults.extra

        from diffusers import AutoencoderKL, UniPCMultistepScheduler
        from transformers import CLIPImageProcessor, CLIPTextModel, CLIPTokenizer

        if extra["use_pasd_light"]:
            from pasd.models.pasd_light.controlnet import ControlNetModel
            from pasd.models.pasd_light.unet_2d_condition import UNet2DConditionModel
        else:
            from pasd.models.pasd.controlnet import ControlNetModel
            from pasd.models.pasd.unet_2d_condition import UNet2DConditionModel
        from pasd.pipelines.pipeline_pasd import StableDiffusionControlNetPipeline

        base, model = str(paths["sd15"]), str(paths["pasd"])
        pipe = StableDiffusionControlNetPipeline(
            vae=AutoencoderKL.from_pretrained(base, subfolder="vae"),
            text_encoder=CLIPTextModel.from_pretrained(base, subfolder="text_encoder"),
            tokenizer=CLIPTokenizer.from_pretrained(base, subfolder="tokenizer"),
            feature_extractor=CLIPImageProcessor.from_pretrained(f"{base}/feature_extractor"),
            unet=UNet2DConditionModel.from_pretrained(model, subfolder="unet"),
            controlnet=ControlNetModel.from_pretrained(model, subfolder="controlnet"),
            scheduler=UniPCMultistepScheduler.from_pretrained(base, subfolder="scheduler"),
            safety_checker=None, requires_safety_checker=False)
        pipe._init_tiled_vae(encoder_tile_size=int(extra["encoder_tiled_size"]),
                             decoder_tile_size=int(extra["decoder_tiled_size"]))
        for part in (pipe.text_encoder, pipe.vae, pipe.unet, pipe.controlnet):
            part.requires_grad_(False).to(device, dtype=dtype)
        pipe.set_progress_bar_config(disable=True)
        return cls(pipe, defaults=defaults, random_init=is_standin(paths["pasd"]),
                   weights={k: str(v) for k, v in paths.items()}, device=device)

    def encode_prompt(self, texts: Sequence[str]) -> TextEmbeds:
        return clip_encode(self.pipe.tokenizer, self.pipe.text_encoder, texts, self.device)

    def _sample(self, lq: np.ndarray, cond: TextEmbeds, *, steps: int, scale: float,
                generator: torch.Generator) -> np.ndarray:
        from pasd.myutils.wavelet_color_fix import wavelet_color_fix
        from PIL import Image
        from torchvision import transforms

        extra = self.defaults.extra
        up, size = int(extra["upscale"]), int(extra["process_size"])
        image = Image.fromarray(lq)
        ori_w, ori_h = image.size
        image = image.resize((ori_w * up, ori_h * up))
        if min(image.size) < size:
            image = transforms.Resize(
                size, interpolation=transforms.InterpolationMode.BILINEAR)(image)
        image = image.resize((image.size[0] // 8 * 8, image.size[1] // 8 * 8))
        args = SimpleNamespace(
            num_inference_steps=steps, init_latent_with_noise=bool(extra["init_latent_with_noise"]),
            added_noise_level=int(extra["added_noise_level"]),
            offset_noise_scale=float(extra["offset_noise_scale"]),
            latent_tiled_size=int(extra["latent_tiled_size"]),
            latent_tiled_overlap=int(extra["latent_tiled_overlap"]))
        cond = cond.to(device=self.device, dtype=self.pipe.text_encoder.dtype)
        out = self.pipe(args, None, image, num_inference_steps=steps, generator=generator,
                        guidance_scale=scale, negative_prompt=None,
                        prompt_embeds=cond.hidden[1:], negative_prompt_embeds=cond.hidden[:1],
                        conditioning_scale=float(extra["conditioning_scale"])).images[0]
        out = wavelet_color_fix(out, image).resize((ori_w * up, ori_h * up))
        return np.ascontiguousarray(np.asarray(out.convert("RGB"), dtype=np.uint8))
