"""What the SeeSR and PASD stand-ins share: the record of what they receive, the denoising loop
with upstream's structure, and the colour fixes (written for zephir's tests; no upstream code).

The stand-ins (``seesr/`` and ``pasd/`` beside this file) are checkouts with upstream's import
paths and call signatures, built on the installed diffusers' own classes at random init. They
exist so that tests/test_backbone_envs.py can run zephir's SeeSR and PASD adapters in the
backbones' environments (diffusers 0.21 and 0.29) without the upstream code or its weights.

What of upstream's loop they keep, because zephir depends on it (SeeSR ``pipelines/
pipeline_seesr.py`` at cswry/SeeSR@8edecc7, PASD ``pasd/pipelines/pipeline_pasd.py`` at
yangxy/PASD@396f9ac):

* the prompt batch is ``cat([negative_prompt_embeds, prompt_embeds])`` under CFG
  (``guidance_scale > 1``), the ControlNet image doubled likewise;
* per step, per latent tile: the ControlNet runs on the latent batch with the batch's text
  embeddings, then the UNet with the ControlNet's residuals (SeeSR 1032-1061, tiled 1115-1143;
  PASD 1018-1048, tiled 1101-1128); a tile is used when the latent is larger than
  ``latent_tiled_size`` squared;
* CFG as ``uncond + s (text - uncond)`` on the stitched prediction (SeeSR 1182-1183, PASD
  1167-1168), then ``scheduler.step(..., generator=...)`` where the scheduler takes one;
* the VAE posterior sampled (SeeSR 989 without a generator, PASD 720 with it).

What they simplify: no tiled VAE (``_init_tiled_vae`` records its sizes), tiles averaged with
equal weights (upstream: Gaussian weights), no guess mode, one image per prompt.

Every call appends an event to :data:`EVENTS` and, when ``ZEPHIR_STANDIN_LOG`` names a file, a
JSON line to it: the embeddings the pipeline was given (row digests), the generator's state,
which module stood in the UNet's place, what the ControlNet and UNet saw at each call.
"""
from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

EVENTS: list[dict] = []
"""Everything recorded in this process, in order."""


def digest(t: torch.Tensor | None) -> list[str] | None:
    """sha1 (12 hex digits) of each row of ``t`` in float32: equal rows, equal digests."""
    if t is None:
        return None
    rows = t.detach().to("cpu", torch.float32).contiguous()
    return [hashlib.sha1(r.numpy().tobytes()).hexdigest()[:12] for r in rows]


def generator_digest(generator) -> str | None:
    """sha1 of a CPU generator's state (None without one)."""
    if generator is None:
        return None
    return hashlib.sha1(generator.get_state().numpy().tobytes()).hexdigest()[:12]


