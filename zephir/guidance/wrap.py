"""CFPG inside an unmodified diffusers pipeline: the four predictions of eq. 12-15 per step.

A diffusers pipeline with classifier-free guidance calls its denoiser once per step on the
batch ``[negative rows; positive rows]`` and then computes eq. 15, ``eps- + s (eps+ - eps-)``,
itself; a ControlNet pipeline first runs the ControlNet on that batch and hands its residuals
to the UNet (diffusers' ``pipeline_controlnet*.py``, SeeSR ``pipelines/pipeline_seesr.py``
1030-1061 and, per tile, 1114-1143; PASD ``pasd/pipelines/pipeline_pasd.py`` 1018-1049 and
1101-1129). A prediction "conditioned on X" is the ControlNet and the UNet both conditioned on
X. ``CFPGDenoiser`` takes the UNet's place and makes the four predictions in one pass:

* every network runs ONCE per step (per tile) on the rows ``[t-; t+; h-; h+]``: the pipeline's
  own rows ``[t-; t+]`` as given, then the same rows with the encoder hidden states replaced
  by the HD-CLIP pair ``[h-; h+]``. The ControlNet's residuals for the HD rows come from the
  ControlNet run on the HD rows (``controlnet="rerun"``, the default: ``wrap_pipeline`` or
  ``hook_controlnet`` installs forward hooks on the pipeline's ControlNet, which keeps its
  class, so the pipelines' ``isinstance(self.controlnet, ControlNetModel)`` checks still hold;
  the hooks hand the pipeline the text rows' residuals and keep the HD rows' for the UNet);
* the UNet returns the rectified pair ``[eps~-; eps~+]`` of eq. 12-14, and the pipeline's own
  CFG line computes eq. 15 unchanged. SD img2img, ControlNet txt2img/img2img, the x4 upscaler,
  SDXL img2img and the upstream SR loops (SeeSR, PASD, FaithDiff) run CFPG without an edited
  line.

What the HD rows share with the text rows: every input of the call but the conditioning, row
for row. The rule is structural: each tensor argument (also inside dicts, lists and tuples:
``added_cond_kwargs``, ``controlnet_cond`` lists of a multi-ControlNet, residual tuples) whose
first dimension is the batch's is a per-row input and is concatenated ``[x; x]``: the latents,
``controlnet_cond``, ``class_labels`` (the upscaler's noise level), ``timestep_cond``, a per-row
``timestep``, SeeSR's ``image_encoder_hidden_states``, SDXL's ``time_ids``; anything else
(a scalar timestep, ``conditioning_scale``, flags) is shared. Replaced in the HD rows:

* ``encoder_hidden_states``: the HD-CLIP pair, repeated to the batch;
* the ``added_cond_kwargs`` entries given in ``hd_added_cond_kwargs`` (SDXL's pooled
  ``text_embeds``); others, such as ``time_ids``, do not depend on the prompt;
* ``down_block_additional_residuals`` and ``mid_block_additional_residual``: with
  ``controlnet="rerun"`` the ControlNet's residuals of the HD rows; guess mode, where the
  pipeline runs the ControlNet on the positive rows only and gives the negative rows zero
  residuals, stays row for row (``[0; r_h+]``, as ``[0; r_t+]`` for the text rows). With
  ``controlnet="reuse"`` the HD rows get the text rows' residuals (the ControlNet then sees
  the text prompt only, and ``D`` of eq. 12 measures only what the HD conditioning changes in
  the UNet's cross-attention): the behaviour before 2026-12-06, kept for comparison.

When the HD pair's token length differs from the prompt's, the rows cannot share one tensor:
each network then runs twice per step (text rows as given, then HD rows), which is exact too
and costs what two calls cost. Padding the shorter conditioning would change cross-attention
(softmax over extra tokens) unless masked, and not every upstream network takes a mask.

Exactness. With ``w_par = w_orth = 0`` eq. 14 is ``eps_t`` exactly, and the stand-ins run the
networks on the pipeline's own batch alone (no HD rows): the output is the plain pipeline's,
bit for bit. The batched call could not promise that: a row's result depends on the batch it
is computed in (CPU, one thread: the tiny UNet's text rows differ by up to 8e-7 between batch
2 and batch 4), so at other weights the text rows are those of the batched call.

With CFG off (``guidance=False``) the pipeline's batch holds positive rows only and it uses the
prediction as it comes; the rows are ``[t+; h+]`` and the stand-in returns ``eps~+``, eq. 15 at
``s = 1``. The flag is explicit because the batch alone cannot tell: ``num_images_per_prompt=2``
without CFG also gives a batch of two.

    pipe.unet = CFPGDenoiser(pipe.unet, hd_encoder_hidden_states=hd_pair)
    handle = pipe.unet.hook_controlnet(pipe.controlnet)      # ControlNet pipelines
    # or, restoring the plain pipeline afterwards:
    with wrap_pipeline(pipe, hd_encoder_hidden_states=hd_pair):
        image = pipe(...).images
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from zephir.guidance.cfpg import W_ORTH, W_PAR, rectify

CONTROLNET_MODES = ("rerun", "reuse")
"""How the HD rows get ControlNet residuals: the ControlNet run on them, or the text rows'."""
RESIDUAL_KEYS = ("down_block_additional_residuals", "mid_block_additional_residual")
"""The UNet's keyword arguments that carry a ControlNet's residuals (diffusers, SeeSR, PASD)."""


