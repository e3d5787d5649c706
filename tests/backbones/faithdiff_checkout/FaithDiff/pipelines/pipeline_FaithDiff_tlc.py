# ruff: noqa: N999  (upstream's module name)
"""Stand-in for FaithDiff's pipeline module: ``FaithDiffStableDiffusionXLPipeline`` with
upstream's constructor, ``from_pretrained`` keywords, ``encode_prompt``, tiling methods and
``__call__`` keywords, at tiny size on CPU (see README.md of this folder)."""
import inspect
import json
from pathlib import Path
from types import SimpleNamespace

import diffusers
import numpy as np
import torch
from diffusers import DiffusionPipeline
from diffusers.image_processor import VaeImageProcessor
from diffusers.utils.torch_utils import randn_tensor

RECORD = {"from_pretrained": [], "encode_prompt": [], "call": []}
HALF = 16
"""Width of each tiny text encoder (their hidden states are joined: 2 x 16 = the UNet's 32)."""


def _text_encoders():
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from zephir.backbones.tiny import CONTEXT, VOCAB

    config = {"vocab_size": VOCAB, "hidden_size": HALF, "intermediate_size": 32,
              "num_hidden_layers": 2, "num_attention_heads": 2,
              "max_position_embeddings": CONTEXT, "bos_token_id": VOCAB - 2,
              "eos_token_id": VOCAB - 1, "pad_token_id": VOCAB - 1}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(2)
        one = CLIPTextModel(CLIPTextConfig(**config))
        two = CLIPTextModelWithProjection(CLIPTextConfig(**config, projection_dim=32))
    return one, two


