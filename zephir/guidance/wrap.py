"""CFPG inside an unmodified diffusers pipeline: a stand-in for the UNet (eq. 12-15).

A diffusers pipeline with classifier-free guidance calls its UNet once per step on the batch
``[negative rows; positive rows]`` and then computes eq. 15, ``eps- + s (eps+ - eps-)``, itself.
``CFPGDenoiser`` takes the UNet's place: it runs the wrapped UNet on the pipeline's batch (the
text predictions ``eps_t-``, ``eps_t+``), runs it once more on the same batch with the
encoder hidden states replaced by the HD-CLIP pair (``eps_h-``, ``eps_h+``), and returns the
rectified pair ``[eps~-; eps~+]`` of eq. 12-14. The pipeline's own CFG line then computes eq. 15
unchanged, so SD img2img, ControlNet img2img, the x4 upscaler, SDXL img2img and the upstream SR
loops (SeeSR, PASD, FaithDiff) run CFPG without an edited line.

What the HD pass reuses from the text pass, and why:

* the latents, timestep, ``class_labels`` (the upscaler's noise level), ``timestep_cond``,
  ``cross_attention_kwargs`` and any extra inputs (SeeSR's ``image_encoder_hidden_states``):
  they do not depend on the prompt, so reusing them is exact;
* ControlNet residuals (``down_block_additional_residuals``, ``mid_block_additional_residual``):
  the ControlNet ran once, on the text embeddings. Re-running it on the HD pair would need the
  ControlNet inside the stand-in; reusing its residuals keeps the LQ image's structural control
  identical in both passes, so the deviation ``D`` (eq. 12) measures only what the HD-CLIP
  embeddings change through the UNet's cross-attention: the quantity CFPG re-weights. Guess
  mode's zero residuals on the negative rows are reused row for row, as they should be;
* SDXL's ``added_cond_kwargs``: ``time_ids`` (sizes, crop, aesthetic score) do not depend on the
  prompt and are reused exactly, branch for branch. The pooled ``text_embeds`` are reused unless
  ``hd_added_cond_kwargs`` gives a pooled HD pair: the HD-CLIP bridge yields token embeddings,
  and keeping the pooled text vector keeps the global conditioning of both passes the same.

With CFG off (``guidance=False``) the pipeline's batch holds positive rows only and it uses the
prediction as it comes. The stand-in then returns ``eps~+`` alone, rectified against the
positive HD row: eq. 15 at ``s = 1`` (``eps~- + 1 (eps~+ - eps~-) = eps~+``), which is what CFG
off means. The flag is explicit because the batch alone cannot tell: ``num_images_per_prompt=2``
without CFG also gives a batch of two.

    pipe.unet = CFPGDenoiser(pipe.unet, hd_encoder_hidden_states=hd_pair)
    # or, restoring the plain UNet afterwards:
    with wrap_pipeline(pipe, hd_encoder_hidden_states=hd_pair):
        image = pipe(...).images
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from zephir.guidance.cfpg import W_ORTH, W_PAR, rectify


def _pair_to_batch(pair: torch.Tensor, *, batch: int, guidance: bool) -> torch.Tensor:
    """Rows for the HD pass from a ``[negative, positive]`` pair (first dimension 2).

    With CFG the batch is ``[negative rows; positive rows]`` (diffusers' order), each half of
    ``batch // 2`` rows; without CFG every row is positive.
    """
    assert pair.shape[0] == 2, f"expected a [negative, positive] pair, got {tuple(pair.shape)}"
    if not guidance:
        return pair[1:].repeat_interleave(batch, dim=0)
    assert batch % 2 == 0, f"a CFG batch is [negative; positive], got {batch} rows"
    return pair.repeat_interleave(batch // 2, dim=0)


class CFPGDenoiser(torch.nn.Module):
    """Stand-in for a diffusers UNet that returns CFPG's rectified pair (eq. 12-14).

    Args:
        unet: the wrapped denoiser (``UNet2DConditionModel`` or any module with its call
            signature ``unet(sample, timestep, encoder_hidden_states, **kwargs)``).
        hd_encoder_hidden_states: ``(2, L, D)``, the HD-CLIP-conditioned ``[negative, positive]``
            encoder hidden states in the backbone's text space (degradation cues in the negative
            row, semantic cues in the positive one); repeated to the batch. ``L`` may differ from
            the prompt's length, ``D`` is the UNet's cross-attention width.
        w_par, w_orth: eq. 14's weights.
        guidance: whether the pipeline runs CFG (its batch is ``[negative; positive]``). Without
            it the stand-in returns the rectified positive prediction (eq. 15 at ``s = 1``).
        hd_added_cond_kwargs: entries of ``added_cond_kwargs`` to replace in the HD pass (SDXL:
            ``text_embeds`` pooled, ``time_ids``), each a ``[negative, positive]`` pair with first
            dimension 2; entries not given reuse the text pass's.

    Attribute access falls through to the wrapped UNet (``config``, ``dtype``, ``device``,
    ``add_embedding``, ``denoise_encoder`` ...), so pipelines that read them keep working.
    """

    def __init__(self, unet: torch.nn.Module, *, hd_encoder_hidden_states: torch.Tensor,
                 w_par: float = W_PAR, w_orth: float = W_ORTH, guidance: bool = True,
                 hd_added_cond_kwargs: dict[str, torch.Tensor] | None = None) -> None:
        super().__init__()
        assert hd_encoder_hidden_states.ndim == 3 and hd_encoder_hidden_states.shape[0] == 2, (
            "hd_encoder_hidden_states must be a (2, L, D) [negative, positive] pair, got "
            f"{tuple(hd_encoder_hidden_states.shape)}")
        for key, value in (hd_added_cond_kwargs or {}).items():
            assert value.shape[0] == 2, f"hd_added_cond_kwargs[{key!r}] must be a pair"
        self.unet = unet
        # A buffer follows the wrapper through .to(device, dtype); not saved in a state dict.
        self.register_buffer("hd_encoder_hidden_states", hd_encoder_hidden_states,
                             persistent=False)
        self.hd_added_cond_kwargs = dict(hd_added_cond_kwargs or {})
        self.w_par = w_par
        self.w_orth = w_orth
        self.guidance = guidance

    def __getattr__(self, name: str) -> Any:
        # nn.Module keeps parameters, buffers and submodules in registries that its own
        # __getattr__ reads; anything else is the wrapped UNet's.
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("unet"), name)

    def _hd_kwargs(self, kwargs: dict[str, Any], *, batch: int,
                   like: torch.Tensor) -> dict[str, Any]:
        """The text pass's kwargs with the HD entries of ``added_cond_kwargs`` swapped in."""
        if not self.hd_added_cond_kwargs:
            return kwargs
        added = dict(kwargs.get("added_cond_kwargs") or {})
        for key, pair in self.hd_added_cond_kwargs.items():
            ref = added.get(key, like)
            added[key] = _pair_to_batch(pair.to(device=ref.device, dtype=ref.dtype), batch=batch,
                                        guidance=self.guidance)
        return {**kwargs, "added_cond_kwargs": added}

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor | float,
                encoder_hidden_states: torch.Tensor, **kwargs: Any) -> Any:
        """Rectified predictions for the pipeline's batch, in the form the UNet returns.

        One UNet call on the pipeline's inputs, exactly as given, and one on the same inputs
        with the HD-CLIP encoder hidden states; returns ``rectify(eps_t, eps_h)`` row by row
        (eq. 12-14) as a tuple when ``return_dict=False``, else as the UNet's output object.
        """
        batch = sample.shape[0]
        assert encoder_hidden_states.shape[0] == batch, (
            f"encoder_hidden_states has {encoder_hidden_states.shape[0]} rows, sample {batch}")
        hd = _pair_to_batch(self.hd_encoder_hidden_states.to(encoder_hidden_states),
                            batch=batch, guidance=self.guidance)
        out_text = self.unet(sample, timestep, encoder_hidden_states, **kwargs)
        out_hd = self.unet(sample, timestep, hd,
                           **self._hd_kwargs(kwargs, batch=batch, like=encoder_hidden_states))
        eps = rectify(_sample(out_text), _sample(out_hd), w_par=self.w_par, w_orth=self.w_orth)
        if isinstance(out_text, tuple):
            return (eps, *out_text[1:])
        out_text.sample = eps
        return out_text


def _sample(out: Any) -> torch.Tensor:
    """The prediction from a UNet's output: ``out[0]`` of a tuple, else ``out.sample``."""
    return out[0] if isinstance(out, tuple) else out.sample


@contextmanager
def wrap_pipeline(pipe: Any, **kwargs: Any) -> Iterator[CFPGDenoiser]:
    """Install a ``CFPGDenoiser(pipe.unet, **kwargs)`` for the ``with`` block, then restore.

    Yields the stand-in (its ``w_par``, ``w_orth``, ``guidance`` and
    ``hd_encoder_hidden_states`` may be changed between calls of the pipeline).
    """
    unet = pipe.unet
    denoiser = CFPGDenoiser(unet, **kwargs)
    pipe.unet = denoiser
    try:
        yield denoiser
    finally:
        pipe.unet = unet