def record(event: dict) -> None:
    """Keep ``event`` (and append it to ``$ZEPHIR_STANDIN_LOG`` as one JSON line)."""
    EVENTS.append(event)
    path = os.environ.get("ZEPHIR_STANDIN_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(event, sort_keys=True) + "\n")


def with_extra_tokens(hidden: torch.Tensor, extra: torch.Tensor | None, *, who: str
                      ) -> torch.Tensor:
    """The text tokens followed by ``extra`` tokens (SeeSR's RAM image embeddings, which its
    UNet and ControlNet attend to; the stand-ins append them to the cross-attention input).
    A batch mismatch is an error, as in the real cross-attention."""
    if extra is None:
        return hidden
    if extra.shape[0] != hidden.shape[0] or extra.shape[-1] != hidden.shape[-1]:
        raise ValueError(f"{who}: image_encoder_hidden_states {tuple(extra.shape)} do not fit "
                         f"encoder_hidden_states {tuple(hidden.shape)}")
    return torch.cat([hidden, extra.to(hidden)], dim=1)


def pipeline_class(base):
    """The stand-ins' pipeline base, on ``base`` (diffusers' ``DiffusionPipeline``): upstream's
    constructor (the modules, the VAE's scale factor, the image post-processor) and
    ``_init_tiled_vae``, which here keeps the tile sizes (and records them) without tiling."""
    from diffusers.image_processor import VaeImageProcessor

    class ControlNetSRPipeline(base):
        standin = ""

        def __init__(self, vae, text_encoder, tokenizer, unet, controlnet, scheduler,
                     safety_checker, feature_extractor, requires_safety_checker=True):
            super().__init__()
            self.register_modules(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                                  unet=unet, controlnet=controlnet, scheduler=scheduler,
                                  safety_checker=safety_checker,
                                  feature_extractor=feature_extractor)
            self.vae_scale_factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
            self.image_processor = VaeImageProcessor(vae_scale_factor=self.vae_scale_factor)
            self.register_to_config(requires_safety_checker=requires_safety_checker)
            self.vae_tiles = None

        def _init_tiled_vae(self, encoder_tile_size=256, decoder_tile_size=256,
                            fast_decoder=False, fast_encoder=False, color_fix=False,
                            vae_to_gpu=True):
            self.vae_tiles = (encoder_tile_size, decoder_tile_size)
            record({"event": f"{self.standin}._init_tiled_vae",
                    "encoder_tile_size": encoder_tile_size,
                    "decoder_tile_size": decoder_tile_size})

    return ControlNetSRPipeline


def pil_to_tensor(image) -> torch.Tensor:
    """PIL image(s) -> (B, 3, H, W) float in [0, 1] (upstream ``prepare_image``, no normalising)."""
    images = image if isinstance(image, (list, tuple)) else [image]
    arr = np.stack([np.asarray(i.convert("RGB"), dtype=np.float32) / 255.0 for i in images])
    return torch.from_numpy(arr.transpose(0, 3, 1, 2).copy())


def tiles(size: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of ``tile`` covering ``size`` with at least ``overlap`` shared;
    the last tile ends at the border."""
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile, tile - overlap))
    return starts + [size - tile]


def encode_prompt(pipe, prompt, negative_prompt, prompt_embeds, negative_prompt_embeds,
                  cfg: bool, device) -> torch.Tensor:
    """The prompt batch: ``[negative; positive]`` under CFG (upstream ``_encode_prompt``)."""
    def encode(texts):
        ids = pipe.tokenizer(texts, padding="max_length", truncation=True,
                             max_length=pipe.tokenizer.model_max_length,
                             return_tensors="pt").input_ids
        return pipe.text_encoder(ids.to(device))[0]

    if prompt_embeds is None:
        prompt_embeds = encode([prompt] if isinstance(prompt, str) else list(prompt))
    prompt_embeds = prompt_embeds.to(device=device, dtype=pipe.text_encoder.dtype)
    if not cfg:
        return prompt_embeds
    if negative_prompt_embeds is None:
        negative_prompt_embeds = encode([negative_prompt or ""] * prompt_embeds.shape[0])
    negative_prompt_embeds = negative_prompt_embeds.to(prompt_embeds)
    return torch.cat([negative_prompt_embeds, prompt_embeds])


def denoise(pipe, *, latents, timesteps, prompt_embeds, image, cfg: bool, scale: float,
            conditioning_scale, tile: int, overlap: int, generator, run_controlnet,
            unet_kwargs: dict, start_steps: int | None = None) -> torch.Tensor:
    """Upstream's loop (see the module doc). ``run_controlnet(latent_tile, t, embeds,
    image_tile)`` returns ``(down_residuals, mid_residual)``; ``unet_kwargs`` go to every UNet
    call (SeeSR's ``image_encoder_hidden_states``)."""
    import inspect

    factor = pipe.vae_scale_factor
    takes_generator = "generator" in inspect.signature(pipe.scheduler.step).parameters
    step_kwargs = {"generator": generator} if takes_generator else {}
    for t in timesteps:
        if start_steps is not None and t > start_steps:
            continue
        model_in = torch.cat([latents] * 2) if cfg else latents
        model_in = pipe.scheduler.scale_model_input(model_in, t)
        _, _, h, w = model_in.shape
        if h * w <= tile * tile:
            rows, cols, size_h, size_w = [0], [0], h, w
        else:
            size = min(tile, h, w)
            rows, cols, size_h, size_w = tiles(h, size, overlap), tiles(w, size, overlap), size, size
        noise = torch.zeros_like(model_in)
        count = torch.zeros_like(model_in)
        for y in rows:
            for x in cols:
                part = model_in[:, :, y:y + size_h, x:x + size_w]
                img = image[:, :, y * factor:(y + size_h) * factor,
                            x * factor:(x + size_w) * factor]
                down, mid = run_controlnet(part, t, prompt_embeds, img)
                out = pipe.unet(part, t, encoder_hidden_states=prompt_embeds,
                                down_block_additional_residuals=down,
                                mid_block_additional_residual=mid, return_dict=False,
                                **unet_kwargs)[0]
                noise[:, :, y:y + size_h, x:x + size_w] += out
                count[:, :, y:y + size_h, x:x + size_w] += 1
        noise = noise / count
        if cfg:
            uncond, text = noise.chunk(2)
            noise = uncond + scale * (text - uncond)
        latents = pipe.scheduler.step(noise, t, latents, return_dict=False, **step_kwargs)[0]
    return latents


def call_event(pipe, name: str, *, prompt_embeds, negative_prompt_embeds, generator, image,
               steps, scale, **extra) -> dict:
    """The event a pipeline call records on entry."""
    return {"event": f"{name}.__call__", "unet": type(pipe.unet).__name__,
            "prompt_embeds": digest(prompt_embeds),
            "prompt_embeds_shape": None if prompt_embeds is None else list(prompt_embeds.shape),
            "negative_prompt_embeds": digest(negative_prompt_embeds),
            "generator": generator_digest(generator),
            "generator_type": type(generator).__name__, "image_size": list(image.size),
            "steps": steps, "guidance_scale": scale, **extra}


def to_pil(pipe, latents: torch.Tensor) -> list:
    """Decode and post-process as the pipelines do (``[-1, 1]`` -> PIL)."""
    decoded = pipe.vae.decode(latents / pipe.vae.config.scaling_factor, return_dict=False)[0]
    return pipe.image_processor.postprocess(decoded, output_type="pil",
                                            do_denormalize=[True] * decoded.shape[0])


# --------------------------------------------------------------------------- colour fixes

def _as_tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32)
                            .transpose(2, 0, 1).copy()).unsqueeze(0) / 255.0


