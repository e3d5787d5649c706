"""Tiny random-init diffusers pipelines, built in code and offline, for the guidance tests.

The models follow the sizes diffusers' own tests use (UNet of two levels with a handful of
channels, a two-level VAE, a CLIP text model of width 32). The tokenizer is the real CLIP BPE,
built from open_clip's bundled ``bpe_simple_vocab_16e6.txt.gz``, so that different prompts give
different token ids (a tokenizer without its files maps every word to one id).
"""
from __future__ import annotations

from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    ControlNetModel,
    DDIMScheduler,
    DDPMScheduler,
    StableDiffusionControlNetImg2ImgPipeline,
    StableDiffusionControlNetPipeline,
    StableDiffusionImg2ImgPipeline,
    StableDiffusionUpscalePipeline,
    StableDiffusionXLImg2ImgPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

CONTEXT = 77
"""CLIP's context length; the text models' position table has this many entries."""
VOCAB = 49408
"""256 byte symbols, their 256 end-of-word forms, 48 894 merges, start and end tokens."""
TEXT_WIDTH = 32


def clip_tokenizer(folder: Path) -> CLIPTokenizer:
    """The real CLIP tokenizer, written into ``folder`` by zephir's tiny backbone."""
    from zephir.backbones.tiny import write_clip_tokenizer

    return CLIPTokenizer.from_pretrained(str(write_clip_tokenizer(folder)))


def _text_config(*, projection_dim: int | None = None) -> CLIPTextConfig:
    extra = {} if projection_dim is None else {"projection_dim": projection_dim}
    return CLIPTextConfig(vocab_size=VOCAB, hidden_size=TEXT_WIDTH, intermediate_size=37,
                          num_hidden_layers=2, num_attention_heads=4,
                          max_position_embeddings=CONTEXT, bos_token_id=VOCAB - 2,
                          eos_token_id=VOCAB - 1, pad_token_id=VOCAB - 1, **extra)


def _vae(*, scaling_factor: float = 0.18215) -> AutoencoderKL:
    return AutoencoderKL(block_out_channels=(4, 8), norm_num_groups=2, latent_channels=4,
                         down_block_types=("DownEncoderBlock2D",) * 2, force_upcast=False,
                         up_block_types=("UpDecoderBlock2D",) * 2, scaling_factor=scaling_factor)


def sd_unet(*, in_channels: int = 4, num_class_embeds: int | None = None,
            block_out_channels: tuple[int, ...] = (8, 16)) -> UNet2DConditionModel:
    """An SD 1.5-layout UNet (cross-attention width 32) with random weights."""
    return UNet2DConditionModel(
        block_out_channels=block_out_channels, layers_per_block=1, norm_num_groups=4,
        in_channels=in_channels, out_channels=4, sample_size=16,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), attention_head_dim=2,
        cross_attention_dim=TEXT_WIDTH, num_class_embeds=num_class_embeds)


def _scheduler() -> DDIMScheduler:
    return DDIMScheduler(beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False,
                         steps_offset=1)


def controlnet(*, cls: type[ControlNetModel] = ControlNetModel) -> ControlNetModel:
    """A ControlNet of ``sd_unet``'s layout. Its zero convolutions get random weights, so that
    its residuals are not zero and depend on the prompt (a fresh ControlNet's are all zero)."""
    net = cls(block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4, in_channels=4,
              down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), attention_head_dim=2,
              cross_attention_dim=TEXT_WIDTH, conditioning_embedding_out_channels=(8, 16))
    for conv in [*net.controlnet_down_blocks, net.controlnet_mid_block]:
        torch.nn.init.normal_(conv.weight, std=0.1)
    return net


def _sd(cls: type, tokenizer: CLIPTokenizer, seed: int, **extra):
    """An SD 1.5 pipeline of class ``cls`` from tiny random-init parts (and ``extra`` ones)."""
    torch.manual_seed(seed)
    parts = {"vae": _vae(), "text_encoder": CLIPTextModel(_text_config()),
             "tokenizer": tokenizer, "unet": sd_unet(), "scheduler": _scheduler(),
             "safety_checker": None, "feature_extractor": None,
             "requires_safety_checker": False}
    pipe = cls(**parts, **{name: make() for name, make in extra.items()})
    pipe.set_progress_bar_config(disable=True)
    return pipe


def sd_img2img(tokenizer: CLIPTokenizer, *, seed: int = 0) -> StableDiffusionImg2ImgPipeline:
    """SD 1.5 img2img."""
    return _sd(StableDiffusionImg2ImgPipeline, tokenizer, seed)


def sd_controlnet_img2img(tokenizer: CLIPTokenizer, *, seed: int = 0
                          ) -> StableDiffusionControlNetImg2ImgPipeline:
    """SD 1.5 ControlNet img2img (see ``controlnet`` for the ControlNet's weights)."""
    return _sd(StableDiffusionControlNetImg2ImgPipeline, tokenizer, seed, controlnet=controlnet)


