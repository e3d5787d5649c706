"""CFPG as a diffusers guider (``diffusers.guiders``), for modular pipelines (eq. 12-15).

The guider names the four predictions of eq. 12-15 and combines them with ``cfpg``; the denoiser
block that owns the passes fills them in. Each input field handed to ``prepare_inputs`` is a
4-tuple ``(cond, uncond, cond_hd, uncond_hd)``: the prompt, the negative prompt, and the same two
with HD-CLIP conditioning (a plain tensor is shared by all passes). Only the passes that count
are prepared: all four with CFG, ``pred_cond`` and ``pred_cond_hd`` without it, when the guided
prediction is the rectified positive one (eq. 15 at ``s = 1``). diffusers' SDXL modular denoiser
builds 2-tuples only, so a pipeline needs its own 4-pass denoiser block to use this guider; for
the classic pipelines use ``CFPGDenoiser`` (wrap.py).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from diffusers.configuration_utils import register_to_config
from diffusers.guiders.guider_utils import BaseGuidance, GuiderOutput, rescale_noise_cfg

from zephir.guidance.cfpg import W_ORTH, W_PAR, cfpg, rectify

if TYPE_CHECKING:
    from diffusers.modular_pipelines.modular_pipeline import BlockState


class CFPGGuidance(BaseGuidance):
    r"""Classifier-free projection guidance (ZePHiR, eq. 12-15).

        eps~+ = eps_t+ + w_par D+_par + w_orth D+_orth,   D+ = eps_h+ - eps_t+
        eps~- = eps_t- + w_par D-_par + w_orth D-_orth,   D- = eps_h- - eps_t-
        eps   = eps~- + guidance_scale (eps~+ - eps~-)

    ``_par``/``_orth``: the parts parallel/orthogonal to the branch's text prediction (eq. 13).

    Args:
        guidance_scale: CFG scale ``s``; CFG is off at 1.0.
        w_par: weight of the parallel (fidelity) part.
        w_orth: weight of the orthogonal (compensation) part.
        guidance_rescale: rescaling against over-exposure (Lin et al. 2023, section 3.4), applied
            against the rectified positive prediction, as the SDXL pipeline does with CFG.
        start, stop: fractions of the denoising steps between which CFG runs.
        enabled: whether CFG runs at all.
    """

    _input_predictions: ClassVar[list[str]] = [
        "pred_cond", "pred_uncond", "pred_cond_hd", "pred_uncond_hd"]
    _slot: ClassVar[dict[str, int]] = {name: i for i, name in enumerate(_input_predictions)}
    _conditional: ClassVar[tuple[str, ...]] = ("pred_cond", "pred_cond_hd")

    @register_to_config
    def __init__(self, guidance_scale: float = 7.5, w_par: float = W_PAR, w_orth: float = W_ORTH,
                 guidance_rescale: float = 0.0, start: float = 0.0, stop: float = 1.0,
                 enabled: bool = True) -> None:
        super().__init__(start, stop, enabled)
        self.guidance_scale = guidance_scale
        self.w_par = w_par
        self.w_orth = w_orth
        self.guidance_rescale = guidance_rescale

    def _is_cfg_enabled(self) -> bool:
        if not self._enabled or math.isclose(self.guidance_scale, 1.0):
            return False
        if self._num_inference_steps is None:
            return True
        first = int(self._start * self._num_inference_steps)
        last = int(self._stop * self._num_inference_steps)
        return first <= self._step < last

    def active_predictions(self) -> list[str]:
        """The passes to run at the current step, in the order ``prepare_inputs`` returns."""
        if self._is_cfg_enabled():
            return list(self._input_predictions)
        return ["pred_cond", "pred_cond_hd"]

    @property
    def num_conditions(self) -> int:
        return len(self.active_predictions())

    @property
    def is_conditional(self) -> bool:
        # prepare_models counts the passes in the order of active_predictions.
        return self.active_predictions()[self._count_prepared - 1] in self._conditional

    def prepare_inputs(self, data: dict[str, Any]) -> list[BlockState]:
        return [self._prepare_batch(data, self._slot[name], name)
                for name in self.active_predictions()]

    def prepare_inputs_from_block_state(self, data: BlockState,
                                        input_fields: dict[str, Any]) -> list[BlockState]:
        return [self._prepare_batch_from_block_state(input_fields, data, self._slot[name], name)
                for name in self.active_predictions()]

    def forward(self, pred_cond: torch.Tensor, pred_uncond: torch.Tensor | None = None,
                pred_cond_hd: torch.Tensor | None = None,
                pred_uncond_hd: torch.Tensor | None = None) -> GuiderOutput:
        assert pred_cond_hd is not None, "CFPG needs the HD-CLIP-conditioned prediction"
        if self._is_cfg_enabled():
            pred = cfpg(pred_uncond, pred_cond, pred_uncond_hd, pred_cond_hd, w_par=self.w_par,
                        w_orth=self.w_orth, scale=self.guidance_scale)
        else:
            pred = rectify(pred_cond, pred_cond_hd, w_par=self.w_par, w_orth=self.w_orth)
        if self.guidance_rescale > 0.0:
            pos = rectify(pred_cond, pred_cond_hd, w_par=self.w_par, w_orth=self.w_orth)
            pred = rescale_noise_cfg(pred, pos, self.guidance_rescale)
        return GuiderOutput(pred=pred, pred_cond=pred_cond, pred_uncond=pred_uncond)