def _as_image(t: torch.Tensor) -> Image.Image:
    arr = (t.clamp(0, 1)[0].numpy().transpose(1, 2, 0) * 255.0).round().astype(np.uint8)
    return Image.fromarray(arr)


def adain_color_fix(target: Image.Image, source: Image.Image) -> Image.Image:
    """``target`` with each channel's mean and standard deviation taken from ``source``."""
    x, ref = _as_tensor(target), _as_tensor(source.resize(target.size))
    mean, std = x.mean((2, 3), keepdim=True), x.std((2, 3), keepdim=True) + 1e-5
    rmean, rstd = ref.mean((2, 3), keepdim=True), ref.std((2, 3), keepdim=True)
    return _as_image((x - mean) / std * rstd + rmean)


def _low_pass(x: torch.Tensor, levels: int = 5) -> torch.Tensor:
    for i in range(levels):
        r = 2 ** i
        x = F.avg_pool2d(F.pad(x, (r, r, r, r), mode="replicate"), 2 * r + 1, stride=1)
    return x


def wavelet_color_fix(target: Image.Image, source: Image.Image) -> Image.Image:
    """``target``'s high frequencies on ``source``'s low frequencies (a box-blur pyramid)."""
    x, ref = _as_tensor(target), _as_tensor(source.resize(target.size))
    return _as_image(x - _low_pass(x) + _low_pass(ref))