def _pair_rows(pair: torch.Tensor, *, batch: int, positive_only: bool) -> torch.Tensor:
    """Rows of a ``[negative, positive]`` pair (first dimension 2) for a batch of ``batch``.

    With CFG the batch is ``[negative rows; positive rows]`` (diffusers' order), each half of
    ``batch // 2`` rows; without CFG, and for a guess-mode ControlNet, every row is positive.
    """
    assert pair.shape[0] == 2, f"expected a [negative, positive] pair, got {tuple(pair.shape)}"
    if positive_only:
        return pair[1:].repeat_interleave(batch, dim=0)
    assert batch % 2 == 0, f"a CFG batch is [negative; positive], got {batch} rows"
    return pair.repeat_interleave(batch // 2, dim=0)


def _per_row(value: Any, batch: int) -> bool:
    return isinstance(value, torch.Tensor) and value.ndim >= 1 and value.shape[0] == batch


def _join(text: Any, hd: Any, batch: int) -> Any:
    """One call's inputs from the text rows' and the HD rows' (the same structure): per-row
    tensors concatenated ``[text; hd]``, everything else taken from the text side."""
    if _per_row(text, batch):
        return torch.cat([text, hd])
    if isinstance(text, dict):
        return {key: _join(value, hd[key], batch) for key, value in text.items()}
    if isinstance(text, (list, tuple)):
        return type(text)(_join(a, b, batch) for a, b in zip(text, hd, strict=True))
    return text


def _split(out: Any, batch: int) -> tuple[Any, Any]:
    """A network's output on ``2 * batch`` rows as the text rows' and the HD rows' outputs
    (tuples, lists, dicts and diffusers' output objects keep their type)."""
    if _per_row(out, 2 * batch):
        return out[:batch], out[batch:]
    if isinstance(out, dict):
        parts = {key: _split(value, batch) for key, value in out.items()}
        rebuild = dict if type(out) is dict else (lambda d: type(out)(**d))
        return (rebuild({k: p[0] for k, p in parts.items()}),
                rebuild({k: p[1] for k, p in parts.items()}))
    if isinstance(out, (list, tuple)):
        parts = [_split(value, batch) for value in out]
        return type(out)(p[0] for p in parts), type(out)(p[1] for p in parts)
    return out, out


def _tensors(value: Any) -> list[torch.Tensor]:
    """The tensors in ``value`` (dicts, lists, tuples), in order."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    return []


def _map_tensors(value: Any, fn: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return fn(value)
    if isinstance(value, dict):
        return {key: _map_tensors(v, fn) for key, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_map_tensors(v, fn) for v in value)
    return value


@dataclass
class _Residuals:
    """The last ControlNet call's outputs: text rows' tensors and the HD rows' counterparts."""

    text: list[torch.Tensor]
    hd: list[torch.Tensor]
    positive_only: bool

    def for_hd_rows(self, given: torch.Tensor, *, guidance: bool) -> torch.Tensor:
        """The HD rows' version of a residual the pipeline hands the UNet: the ControlNet's own
        tensor, or guess mode's ``[zeros; r]`` built from it."""
        for text, hd in zip(self.text, self.hd):
            if given is text:
                return hd
        if guidance and self.positive_only:
            for text, hd in zip(self.text, self.hd):
                n = text.shape[0]
                if (given.shape[0] == 2 * n and given.shape[1:] == text.shape[1:]
                        and torch.equal(given[n:], text) and not given[:n].any()):
                    return torch.cat([torch.zeros_like(hd), hd])
        raise ValueError(
            "CFPGDenoiser(controlnet='rerun'): a ControlNet residual reached the UNet that is "
            "neither the ControlNet's output nor guess mode's [zeros; output]; the pipeline "
            "changes the residuals in a way the stand-in does not know (use controlnet='reuse')")


class _Hooks:
    """Removable handles of the forward hooks that ``hook_controlnet`` installs."""

    def __init__(self, *handles: Any) -> None:
        self.handles = handles

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


class CFPGDenoiser(torch.nn.Module):
    """Stand-in for a diffusers UNet that returns CFPG's rectified pair (eq. 12-14).

    Args:
        unet: the wrapped denoiser (``UNet2DConditionModel`` or any module with its call
            signature ``unet(sample, timestep, encoder_hidden_states, **kwargs)``).
        hd_encoder_hidden_states: ``(2, L, D)``, the HD-CLIP-conditioned ``[negative, positive]``
            encoder hidden states in the backbone's text space (degradation cues in the negative
            row, semantic cues in the positive one); repeated to the batch. ``L`` may differ from
            the prompt's length (each network then runs twice per step), ``D`` is the
            cross-attention width.
        w_par, w_orth: eq. 14's weights.
        guidance: whether the pipeline runs CFG (its batch is ``[negative; positive]``). Without
            it the stand-in returns the rectified positive prediction (eq. 15 at ``s = 1``).
        hd_added_cond_kwargs: entries of ``added_cond_kwargs`` to replace in the HD rows (SDXL:
            ``text_embeds`` pooled), each a ``[negative, positive]`` pair with first dimension
            2; entries not given are the text rows'.
        controlnet: ``"rerun"`` (the HD rows' residuals come from the ControlNet run on the HD
            rows, see ``hook_controlnet``) or ``"reuse"`` (the text rows' residuals).

    Attribute access falls through to the wrapped UNet (``config``, ``dtype``, ``device``,
    ``add_embedding``, ``denoise_encoder`` ...), so pipelines that read them keep working.
    """

    def __init__(self, unet: torch.nn.Module, *, hd_encoder_hidden_states: torch.Tensor,
                 w_par: float = W_PAR, w_orth: float = W_ORTH, guidance: bool = True,
                 hd_added_cond_kwargs: dict[str, torch.Tensor] | None = None,
                 controlnet: str = "rerun") -> None:
        super().__init__()
        assert hd_encoder_hidden_states.ndim == 3 and hd_encoder_hidden_states.shape[0] == 2, (
            "hd_encoder_hidden_states must be a (2, L, D) [negative, positive] pair, got "
            f"{tuple(hd_encoder_hidden_states.shape)}")
        for key, value in (hd_added_cond_kwargs or {}).items():
            assert value.shape[0] == 2, f"hd_added_cond_kwargs[{key!r}] must be a pair"
        if controlnet not in CONTROLNET_MODES:
            raise ValueError(f"controlnet: expected one of {', '.join(CONTROLNET_MODES)}, got "
                             f"{controlnet!r}")
        self.unet = unet
        # A buffer follows the wrapper through .to(device, dtype); not saved in a state dict.
        self.register_buffer("hd_encoder_hidden_states", hd_encoder_hidden_states,
                             persistent=False)
        self.hd_added_cond_kwargs = dict(hd_added_cond_kwargs or {})
        self.w_par = w_par
        self.w_orth = w_orth
        self.guidance = guidance
        self.controlnet = controlnet
        self._residuals: _Residuals | None = None  # the hooked ControlNet's last call
        self._pending: tuple | None = None         # what its pre-hook left for its hook
        self._inner = False                        # the hook's own second ControlNet call

    def __getattr__(self, name: str) -> Any:
        # nn.Module keeps parameters, buffers and submodules in registries that its own
        # __getattr__ reads; anything else is the wrapped UNet's.
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("unet"), name)

    @property
    def exact(self) -> bool:
        """``w_par = w_orth = 0``: eq. 14 is the text prediction, no HD rows run."""
        return self.w_par == 0 and self.w_orth == 0

    # -- the HD rows' inputs
    def _hd_inputs(self, args: tuple, kwargs: dict[str, Any], *, positive_only: bool,
                   residuals: _Residuals | None) -> tuple[tuple, dict[str, Any]]:
        """A call's ``(args, kwargs)`` for the HD rows: ``(sample, timestep,
        encoder_hidden_states, ...)`` as given, with the conditioning replaced (module doc)."""
        sample = args[0] if args else kwargs["sample"]
        batch = sample.shape[0]
        key = "encoder_hidden_states"
        text = args[2] if len(args) > 2 else kwargs[key]
        hd = _pair_rows(self.hd_encoder_hidden_states.to(text), batch=batch,
                        positive_only=positive_only)
        hd_args, hd_kwargs = list(args), dict(kwargs)
        if len(args) > 2:
            hd_args[2] = hd
        else:
            hd_kwargs[key] = hd
        if self.hd_added_cond_kwargs:
            added = dict(kwargs.get("added_cond_kwargs") or {})
            for name, pair in self.hd_added_cond_kwargs.items():
                if name not in added:
                    raise KeyError(f"hd_added_cond_kwargs[{name!r}]: the pipeline passes no "
                                   f"added_cond_kwargs[{name!r}] to replace")
                added[name] = _pair_rows(pair.to(added[name]), batch=batch,
                                         positive_only=positive_only)
            hd_kwargs["added_cond_kwargs"] = added
        for name in RESIDUAL_KEYS:
            if kwargs.get(name) is None or self.controlnet == "reuse":
                continue
            if residuals is None:
                raise ValueError(
                    f"CFPGDenoiser(controlnet='rerun') got {name} but the ControlNet did not "
                    "run on the HD rows before: install it with wrap_pipeline(pipe, ...) or "
                    "denoiser.hook_controlnet(pipe.controlnet), or pass controlnet='reuse'")
            hd_kwargs[name] = _map_tensors(
                kwargs[name], lambda r: residuals.for_hd_rows(r, guidance=self.guidance))
        return tuple(hd_args), hd_kwargs

    def _run(self, net: Any, args: tuple, kwargs: dict[str, Any], *, positive_only: bool,
             residuals: _Residuals | None) -> tuple[Any, Any]:
        """``net``'s outputs for the text rows and the HD rows: one call on both when the
        conditionings have one shape, else two."""
        batch = (args[0] if args else kwargs["sample"]).shape[0]
        hd_args, hd_kwargs = self._hd_inputs(args, kwargs, positive_only=positive_only,
                                             residuals=residuals)
        if not self._same_length(args, kwargs, hd_args, hd_kwargs):
            return net(*args, **kwargs), net(*hd_args, **hd_kwargs)
        out = net(*_join(args, hd_args, batch), **_join(kwargs, hd_kwargs, batch))
        return _split(out, batch)

    @staticmethod
    def _same_length(args: tuple, kwargs: dict, hd_args: tuple, hd_kwargs: dict) -> bool:
        key = "encoder_hidden_states"
        text, hd = (args[2], hd_args[2]) if len(args) > 2 else (kwargs[key], hd_kwargs[key])
        return text.shape == hd.shape

    # -- the UNet
    def forward(self, sample: torch.Tensor, timestep: torch.Tensor | float,
                encoder_hidden_states: torch.Tensor, **kwargs: Any) -> Any:
        """Rectified predictions for the pipeline's batch, in the form the UNet returns.

        The wrapped UNet runs on ``[text rows; HD rows]`` (module doc); returns
        ``rectify(eps_t, eps_h)`` row by row (eq. 12-14) as a tuple when
        ``return_dict=False``, else as the UNet's output object. At ``w_par = w_orth = 0`` the
        UNet runs on the pipeline's inputs alone and its output is returned as it comes.
        """
        residuals, self._residuals = self._residuals, None
        batch = sample.shape[0]
        assert encoder_hidden_states.shape[0] == batch, (
            f"encoder_hidden_states has {encoder_hidden_states.shape[0]} rows, sample {batch}")
        args = (sample, timestep, encoder_hidden_states)
        if self.exact:
            return self.unet(*args, **kwargs)
        out_text, out_hd = self._run(self.unet, args, kwargs, positive_only=not self.guidance,
                                     residuals=residuals)
        eps = rectify(_sample(out_text), _sample(out_hd), w_par=self.w_par, w_orth=self.w_orth)
        if isinstance(out_text, tuple):
            return (eps, *out_text[1:])
        out_text.sample = eps
        return out_text

    # -- the ControlNet
    def hook_controlnet(self, controlnet: torch.nn.Module) -> _Hooks:
        """Run ``controlnet`` on the HD rows too, in the same call (``controlnet="rerun"``).

        Installs a forward pre-hook that turns each call into one on ``[text rows; HD rows]``
        and a forward hook that hands the pipeline the text rows' outputs and keeps the HD
        rows' for this stand-in's next call. The ControlNet stays the pipeline's object.
        In guess mode (``guess_mode=True`` with CFG) the ControlNet's rows are positive.
        Returns a handle whose ``remove()`` takes the hooks off again.
        """
        return _Hooks(
            controlnet.register_forward_pre_hook(self._controlnet_inputs, with_kwargs=True),
            controlnet.register_forward_hook(self._controlnet_outputs, with_kwargs=True))

    def _controlnet_inputs(self, module: torch.nn.Module, args: tuple,
                           kwargs: dict[str, Any]) -> tuple[tuple, dict] | None:
        self._pending = None
        if self._inner or self.exact or self.controlnet == "reuse":
            return None
        batch = (args[0] if args else kwargs["sample"]).shape[0]
        positive_only = not self.guidance or bool(kwargs.get("guess_mode", False))
        hd_args, hd_kwargs = self._hd_inputs(args, kwargs, positive_only=positive_only,
                                             residuals=None)
        if not self._same_length(args, kwargs, hd_args, hd_kwargs):
            self._pending = (batch, positive_only, hd_args, hd_kwargs)
            return None
        self._pending = (batch, positive_only, None, None)
        return _join(args, hd_args, batch), _join(kwargs, hd_kwargs, batch)

    def _controlnet_outputs(self, module: torch.nn.Module, args: tuple,
                            kwargs: dict[str, Any], out: Any) -> Any:
        if self._inner or self._pending is None:
            return None
        (batch, positive_only, hd_args, hd_kwargs), self._pending = self._pending, None
        if hd_args is None:
            out_text, out_hd = _split(out, batch)
        else:  # the HD conditioning has another length: a second call, for the HD rows
            self._inner = True
            try:
                out_text, out_hd = out, module(*hd_args, **hd_kwargs)
            finally:
                self._inner = False
        self._residuals = _Residuals(_tensors(out_text), _tensors(out_hd), positive_only)
        return out_text


def _sample(out: Any) -> torch.Tensor:
    """The prediction from a UNet's output: ``out[0]`` of a tuple, else ``out.sample``."""
    return out[0] if isinstance(out, tuple) else out.sample


@contextmanager
def wrap_pipeline(pipe: Any, **kwargs: Any) -> Iterator[CFPGDenoiser]:
    """Install a ``CFPGDenoiser(pipe.unet, **kwargs)`` for the ``with`` block, then restore.

    With ``controlnet="rerun"`` (the default) and a ``pipe.controlnet``, that ControlNet is
    hooked for the block too (``CFPGDenoiser.hook_controlnet``). Yields the stand-in (its
    ``w_par``, ``w_orth``, ``guidance`` and ``hd_encoder_hidden_states`` may be changed between
    calls of the pipeline).
    """
    unet = pipe.unet
    denoiser = CFPGDenoiser(unet, **kwargs)
    controlnet = getattr(pipe, "controlnet", None)
    hooks = None
    if controlnet is not None and denoiser.controlnet == "rerun":
        hooks = denoiser.hook_controlnet(controlnet)
    pipe.unet = denoiser
    try:
        yield denoiser
    finally:
        pipe.unet = unet
        if hooks is not None:
            hooks.remove()
