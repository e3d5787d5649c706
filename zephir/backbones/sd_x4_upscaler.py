"""Stable Diffusion x4 upscaler (diffusers ``StableDiffusionUpscalePipeline``) as a backbone.

The pipeline concatenates the (noised) LQ image to the latents, so its UNet takes 4 + 3
channels and gets the noise level as a class label; its VAE decodes at 4x the latent size.
One UNet call per step on ``[negative; positive]``, then diffusers' CFG line: CFPG plugs in
through ``CFPGDenoiser`` without an edited line (docs/restoration.md).

Weights: ``weights.sd_x4_upscaler``, a diffusers folder (``model_index.json``, ``unet/``,
``vae/``, ``text_encoder/``, ``tokenizer/``, schedulers). A folder written by
``zephir.backbones.tiny.save_standin`` carries ``zephir_standin.json`` and is reported as
random-init.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from zephir.backbones.base import (
    Backbone,
    Defaults,
    TextEmbeds,
    dtype_kwargs,
    torch_dtype,
)

STANDIN_MARKER = "zephir_standin.json"
"""File that marks a diffusers folder as a random-init stand-in written by zephir."""

DEFAULTS = Defaults(
    steps=75, scale=9.0, negative_prompt="", added_prompt="", extra={"noise_level": 20},
    source="diffusers 0.42 StableDiffusionUpscalePipeline.__call__ defaults")


def _pad_to_multiple(img: np.ndarray, multiple: int) -> np.ndarray:
    """Reflect-pad the bottom/right so both sides are multiples of ``multiple`` (diffusers'
    image processor would otherwise resize the image down to such a size)."""
    h, w = img.shape[:2]
    ph, pw = (-h) % multiple, (-w) % multiple
    if not ph and not pw:
        return img
    mode = "reflect" if ph < h and pw < w else "edge"
    return np.pad(img, ((0, ph), (0, pw), (0, 0)), mode=mode)


def eos_positions(tokenizer, texts: Sequence[str]) -> torch.Tensor:
    """(N,) index of the first end-of-text token of each text, as the pipeline tokenizes it."""
    ids = tokenizer(list(texts), padding="max_length", max_length=tokenizer.model_max_length,
                    truncation=True, return_tensors="pt").input_ids
    return (ids == tokenizer.eos_token_id).int().argmax(dim=-1)


class UpscalerBackbone(Backbone):
    """A ``StableDiffusionUpscalePipeline`` (real weights or the tiny stand-in)."""

    name = "sd-x4-upscaler"
    DEFAULTS = DEFAULTS

    def __init__(self, pipe, *, defaults: Defaults = DEFAULTS, random_init: bool,
                 weights: dict[str, str] | None = None, device="cpu") -> None:
        super().__init__(pipe, defaults=defaults, random_init=random_init, weights=weights,
                         device=device)
        pipe.set_progress_bar_config(disable=True)
        self.scale_factor = int(pipe.vae_scale_factor)

    @classmethod
    def load(cls, settings: dict | None, weights: dict | None, device="cpu"
             ) -> UpscalerBackbone:
        """From the diffusers folder of ``weights.sd_x4_upscaler`` (FileNotFoundError naming
        the key, the folder and how to get it when it is missing)."""
        from diffusers import StableDiffusionUpscalePipeline

        from zephir.weights import resolve

        folder = resolve(weights, "sd_x4_upscaler")
        device = torch.device(device)
        settings = dict(settings or {})
        defaults = cls.resolve_defaults(settings)
        pipe = StableDiffusionUpscalePipeline.from_pretrained(
            str(folder), local_files_only=True,
            **dtype_kwargs(torch_dtype(settings.get("dtype"), device)))
        return cls(pipe.to(device), defaults=defaults, random_init=is_standin(folder),
                   weights={"sd_x4_upscaler": str(folder)}, device=device)

    def encode_prompt(self, texts: Sequence[str]) -> TextEmbeds:
        hidden, _ = self.pipe.encode_prompt(list(texts), self.device, 1, False)
        return TextEmbeds(hidden, eos=eos_positions(self.pipe.tokenizer, texts))

    def _sample(self, lq: np.ndarray, cond: TextEmbeds, *, steps: int, scale: float,
                generator: torch.Generator) -> np.ndarray:
        from PIL import Image

        h, w = lq.shape[:2]
        factor = self.scale_factor
        cond = cond.to(device=self.device, dtype=self.pipe.text_encoder.dtype)
        out = self.pipe(
            image=Image.fromarray(_pad_to_multiple(lq, factor)),
            prompt_embeds=cond.hidden[1:], negative_prompt_embeds=cond.hidden[:1],
            num_inference_steps=steps, guidance_scale=scale,
            noise_level=int(self.defaults.extra["noise_level"]), generator=generator,
            output_type="np").images[0]
        out = np.clip(np.rint(out[: h * factor, : w * factor] * 255.0), 0, 255)
        return np.ascontiguousarray(out.astype(np.uint8))


def is_standin(folder: str | Path) -> bool:
    """Whether ``folder`` is a random-init stand-in saved by zephir (its marker file)."""
    marker = Path(folder) / STANDIN_MARKER
    if not marker.is_file():
        return False
    try:
        return bool(json.loads(marker.read_text()).get("random_init", True))
    except ValueError:
        return True
