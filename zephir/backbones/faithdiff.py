"""FaithDiff (SDXL) as a backbone, from a checkout of its code, run as its test scripts run it.

The adapter imports FaithDiff's own modules from the configured checkout
(``weights.faithdiff_repo``, github.com/JyChen9811/FaithDiff at or after commit ade5713): the
pipeline ``FaithDiff/pipelines/pipeline_FaithDiff_tlc.py``, the UNet with its extra layers
``FaithDiff/models/unet_2d_condition_vae_extension.py``, and the scripts' helpers
``utils/image_process.check_image_size`` and ``utils/color_fix``. Those modules import
names diffusers 0.42 no longer has (``diffusers.utils.is_flax_available``), so FaithDiff runs in
its own environment (``workflow/envs/faithdiff.yaml``: the pins of its requirements.txt,
diffusers 0.28.0, torch 2.4.0, transformers 4.46.1) with zephir taken from the source tree.

Loading is ``FaithDiff/create_FaithDiff_model.py`` (``FaithDiff_pipeline``, lines 10-33): the
fp16-fix VAE (``weights.sdxl_vae_fp16``), FaithDiff's UNet class from the SDXL base
(RealVisXL V4.0, ``weights.sdxl``, ``variant="fp16"``) with its extra layers
(``load_additional_layers``) and FaithDiff.bin (``weights.faithdiff``), a DDPM scheduler from
the SDXL folder for the start point, the pipeline from the SDXL folder with that folder's own
scheduler, ``add_watermarker=False``, ``variant="fp16"``, fp16. One difference, with no effect
on the numbers: FaithDiff.bin is read with ``torch.load(weights_only=True)`` (a file someone
shares is data) and handed to the UNet's own ``load_state_dict``, where upstream lets
``load_additional_layers`` unpickle it.

Sampling is ``test_wo_llava.py`` at its defaults (lines 18-31, 78-96): the LQ image resized by
``upscale`` (LANCZOS), padded to multiples of 8 by ``check_image_size``, the empty negative
prompt (encoded, not zeroed), ``start_point="lr"`` (the start latent is the VAE posterior of
the image, preprocessed once to [-1, 1]), 20 steps, guidance 5, latent tiles of 1024 with
overlap 0.5, the output cropped back and colour-corrected by AdaIN against the LANCZOS-upscaled
input. Tiled VAE is off, as the scripts' ``--use_tile_vae`` default; on, it is the pipeline's
own ``set_encoder_tile_settings`` and ``enable_vae_tiling``, which tile the VAE and FaithDiff's
encoder both. Seeding: a generator per image (``seed_scope = "image"``, ``test_wo_llava.py``
85 re-seeds with 42 for every image); the adapter also draws the VAE posterior sample from that
generator, where upstream's ``latent_dist.sample()`` takes the global RNG.

The pipeline re-encodes ``prompt`` itself and ignores ``prompt_embeds``; the adapter hands it
its conditioning by replacing ``pipe.encode_prompt`` for the call (the ``cfg`` mode needs it).
FaithDiff's pipeline hard-codes ``device = 'cuda'`` (``__call__`` and ``encode_prompt``):
:meth:`FaithDiffBackbone.load` refuses another device; :meth:`FaithDiffBackbone.from_checkout`
builds from checked paths on any device (the tests run it on CPU with a stand-in checkout).
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from zephir.backbones.base import (
    Backbone,
    Defaults,
    TextEmbeds,
    checkout_on_path,
    dtype_kwargs,
    require_diffusers,
    torch_dtype,
)

ENV = "workflow/envs/faithdiff.yaml"
DIFFUSERS = "0.28"
PIPELINE = "FaithDiff/pipelines/pipeline_FaithDiff_tlc.py"
DOUBLE_NORMALISED = "vae.encode(lr_img*2-1)"
"""The start-latent line before FaithDiff's commit ade5713 (2025-06-29), which fed the VAE
``2 x - 1`` of an image the preprocessing had already mapped to [-1, 1]."""
COLOR_FIXES = ("adain", "wavelet", "nofix")
START_POINTS = ("lr", "noise")

DEFAULTS = Defaults(
    steps=20, scale=5.0, negative_prompt="", added_prompt="",
    extra={"upscale": 4, "start_point": "lr", "latent_tiled_overlap": 0.5,
           "latent_tiled_size": 1024, "color_fix": "adain", "vae_tiling": False},
    source=("FaithDiff test_wo_llava.py (github.com/JyChen9811/FaithDiff) argument defaults; "
            "the positive prompt there is a LLaVA caption (zephir: the user's prompt, empty "
            "by default)"))


def check_fixed(repo: str | Path) -> None:
    """Refuse a FaithDiff checkout older than commit ade5713 (its pipeline file still holds
    :data:`DOUBLE_NORMALISED`): a RuntimeError naming the file, the line and the fix."""
    path = Path(repo) / PIPELINE
    if DOUBLE_NORMALISED in path.read_text(encoding="utf-8", errors="replace"):
        raise RuntimeError(
            f"backbone faithdiff: {path} encodes the start latent as {DOUBLE_NORMALISED}, "
            "an image already in [-1, 1]; FaithDiff fixed this in commit ade5713 "
            f"(2025-06-29): update the checkout (git -C {repo} pull)")


def load_layers(path: str | Path) -> dict:
    """FaithDiff.bin's state dict, read as data (``weights_only=True``)."""
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise TypeError(f"{path}: expected a state dict (FaithDiff.bin), got "
                         f"{type(state).__name__}")
    return state


