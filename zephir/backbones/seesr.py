"""SeeSR (SD 2 base + ControlNet + DAPE tags) as a backbone, from a checkout of its code.

SeeSR's pipeline imports modules that diffusers 0.42 no longer has
(``diffusers.pipeline_utils``, ``diffusers.models.transformer_2d``), so it runs in its own
environment (``workflow/envs/seesr.yaml``: diffusers 0.21, torch 2.0.1, transformers 4.25) with
zephir taken from the source tree (docs/restoration.md). The adapter imports the upstream code
from the configured checkout (``weights.seesr_repo``) on first use, and fails with a message that
names what is wrong: a missing checkout or weight (its config key), or the wrong diffusers.

Everything follows ``test_seesr.py`` at its defaults: DAPE tags of the LQ image, then the user
prompt, then ``clean, high-resolution, 8k`` (joined as upstream joins them); negative ``dotted,
noise, blur, lowres, smooth``; 50 DDPM steps, guidance 5.5; the LQ image resized x4 (bicubic;
short side at least ``process_size / 4`` first), to multiples of 8; ``start_point="lr"``; latent
tiles of 96 with overlap 4; AdaIN colour fix; resized back to 4x the LQ size. The UNet gets
DAPE's image embeddings (``image_encoder_hidden_states``) in both CFPG passes.
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
    join_prompt,
    require_diffusers,
    torch_dtype,
)
from zephir.backbones.sd_x4_upscaler import is_standin

ENV = "workflow/envs/seesr.yaml"
DIFFUSERS = "0.21"

DEFAULTS = Defaults(
    steps=50, scale=5.5, negative_prompt="dotted, noise, blur, lowres, smooth",
    added_prompt="clean, high-resolution, 8k",
    extra={"upscale": 4, "process_size": 512, "conditioning_scale": 1.0, "start_point": "lr",
           "align_method": "adain", "latent_tiled_size": 96, "latent_tiled_overlap": 4,
           "vae_encoder_tiled_size": 1024, "vae_decoder_tiled_size": 224, "dape_tags": True},
    source="SeeSR test_seesr.py (github.com/cswry/SeeSR) argument defaults")


class SeeSRBackbone(Backbone):
    """SeeSR's ``StableDiffusionControlNetPipeline`` with its DAPE tagger."""

    name = "seesr"
    DEFAULTS = DEFAULTS
    environment = ENV
    seed_scope = "folder"  # one generator for the whole folder (test_seesr.py 171-173)

    def __init__(self, pipe, *, tagger=None, **kwargs) -> None:
        super().__init__(pipe, **kwargs)
        self.tagger = tagger
        self.scale_factor = int(self.defaults.extra["upscale"])

    @classmethod
    def load(cls, settings: dict | None, weights: dict | None, device="cuda") -> SeeSRBackbone:
        """Check the checkout (``weights.seesr_repo``), diffusers 0.21 and every weight
        (``sd2_base``, ``seesr``, ``seesr_dape``, ``seesr_ram``, the ``bert-base-uncased``
        tokenizer in the Hugging Face cache) in that order, then build the pipeline."""
        from zephir.weights import resolve

        repo = resolve(weights, "seesr_repo")
        checkout_on_path(repo, backbone=cls.name, probe="pipelines/pipeline_seesr.py")
        require_diffusers(DIFFUSERS, backbone=cls.name, env=ENV)
        paths = {"seesr_repo": repo, **{key: resolve(weights, key) for key in (
            "sd2_base", "seesr", "seesr_dape", "seesr_ram", "seesr_bert")}}
        settings = dict(settings or {})
        defaults = cls.resolve_defaults(settings)
        device = torch.device(device)
        dtype = torch_dtype(settings.get("dtype"), device)

        from diffusers import AutoencoderKL, DDPMScheduler
        from models.controlnet import ControlNetModel
        from models.unet_2d_condition import UNet2DConditionModel
        from pipelines.pipeline_seesr import StableDiffusionControlNetPipeline
        from ram.models.ram_lora import ram
        from transformers import CLIPImageProcessor, CLIPTextModel, CLIPTokenizer

        base, model = str(paths["sd2_base"]), str(paths["seesr"])
        pipe = StableDiffusionControlNetPipeline(
            vae=AutoencoderKL.from_pretrained(base, subfolder="vae"),
            text_encoder=CLIPTextModel.from_pretrained(base, subfolder="text_encoder"),
            tokenizer=CLIPTokenizer.from_pretrained(base, subfolder="tokenizer"),
            feature_extractor=CLIPImageProcessor.from_pretrained(f"{base}/feature_extractor"),
            unet=UNet2DConditionModel.from_pretrained(model, subfolder="unet"),
            controlnet=ControlNetModel.from_pretrained(model, subfolder="controlnet"),
            scheduler=DDPMScheduler.from_pretrained(base, subfolder="scheduler"),
            safety_checker=None, requires_safety_checker=False)
        extra = defaults.extra
        pipe._init_tiled_vae(encoder_tile_size=int(extra["vae_encoder_tiled_size"]),
                             decoder_tile_size=int(extra["vae_decoder_tiled_size"]))
        for part in (pipe.text_encoder, pipe.vae, pipe.unet, pipe.controlnet):
            part.requires_grad_(False).to(device, dtype=dtype)
        pipe.set_progress_bar_config(disable=True)
        tagger = ram(pretrained=str(paths["seesr_ram"]),
                     pretrained_condition=str(paths["seesr_dape"]), image_size=384,
                     vit="swin_l").eval().to(device)
        return cls(pipe, tagger=tagger, defaults=defaults, random_init=is_standin(paths["seesr"]),
                   weights={k: str(v) for k, v in paths.items()}, device=device)

    # -- DAPE: tags for the prompt, image embeddings for the UNet
    def _dape_input(self, lq: np.ndarray) -> torch.Tensor:
        from torchvision import transforms

        x = transforms.ToTensor()(lq).unsqueeze(0).to(self.device)
        return transforms.Compose([
            transforms.Resize((384, 384)),
            transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])])(x)

    @torch.no_grad()
    def tags(self, lq: np.ndarray) -> str:
        """DAPE's tags of the LQ image (``ram.inference_ram``)."""
        from ram import inference_ram

        return inference_ram(self._dape_input(lq), self.tagger)[0]

    def compose_prompts(self, lq: np.ndarray | None = None, prompt: str = "",
                        negative_prompt: str | None = None) -> tuple[str, str]:
        """``"<DAPE tags>, <prompt>,<added prompt>"``, character for character as
        test_seesr.py builds it (142, 185: ``f"{tags}, {prompt},"`` then the added prompt, so an
        empty prompt gives ``"<tags>, ,clean, high-resolution, 8k"``). Without DAPE tags
        (``dape_tags: false``, not an upstream option) the parts are comma-joined."""
        negative = self.defaults.negative_prompt if negative_prompt is None else negative_prompt
        added = self.defaults.added_prompt
        if lq is not None and self.defaults.extra["dape_tags"]:
            return f"{self.tags(lq)}, {prompt},{added}", negative
        return join_prompt(prompt, added), negative

    # -- sampling
    def encode_prompt(self, texts: Sequence[str]) -> TextEmbeds:
        return clip_encode(self.pipe.tokenizer, self.pipe.text_encoder, texts, self.device)

    def _sample(self, lq: np.ndarray, cond: TextEmbeds, *, steps: int, scale: float,
                generator: torch.Generator) -> np.ndarray:
        from PIL import Image
        from utils.wavelet_color_fix import adain_color_fix, wavelet_color_fix

        extra = self.defaults.extra
        up, size = int(extra["upscale"]), int(extra["process_size"])
        image = Image.fromarray(lq)
        ori_w, ori_h = image.size
        if ori_w < size // up or ori_h < size // up:
            s = (size // up) / min(ori_w, ori_h)
            image = image.resize((int(s * ori_w), int(s * ori_h)))
        image = image.resize((image.size[0] * up, image.size[1] * up))
        image = image.resize((image.size[0] // 8 * 8, image.size[1] // 8 * 8))
        width, height = image.size
        with torch.no_grad():
            ram_states = self.tagger.generate_image_embeds(self._dape_input(lq))
        cond = cond.to(device=self.device, dtype=self.pipe.text_encoder.dtype)
        with torch.autocast("cuda", enabled=self.device.type == "cuda"):
            out = self.pipe(
                None, image, num_inference_steps=steps, generator=generator, height=height,
                width=width, guidance_scale=scale, negative_prompt=None,
                prompt_embeds=cond.hidden[1:], negative_prompt_embeds=cond.hidden[:1],
                conditioning_scale=float(extra["conditioning_scale"]),
                start_point=extra["start_point"], ram_encoder_hidden_states=ram_states,
                latent_tiled_size=int(extra["latent_tiled_size"]),
                latent_tiled_overlap=int(extra["latent_tiled_overlap"]),
                args=SimpleNamespace()).images[0]
        if extra["align_method"] == "adain":
            out = adain_color_fix(out, image)
        elif extra["align_method"] == "wavelet":
            out = wavelet_color_fix(out, image)
        out = out.resize((ori_w * up, ori_h * up))
        return np.ascontiguousarray(np.asarray(out.convert("RGB"), dtype=np.uint8))