def sd_multi_controlnet_img2img(tokenizer: CLIPTokenizer, *, seed: int = 0
                                ) -> StableDiffusionControlNetImg2ImgPipeline:
    """SD 1.5 ControlNet img2img with two ControlNets (diffusers wraps the list in a
    ``MultiControlNetModel``, which sums their residuals)."""
    return _sd(StableDiffusionControlNetImg2ImgPipeline, tokenizer, seed,
               controlnet=lambda: [controlnet(), controlnet()])


def sd_controlnet(tokenizer: CLIPTokenizer, *, seed: int = 0
                  ) -> StableDiffusionControlNetPipeline:
    """SD 1.5 ControlNet text-to-image (see ``controlnet`` for the ControlNet's weights)."""
    return _sd(StableDiffusionControlNetPipeline, tokenizer, seed, controlnet=controlnet)


def sd_upscale(tokenizer: CLIPTokenizer, *, seed: int = 0) -> StableDiffusionUpscalePipeline:
    """The x4 upscaler's layout: UNet input = 4 latent + 3 image channels, the noise level as a
    class label (here a 2x VAE, so the output is twice the input)."""
    torch.manual_seed(seed)
    pipe = StableDiffusionUpscalePipeline(
        vae=_vae(scaling_factor=0.08333), text_encoder=CLIPTextModel(_text_config()),
        tokenizer=tokenizer, unet=sd_unet(in_channels=7, num_class_embeds=100),
        low_res_scheduler=DDPMScheduler(), scheduler=DDIMScheduler(prediction_type="v_prediction"),
        safety_checker=None, feature_extractor=None, watermarker=None, max_noise_level=350)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def sdxl_img2img(tokenizer: CLIPTokenizer, *, seed: int = 0
                 ) -> StableDiffusionXLImg2ImgPipeline:
    """SDXL img2img: two text encoders (cross-attention width 2 x 32), pooled embeddings of the
    second (32) and six time ids, embedded 8 wide each (``6 * 8 + 32 = 80``)."""
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4, sample_size=16,
        in_channels=4, out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(2, 4),
        use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 1), projection_class_embeddings_input_dim=80,
        cross_attention_dim=2 * TEXT_WIDTH)
    pipe = StableDiffusionXLImg2ImgPipeline(
        vae=_vae(), text_encoder=CLIPTextModel(_text_config()),
        text_encoder_2=CLIPTextModelWithProjection(_text_config(projection_dim=TEXT_WIDTH)),
        tokenizer=tokenizer, tokenizer_2=tokenizer, unet=unet,
        scheduler=DDIMScheduler(beta_schedule="scaled_linear", timestep_spacing="leading",
                                steps_offset=1, clip_sample=False, set_alpha_to_one=False),
        requires_aesthetics_score=False, force_zeros_for_empty_prompt=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


class RamUNet(UNet2DConditionModel):
    """SeeSR's UNet call: one more keyword, ``image_encoder_hidden_states`` (RAM's image
    embeddings, a row per batch row; SeeSR ``models/unet_2d_condition.py`` 715-730), here
    appended to the text tokens so that the prediction depends on it."""

    def forward(self, sample, timestep, encoder_hidden_states, *, image_encoder_hidden_states,
                **kwargs):
        tokens = torch.cat([encoder_hidden_states, image_encoder_hidden_states], dim=1)
        return super().forward(sample, timestep, tokens, **kwargs)


class RamControlNet(ControlNetModel):
    """SeeSR's and PASD's ControlNet calls in one: SeeSR's ``image_encoder_hidden_states``
    (``models/controlnet.py`` 630-645, appended to the text tokens as in ``RamUNet``) and
    PASD's output ``(rgbs, down residuals, mid residual)`` with ``return_dict=False``
    (``pasd/models/pasd/controlnet.py`` 860; the "rgbs" here: a channel of the condition)."""

    def forward(self, sample, timestep, encoder_hidden_states, controlnet_cond, *,
                image_encoder_hidden_states, return_dict=True, **kwargs):
        tokens = torch.cat([encoder_hidden_states, image_encoder_hidden_states], dim=1)
        down, mid = super().forward(sample, timestep, tokens, controlnet_cond,
                                    return_dict=False, **kwargs)
        return [controlnet_cond[:, :1]], down, mid


def ram_networks(*, seed: int = 0) -> tuple[RamUNet, RamControlNet]:
    """A ``RamUNet`` and a ``RamControlNet`` of ``sd_unet``'s layout, random weights."""
    torch.manual_seed(seed)
    unet = RamUNet(**{k: v for k, v in sd_unet().config.items() if not k.startswith("_")})
    return unet, controlnet(cls=RamControlNet)