class FaithDiffBackbone(Backbone):
    """FaithDiff's ``FaithDiffStableDiffusionXLPipeline`` from its checkout, CUDA only."""

    name = "faithdiff"
    DEFAULTS = DEFAULTS
    environment = ENV
    seed_scope = "image"
    """FaithDiff re-seeds its generator for every image (``test_wo_llava.py`` 85)."""

    @classmethod
    def load(cls, settings: dict | None, weights: dict | None, device="cuda"
             ) -> FaithDiffBackbone:
        """Check the checkout (``weights.faithdiff_repo``, at or after ade5713), diffusers
        0.28, every weight (``sdxl``, ``sdxl_vae_fp16``, ``faithdiff``) and a CUDA device, in
        that order, then build (:meth:`from_checkout`). Each failure names what is wrong: the
        config key and path of a missing weight, the environment to use, the device."""
        from zephir.weights import resolve

        repo = resolve(weights, "faithdiff_repo")
        checkout_on_path(repo, backbone=cls.name, probe=PIPELINE)
        check_fixed(repo)
        require_diffusers(DIFFUSERS, backbone=cls.name, env=ENV)
        paths = {"faithdiff_repo": repo, **{key: resolve(weights, key)
                                            for key in ("sdxl", "sdxl_vae_fp16", "faithdiff")}}
        device = torch.device(device)
        if device.type != "cuda":
            raise RuntimeError("backbone faithdiff: FaithDiff's pipeline hard-codes device "
                               f"'cuda' (__call__, encode_prompt); got device {device}")
        return cls.from_checkout(paths, settings, device)

    @classmethod
    def from_checkout(cls, paths: dict, settings: dict | None, device: torch.device | str
                      ) -> FaithDiffBackbone:
        """Build the pipeline as ``create_FaithDiff_model.FaithDiff_pipeline`` does, from
        checked ``paths`` (keys ``faithdiff_repo``, ``sdxl``, ``sdxl_vae_fp16``, ``faithdiff``)
        whose checkout is on ``sys.path``; then ``.to(device)`` and, when ``vae_tiling`` is
        on, the pipeline's own tiling of the VAE and FaithDiff's encoder."""
        from diffusers import AutoencoderKL, DDPMScheduler
        from FaithDiff.models.unet_2d_condition_vae_extension import (
            UNet2DConditionModel,
        )
        from FaithDiff.pipelines.pipeline_FaithDiff_tlc import (
            FaithDiffStableDiffusionXLPipeline,
        )

        settings = dict(settings or {})
        defaults = cls.resolve_defaults(settings)
        device = torch.device(device)
        dtype = torch_dtype(settings.get("dtype"), device)
        variant = settings.get("variant", "fp16")
        sdxl = str(paths["sdxl"])
        vae = AutoencoderKL.from_pretrained(str(paths["sdxl_vae_fp16"]),
                                            local_files_only=True).to(dtype=dtype)
        unet = UNet2DConditionModel.from_pretrained(sdxl, subfolder="unet", variant=variant,
                                                    local_files_only=True)
        unet.load_additional_layers(weight_path=None, dtype=dtype)
        unet.load_state_dict(load_layers(paths["faithdiff"]), strict=True)
        unet = unet.to(dtype=dtype)
        ddpm = DDPMScheduler.from_pretrained(sdxl, subfolder="scheduler", local_files_only=True)
        pipe = FaithDiffStableDiffusionXLPipeline.from_pretrained(
            sdxl, vae=vae, denoise_encoder=unet.denoise_encoder, DDPM_scheduler=ddpm,
            add_watermarker=False, variant=variant, local_files_only=True,
            **dtype_kwargs(dtype))
        pipe.unet = unet
        pipe = pipe.to(device)
        if defaults.extra["vae_tiling"]:
            pipe.set_encoder_tile_settings()
            pipe.enable_vae_tiling()
        pipe.set_progress_bar_config(disable=True)
        return cls(pipe, defaults=defaults, random_init=False,
                   weights={k: str(v) for k, v in paths.items()}, device=device)

    def __init__(self, pipe, **kwargs) -> None:
        super().__init__(pipe, **kwargs)
        extra = self.defaults.extra
        for key, allowed in (("color_fix", COLOR_FIXES), ("start_point", START_POINTS)):
            if extra[key] not in allowed:
                raise ValueError(f"backbone faithdiff: {key} must be one of "
                                 f"{', '.join(allowed)}, got {extra[key]!r}")
        self.scale_factor = int(extra["upscale"])

    # -- text: SDXL's two encoders, through the pipeline's own encode_prompt
    def encode_prompt(self, texts: Sequence[str]) -> TextEmbeds:
        from zephir.backbones.sd_x4_upscaler import eos_positions

        out = type(self.pipe).encode_prompt(self.pipe, prompt=list(texts),
                                            num_images_per_prompt=1,
                                            do_classifier_free_guidance=False)
        hidden, pooled = out[0], out[2]
        tokenizer = self.pipe.tokenizer or self.pipe.tokenizer_2
        return TextEmbeds(hidden, pooled, eos_positions(tokenizer, texts))

    def encode_pair(self, negative: str, positive: str) -> TextEmbeds:
        """As the pipeline builds it from the scripts' ``negative_prompt=""``: the negative
        text is encoded, "" included (``encode_prompt`` zeroes it only for ``None``,
        ``pipeline_FaithDiff_tlc.py`` 622-626)."""
        pos, neg, pooled_pos, pooled_neg = type(self.pipe).encode_prompt(
            self.pipe, prompt=positive, negative_prompt=negative, num_images_per_prompt=1,
            do_classifier_free_guidance=True)
        return TextEmbeds(torch.cat([neg, pos]), torch.cat([pooled_neg, pooled_pos]))

    @contextlib.contextmanager
    def _conditioning(self, cond: TextEmbeds) -> Iterator[None]:
        """``pipe.encode_prompt`` returns ``cond`` for the ``with`` block (the pipeline
        ignores ``prompt_embeds``), in its own order: positive, negative, pooled positive,
        pooled negative."""
        def encode(*args, **kwargs):
            return cond.hidden[1:], cond.hidden[:1], cond.pooled[1:], cond.pooled[:1]

        self.pipe.encode_prompt = encode
        try:
            yield
        finally:
            del self.pipe.encode_prompt

    @contextlib.contextmanager
    def _posterior_from(self, generator: torch.Generator) -> Iterator[None]:
        """The VAE posterior the pipeline samples (``vae.encode(lr_img).latent_dist.sample()``,
        no generator) draws from ``generator`` for the ``with`` block."""
        vae = self.pipe.vae
        encode = vae.encode

        def seeded(*args, **kwargs):
            out = encode(*args, **kwargs)
            dist = out.latent_dist if hasattr(out, "latent_dist") else out[0]
            draw = type(dist).sample
            dist.sample = lambda generator_=None: draw(dist, generator=generator)
            return out

        vae.encode = seeded
        try:
            yield
        finally:
            del vae.encode

    def _sample(self, lq: np.ndarray, cond: TextEmbeds, *, steps: int, scale: float,
                generator: torch.Generator) -> np.ndarray:
        from PIL import Image
        from utils.image_process import check_image_size

        extra = self.defaults.extra
        up = int(extra["upscale"])
        h, w = lq.shape[:2]
        image = Image.fromarray(lq).resize((w * up, h * up), Image.LANCZOS)
        padded, width_init, height_init, width_now, height_now = check_image_size(image)
        tile = int(extra["latent_tiled_size"])
        cond = cond.to(device=self.device, dtype=self.pipe.unet.dtype)
        # prompt and negative_prompt are the scripts' keywords; encode_prompt returns cond
        with self._conditioning(cond), self._posterior_from(generator):
            out = self.pipe(lr_img=padded, prompt="", negative_prompt="",
                            num_inference_steps=steps, guidance_scale=scale,
                            generator=generator, start_point=extra["start_point"],
                            height=height_now, width=width_now,
                            overlap=float(extra["latent_tiled_overlap"]),
                            target_size=(tile, tile)).images[0]
        out = out.crop((0, 0, width_init, height_init))
        if extra["color_fix"] == "adain":
            from utils.color_fix import adain_color_fix

            out = adain_color_fix(out, image)
        elif extra["color_fix"] == "wavelet":
            from utils.color_fix import wavelet_color_fix

            out = wavelet_color_fix(out, image)
        return np.ascontiguousarray(np.asarray(out.convert("RGB"), dtype=np.uint8))