class FaithDiffStableDiffusionXLPipeline(DiffusionPipeline):
    def __init__(self, vae, denoise_encoder, text_encoder, text_encoder_2, tokenizer,
                 tokenizer_2, unet, scheduler, DDPM_scheduler,
                 force_zeros_for_empty_prompt=True, add_watermarker=None):
        super().__init__()
        self.register_modules(vae=vae, denoise_encoder=denoise_encoder,
                              text_encoder=text_encoder, text_encoder_2=text_encoder_2,
                              tokenizer=tokenizer, tokenizer_2=tokenizer_2, unet=unet,
                              scheduler=scheduler, DDPM_scheduler=DDPM_scheduler)
        self.register_to_config(force_zeros_for_empty_prompt=force_zeros_for_empty_prompt)
        self.vae_scale_factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        self.image_processor = VaeImageProcessor(vae_scale_factor=self.vae_scale_factor)

    @classmethod
    def from_pretrained(cls, path, **kwargs):
        """The SDXL folder's scheduler (the class its scheduler_config.json names); tiny text
        encoders and the CLIP tokenizer; no UNet (the caller sets ``pipe.unet``)."""
        from zephir.backbones.tiny import clip_tokenizer

        RECORD["from_pretrained"].append((str(path), dict(kwargs)))
        config = json.loads((Path(path) / "scheduler" / "scheduler_config.json").read_text())
        scheduler = getattr(diffusers, config["_class_name"]).from_pretrained(
            path, subfolder="scheduler")
        one, two = _text_encoders()
        dtype = kwargs.get("torch_dtype", kwargs.get("dtype", torch.float32))
        return cls(vae=kwargs["vae"], denoise_encoder=kwargs["denoise_encoder"],
                   text_encoder=one.to(dtype), text_encoder_2=two.to(dtype),
                   tokenizer=clip_tokenizer(), tokenizer_2=clip_tokenizer(), unet=None,
                   scheduler=scheduler, DDPM_scheduler=kwargs["DDPM_scheduler"])

    def set_encoder_tile_settings(self, denoise_encoder_tile_sample_min_size=1024,
                                  denoise_encoder_sample_overlap_factor=0.25,
                                  vae_sample_size=1024, vae_tile_overlap_factor=0.25):
        self.denoise_encoder.tile_sample_min_size = denoise_encoder_tile_sample_min_size
        self.denoise_encoder.tile_overlap_factor = denoise_encoder_sample_overlap_factor
        self.vae.tile_overlap_factor = vae_tile_overlap_factor

    def enable_vae_tiling(self):
        self.vae.enable_tiling()
        self.denoise_encoder.enable_tiling()

    def _encode(self, texts):
        """SDXL: both encoders' penultimate hidden states joined, the second one's pooled
        projection."""
        hidden, pooled = [], None
        for tokenizer, encoder in ((self.tokenizer, self.text_encoder),
                                   (self.tokenizer_2, self.text_encoder_2)):
            ids = tokenizer(texts, padding="max_length", max_length=tokenizer.model_max_length,
                            truncation=True, return_tensors="pt").input_ids
            out = encoder(ids, output_hidden_states=True)
            pooled = out[0]
            hidden.append(out.hidden_states[-2])
        return torch.cat(hidden, dim=-1), pooled

    def encode_prompt(self, prompt, prompt_2=None, device=None, num_images_per_prompt=1,
                      do_classifier_free_guidance=True, negative_prompt=None,
                      negative_prompt_2=None, prompt_embeds=None, negative_prompt_embeds=None,
                      pooled_prompt_embeds=None, negative_pooled_prompt_embeds=None,
                      lora_scale=None, clip_skip=None):
        RECORD["encode_prompt"].append({"prompt": prompt, "negative_prompt": negative_prompt,
                                        "cfg": do_classifier_free_guidance})
        prompt = [prompt] if isinstance(prompt, str) else list(prompt)
        embeds, pooled = self._encode(prompt)
        neg = neg_pooled = None
        if do_classifier_free_guidance:
            if negative_prompt is None and self.config.force_zeros_for_empty_prompt:
                neg, neg_pooled = torch.zeros_like(embeds), torch.zeros_like(pooled)
            else:
                negative = negative_prompt or ""
                negative = len(prompt) * [negative] if isinstance(negative, str) else negative
                neg, neg_pooled = self._encode(list(negative))

        def repeat(rows):  # upstream 684-704: num_images_per_prompt copies of each row
            n = rows.shape[0]
            if rows.dim() == 3:
                return rows.repeat(1, num_images_per_prompt, 1).view(
                    n * num_images_per_prompt, rows.shape[1], -1)
            return rows.repeat(1, num_images_per_prompt).view(n * num_images_per_prompt, -1)

        embeds, pooled = repeat(embeds), repeat(pooled)
        if neg is not None:
            neg, neg_pooled = repeat(neg), repeat(neg_pooled)
        return embeds, neg, pooled, neg_pooled

    @torch.no_grad()
    def __call__(self, lr_img=None, prompt=None, prompt_2=None, height=None, width=None,
                 num_inference_steps=50, start_point="noise", timesteps=None,
                 denoising_end=None, overlap=0.5, guidance_scale=5.0, negative_prompt=None,
                 negative_prompt_2=None, num_images_per_prompt=1, eta=0.0, generator=None,
                 latents=None, prompt_embeds=None, negative_prompt_embeds=None,
                 pooled_prompt_embeds=None, negative_pooled_prompt_embeds=None,
                 output_type="pil", return_dict=True, cross_attention_kwargs=None,
                 guidance_rescale=0.0, original_size=None, target_size=None, clip_skip=None,
                 callback_on_step_end=None, callback_on_step_end_tensor_inputs=None,
                 add_sample=True, **kwargs):
        rec = {"lr_img": np.asarray(lr_img).copy(), "prompt": prompt,
               "negative_prompt": negative_prompt, "steps": num_inference_steps,
               "start_point": start_point, "overlap": overlap, "scale": guidance_scale,
               "height": height, "width": width, "target_size": target_size,
               "seed": generator.initial_seed(), "unet": self.unet,
               "scheduler": type(self.scheduler),
               "tiling": (self.vae.use_tiling, self.denoise_encoder.use_tiling)}
        RECORD["call"].append(rec)
        # upstream's check_inputs (781-784): a prompt or its embeddings, a str or a list
        if prompt is None and prompt_embeds is None:
            raise ValueError("Provide either `prompt` or `prompt_embeds`. Cannot leave both "
                             "`prompt` and `prompt_embeds` undefined.")
        if prompt is not None and not isinstance(prompt, (str, list)):
            raise ValueError(f"`prompt` has to be of type `str` or `list` but is {type(prompt)}")
        original_size = original_size or (height, width)
        target_size = target_size or (height, width)
        device = self.vae.device
        embeds, neg, pooled, neg_pooled = self.encode_prompt(
            prompt, num_images_per_prompt=1, do_classifier_free_guidance=True,
            negative_prompt=negative_prompt, lora_scale=None)
        image = self.image_processor.preprocess([lr_img], height=height, width=width).to(
            device, dtype=embeds.dtype)
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        image_latents = self.denoise_encoder(image).to(self.vae.dtype)
        shape = (1, self.vae.config.latent_channels, height // self.vae_scale_factor,
                 width // self.vae_scale_factor)
        latents = randn_tensor(shape, generator=generator, device=device, dtype=embeds.dtype)
        rec["noise"] = latents.clone()
        latents = latents * self.scheduler.init_noise_sigma
        if start_point == "lr":
            posterior = self.vae.encode(image).latent_dist.sample()
            rec["posterior"] = posterior.clone()
            start = torch.full((1,), 999, dtype=torch.long, device=device)
            latents = self.DDPM_scheduler.add_noise(posterior * self.vae.config.scaling_factor,
                                                    latents, start)
        cfg = guidance_scale > 1 and self.unet.config.time_cond_proj_dim is None
        hidden = torch.cat([neg, embeds]) if cfg else embeds
        text = torch.cat([neg_pooled, pooled]) if cfg else pooled
        rows = 2 if cfg else 1
        time_ids = torch.tensor([[*original_size, 0, 0, *target_size]], dtype=embeds.dtype,
                                device=device).repeat(rows, 1)
        step = set(inspect.signature(self.scheduler.step).parameters)
        extra = {"generator": generator} if "generator" in step else {}
        for t in self.scheduler.timesteps:
            model_in = self.scheduler.scale_model_input(torch.cat([latents] * rows), t)
            pred = self.unet(model_in, t, encoder_hidden_states=hidden, timestep_cond=None,
                             cross_attention_kwargs=cross_attention_kwargs,
                             input_embedding=torch.cat([image_latents] * rows),
                             add_sample=add_sample,
                             added_cond_kwargs={"text_embeds": text, "time_ids": time_ids},
                             return_dict=False)[0]
            if cfg:
                uncond, cond = pred.chunk(2)
                pred = uncond + guidance_scale * (cond - uncond)
            latents = self.scheduler.step(pred, t, latents, **extra, return_dict=False)[0]
        decoded = self.vae.decode(latents / self.vae.config.scaling_factor, return_dict=False)[0]
        images = self.image_processor.postprocess(decoded, output_type="pil")
        rec["image"] = np.asarray(images[0]).copy()
        return SimpleNamespace(images=images)
