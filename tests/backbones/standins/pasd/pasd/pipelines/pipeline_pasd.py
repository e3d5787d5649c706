"""Stand-in for PASD ``pasd/pipelines/pipeline_pasd.py``: ``StableDiffusionControlNetPipeline``
with upstream's constructor, ``_init_tiled_vae`` and ``__call__(args, prompt, image, ...)``
(796-819).

Like upstream it imports ``diffusers.pipelines.controlnet.multicontrolnet`` (moved after 0.29).
The loop is ``standin_common.denoise``; the start latents follow ``prepare_latents`` (701-737):
with ``args.init_latent_with_noise`` pure noise from the generator (plus the global-RNG offset
noise times ``args.offset_noise_scale``), else the posterior of ``image * 2 - 1`` sampled with
the generator, noised to the first timestep and again to ``args.added_noise_level``, both noises
from the generator. Tile sizes come from ``args`` (1015).
"""
import _standin  # noqa: F401
import torch
from diffusers import DiffusionPipeline
from diffusers.pipelines.controlnet.multicontrolnet import MultiControlNetModel  # noqa: F401
from diffusers.pipelines.stable_diffusion import StableDiffusionPipelineOutput
from diffusers.utils.torch_utils import randn_tensor
from standin_common import (
    call_event,
    denoise,
    digest,
    encode_prompt,
    pil_to_tensor,
    pipeline_class,
    record,
    to_pil,
)


class StableDiffusionControlNetPipeline(pipeline_class(DiffusionPipeline)):
    standin = "pasd"

    def _start_latents(self, args, cond, shape, dtype, device, generator, event):
        if args is None or args.init_latent_with_noise:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
            offset = torch.randn(shape[0], shape[1], 1, 1, device=device).to(dtype)
            scale = args.offset_noise_scale if args is not None else 0.0
            return (latents + scale * offset) * self.scheduler.init_noise_sigma
        posterior = self.vae.encode(cond * 2.0 - 1.0).latent_dist.sample(generator)
        event["posterior"] = digest(posterior)
        latents = posterior * self.vae.config.scaling_factor
        self.scheduler.set_timesteps(args.num_inference_steps, device=device)
        first = self.scheduler.timesteps[:1].repeat(shape[0])
        noise = randn_tensor(latents.shape, generator=generator, device=device, dtype=dtype)
        latents = self.scheduler.add_noise(latents, noise, first)
        level = torch.LongTensor([args.added_noise_level]).repeat(shape[0]).to(device)
        added = randn_tensor(latents.shape, generator=generator, device=device, dtype=dtype)
        latents = self.scheduler.add_noise(latents, added, level)
        return latents * self.scheduler.init_noise_sigma

    @torch.no_grad()
    def __call__(self, args=None, prompt=None, image=None, height=None, width=None,
                 num_inference_steps=50, guidance_scale=7.5, negative_prompt=None,
                 num_images_per_prompt=1, eta=0.0, generator=None, latents=None,
                 prompt_embeds=None, negative_prompt_embeds=None, output_type="pil",
                 return_dict=True, callback=None, callback_steps=1, cross_attention_kwargs=None,
                 conditioning_scale=1.0, guidance_rescale=0.0, guess_mode=False):
        if num_images_per_prompt != 1 or guess_mode or latents is not None:
            raise NotImplementedError("the PASD stand-in runs one image, no guess mode")
        tile, overlap = ((args.latent_tiled_size, args.latent_tiled_overlap) if args is not None
                         else (256, 8))
        event = call_event(self, "pasd", prompt_embeds=prompt_embeds,
                           negative_prompt_embeds=negative_prompt_embeds, generator=generator,
                           image=image, steps=num_inference_steps, scale=guidance_scale,
                           tile=[tile, overlap], conditioning_scale=conditioning_scale,
                           vae_tiles=self.vae_tiles,
                           init_latent_with_noise=None if args is None
                           else bool(args.init_latent_with_noise))
        device = self._execution_device
        cfg = guidance_scale > 1.0
        embeds = encode_prompt(self, prompt, negative_prompt, prompt_embeds,
                               negative_prompt_embeds, cfg, device)
        cond = pil_to_tensor(image).to(device=device, dtype=self.controlnet.dtype)
        height, width = height or cond.shape[2], width or cond.shape[3]
        shape = (1, self.unet.config.in_channels, height // self.vae_scale_factor,
                 width // self.vae_scale_factor)
        latents = self._start_latents(args, cond[:1], shape, embeds.dtype, device, generator,
                                      event)
        if cfg:
            cond = torch.cat([cond] * 2)
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        event["start_latents"] = digest(latents)
        record(event)

        def run_controlnet(part, t, hidden, img):
            _, down, mid = self.controlnet(part, t, encoder_hidden_states=hidden,
                                           controlnet_cond=img,
                                           conditioning_scale=conditioning_scale,
                                           guess_mode=guess_mode, return_dict=False)
            return down, mid

        latents = denoise(self, latents=latents, timesteps=self.scheduler.timesteps,
                          prompt_embeds=embeds, image=cond, cfg=cfg, scale=guidance_scale,
                          conditioning_scale=conditioning_scale, tile=tile, overlap=overlap,
                          generator=generator, run_controlnet=run_controlnet,
                          unet_kwargs={"cross_attention_kwargs": cross_attention_kwargs})
        images = to_pil(self, latents.to(embeds.dtype))
        record({"event": "pasd.done", "unet": type(self.unet).__name__,
                "output_size": list(images[0].size)})
        if not return_dict:
            return images, None
        return StableDiffusionPipelineOutput(images=images, nsfw_content_detected=None)
