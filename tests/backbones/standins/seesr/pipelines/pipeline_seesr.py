"""Stand-in for SeeSR ``pipelines/pipeline_seesr.py``: ``StableDiffusionControlNetPipeline``
with upstream's constructor, ``_init_tiled_vae`` and ``__call__`` keywords (783-811).

Like upstream it imports ``diffusers.pipeline_utils`` (gone after diffusers 0.2x), so it needs
SeeSR's environment. The loop is ``standin_common.denoise``; ``start_point="lr"`` encodes the
ControlNet image ``image * 2 - 1`` and samples the posterior with the global RNG (upstream 989),
then noises it to ``start_steps`` with the generator's start noise (991-993). The tile sizes
apply only when ``args`` is given (upstream 1006), which is why the adapter passes one.
"""
import _standin  # noqa: F401
import torch
from diffusers.pipeline_utils import DiffusionPipeline
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
    standin = "seesr"

    @torch.no_grad()
    def __call__(self, prompt=None, image=None, height=None, width=None, num_inference_steps=50,
                 guidance_scale=7.5, negative_prompt=None, num_images_per_prompt=1, eta=0.0,
                 generator=None, latents=None, prompt_embeds=None, negative_prompt_embeds=None,
                 output_type="pil", return_dict=True, callback=None, callback_steps=1,
                 cross_attention_kwargs=None, conditioning_scale=1.0, guess_mode=False,
                 image_sr=None, start_steps=999, start_point="noise",
                 ram_encoder_hidden_states=None, latent_tiled_size=320, latent_tiled_overlap=4,
                 args=None):
        if num_images_per_prompt != 1 or guess_mode or latents is not None:
            raise NotImplementedError("the SeeSR stand-in runs one image, no guess mode")
        tile, overlap = (latent_tiled_size, latent_tiled_overlap) if args is not None else (256, 8)
        event = call_event(self, "seesr", prompt_embeds=prompt_embeds,
                           negative_prompt_embeds=negative_prompt_embeds, generator=generator,
                           image=image, steps=num_inference_steps, scale=guidance_scale,
                           height=height, width=width, start_point=start_point,
                           ram_shape=None if ram_encoder_hidden_states is None
                           else list(ram_encoder_hidden_states.shape),
                           ram_states=digest(ram_encoder_hidden_states),
                           tile=[tile, overlap], conditioning_scale=conditioning_scale,
                           vae_tiles=self.vae_tiles)
        device = self._execution_device
        cfg = guidance_scale > 1.0
        embeds = encode_prompt(self, prompt, negative_prompt, prompt_embeds,
                               negative_prompt_embeds, cfg, device)
        ram = ram_encoder_hidden_states
        if cfg and ram is not None:
            ram = torch.cat([ram, ram])
        cond = pil_to_tensor(image).to(device=device, dtype=self.controlnet.dtype)
        if cfg:
            cond = torch.cat([cond] * 2)
        height = height or cond.shape[2]
        width = width or cond.shape[3]
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        shape = (1, self.unet.config.in_channels, height // self.vae_scale_factor,
                 width // self.vae_scale_factor)
        latents = randn_tensor(shape, generator=generator, device=device, dtype=embeds.dtype)
        latents = latents * self.scheduler.init_noise_sigma
        if start_point == "lr":
            posterior = self.vae.encode(cond[:1] * 2 - 1).latent_dist.sample()  # global RNG
            event["posterior"] = digest(posterior)
            posterior = posterior * self.vae.config.scaling_factor
            latents = self.scheduler.add_noise(posterior, latents,
                                               torch.tensor([start_steps], device=device))
        event["start_latents"] = digest(latents)
        record(event)

        def run_controlnet(part, t, hidden, img):
            return self.controlnet(part, t, encoder_hidden_states=hidden, controlnet_cond=img,
                                   conditioning_scale=conditioning_scale, guess_mode=guess_mode,
                                   return_dict=False, image_encoder_hidden_states=ram)

        latents = denoise(self, latents=latents, timesteps=self.scheduler.timesteps,
                          prompt_embeds=embeds, image=cond, cfg=cfg, scale=guidance_scale,
                          conditioning_scale=conditioning_scale, tile=tile, overlap=overlap,
                          generator=generator, run_controlnet=run_controlnet,
                          unet_kwargs={"cross_attention_kwargs": cross_attention_kwargs,
                                       "image_encoder_hidden_states": ram},
                          start_steps=start_steps)
        images = to_pil(self, latents)
        record({"event": "seesr.done", "unet": type(self.unet).__name__,
                "output_size": list(images[0].size)})
        if not return_dict:
            return images, None
        return StableDiffusionPipelineOutput(images=images, nsfw_content_detected=None)
