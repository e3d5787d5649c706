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


def sd_controlnet_img2img(tokenizer: CLIPTokenizer, *, seed: int = 0
                          ) -> StableDiffusionControlNetImg2ImgPipeline:
    """SD 1.5 ControlNet img2img. The ControlNet's zero convolutions get random weights, so that
    its residuals are not zero and show in the output."""
    torch.manual_seed(seed)
    unet = sd_unet()
    controlnet = ControlNetModel(
        block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4, in_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), attention_head_dim=2,
        cross_attention_dim=TEXT_WIDTH, conditioning_embedding_out_channels=(8, 16))
    for conv in [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block]:
        torch.nn.init.normal_(conv.weight, std=0.1)
    pipe = StableDiffusionControlNetImg2ImgPipeline(
        vae=_vae(), text_encoder=CLIPTextModel(_text_config()), tokenizer=tokenizer, unet=unet,
        controlnet=controlnet,
        scheduler=DDIMScheduler(beta_schedule="scaled_linear", clip_sample=False,
                                set_alpha_to_one=False),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


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
