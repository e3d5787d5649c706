"""FaithDiff (SDXL) as a backbone, through diffusers' community pipeline file.

FaithDiff ships in diffusers as ``examples/community/pipeline_faithdiff_stable_diffusion_xl.py``,
which is not in the wheel: the file is a configured weight (``weights.faithdiff_pipeline``),
loaded with ``custom_pipeline=<file>`` and ``trust_remote_code=True``. Loading follows the
file's own example: the SDXL base (RealVisXL V4.0, ``weights.sdxl``) without its UNet, the
fp16-fix VAE (``weights.sdxl_vae_fp16``), the pipeline's own UNet class
(``pipe.unet_model.from_pretrained(sdxl, subfolder="unet")``), FaithDiff's extra layers
(``weights.faithdiff``, ``FaithDiff.bin``) through ``unet.load_additional_layers``, encoder
tiling, and UniPC.

Sampling follows the same example: the LQ image resized by ``upscale`` (LANCZOS), padded by
``pipe.check_image_size``, ``start_point="lr"``, 20 steps, guidance 5, latent tiles of 1024 with
overlap 0.5, then cropped back. The pipeline re-encodes ``prompt`` itself and ignores
``prompt_embeds``; the adapter therefore hands it its conditioning by replacing
``pipe.encode_prompt`` for the call (needed by the ``cfg`` mode). CFPG also passes the HD pair's
pooled embeddings (``text_embeds``); ``time_ids`` are reused. The pipeline hard-codes
``device = cuda``: FaithDiff needs a GPU.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from zephir.backbones.base import (
    Backbone,
    Defaults,
    TextEmbeds,
    dtype_kwargs,
    torch_dtype,
)

DEFAULTS = Defaults(
    steps=20, scale=5.0, negative_prompt="", added_prompt="",
    extra={"upscale": 4, "start_point": "lr", "overlap": 0.5, "latent_tiled_size": 1024,
           "scheduler": "unipc"},
    source=("FaithDiff (github.com/JyChen9811/FaithDiff test script) and the diffusers "
            "community pipeline's example; the positive prompt there is a LLaVA caption "
            "(zephir: the user's prompt, empty by default)"))


class FaithDiffBackbone(Backbone):
    """FaithDiff's SDXL pipeline (community file), CUDA only."""

    name = "faithdiff"
    DEFAULTS = DEFAULTS

    @classmethod
    def load(cls, settings: dict | None, weights: dict | None, device="cuda"
             ) -> FaithDiffBackbone:
        """Load from ``weights.sdxl``, ``weights.sdxl_vae_fp16``, ``weights.faithdiff`` and
        ``weights.faithdiff_pipeline``; a missing one is a FileNotFoundError naming its key,
        its path and how to get it (checked before anything is loaded)."""
        from zephir.weights import resolve

        paths = {key: resolve(weights, key)
                 for key in ("faithdiff_pipeline", "sdxl", "sdxl_vae_fp16", "faithdiff")}
        settings = dict(settings or {})
        defaults = cls.resolve_defaults(settings)
        device = torch.device(device)
        if device.type != "cuda":
            raise RuntimeError("backbone faithdiff: the FaithDiff community pipeline hard-codes "
                               f"device 'cuda' in __call__; got device {device}")
        from diffusers import AutoencoderKL, DiffusionPipeline, UniPCMultistepScheduler

        dtype = torch_dtype(settings.get("dtype"), device)
        variant = settings.get("variant")
        vae = AutoencoderKL.from_pretrained(str(paths["sdxl_vae_fp16"]), local_files_only=True,
                                            **dtype_kwargs(dtype))
        pipe = DiffusionPipeline.from_pretrained(
            str(paths["sdxl"]), vae=vae, unet=None,
            custom_pipeline=str(paths["faithdiff_pipeline"]), trust_remote_code=True,
            variant=variant, local_files_only=True, **dtype_kwargs(dtype))
        pipe.unet = pipe.unet_model.from_pretrained(str(paths["sdxl"]), subfolder="unet",
                                                    variant=variant, local_files_only=True,
                                                    **dtype_kwargs(dtype))
        pipe.unet.load_additional_layers(weight_path=str(paths["faithdiff"]), dtype=dtype)
        pipe.set_encoder_tile_settings()
        pipe.vae.enable_tiling()
        if defaults.extra["scheduler"] == "unipc":
            pipe.scheduler = UniPCMultistepScheduler.from_config(pipe.scheduler.config)
        pipe.set_progress_bar_config(disable=True)
        return cls(pipe.to(device), defaults=defaults, random_init=False,
                   weights={k: str(v) for k, v in paths.items()}, device=device)

    def __init__(self, pipe, **kwargs) -> None:
        super().__init__(pipe, **kwargs)
        self.scale_factor = int(self.defaults.extra["upscale"])

    # -- text: SDXL's two encoders; the pipeline's own CFG encoding for the pair
    def encode_prompt(self, texts: Sequence[str]) -> TextEmbeds:
        from zephir.backbones.sd_x4_upscaler import eos_positions

        out = type(self.pipe).encode_prompt(self.pipe, prompt=list(texts),
                                            num_images_per_prompt=1,
                                            do_classifier_free_guidance=False)
        hidden, pooled = out[0], out[2]
        tokenizer = self.pipe.tokenizer or self.pipe.tokenizer_2
        return TextEmbeds(hidden, pooled, eos_positions(tokenizer, texts))

    def encode_pair(self, negative: str, positive: str) -> TextEmbeds:
        """As the pipeline builds it. FaithDiff's example passes no negative prompt, which
        SDXL turns into zero embeddings (``force_zeros_for_empty_prompt``): an empty
        ``negative`` does the same here."""
        pos, neg, pooled_pos, pooled_neg = type(self.pipe).encode_prompt(
            self.pipe, prompt=positive, negative_prompt=negative or None,
            num_images_per_prompt=1, do_classifier_free_guidance=True)
        return TextEmbeds(torch.cat([neg, pos]), torch.cat([pooled_neg, pooled_pos]))

    @contextlib.contextmanager
    def _conditioning(self, cond: TextEmbeds) -> Iterator[None]:
        """``pipe.encode_prompt`` returns ``cond`` for the ``with`` block (the pipeline
        ignores ``prompt_embeds``)."""
        def encode(*args, **kwargs):
            return cond.hidden[1:], cond.hidden[:1], cond.pooled[1:], cond.pooled[:1]

        self.pipe.encode_prompt = encode
        try:
            yield
        finally:
            del self.pipe.encode_prompt

    def _sample(self, lq: np.ndarray, cond: TextEmbeds, *, steps: int, scale: float,
                generator: torch.Generator) -> np.ndarray:
        from PIL import Image

        extra = self.defaults.extra
        up = int(extra["upscale"])
        h, w = lq.shape[:2]
        image = Image.fromarray(lq).resize((w * up, h * up), Image.LANCZOS)
        image, width_init, height_init, width_now, height_now = self.pipe.check_image_size(image)
        tile = int(extra["latent_tiled_size"])
        cond = cond.to(device=self.device, dtype=self.pipe.unet.dtype)
        with self._conditioning(cond):
            out = self.pipe(lr_img=image, prompt="", num_inference_steps=steps,
                            guidance_scale=scale, generator=generator,
                            start_point=extra["start_point"], height=height_now,
                            width=width_now, overlap=float(extra["overlap"]),
                            target_size=(tile, tile)).images[0]
        out = out.crop((0, 0, width_init, height_init))
        if out.size != (w * up, h * up):
            out = out.resize((w * up, h * up), Image.BICUBIC)
        return np.ascontiguousarray(np.asarray(out.convert("RGB"), dtype=np.uint8))
