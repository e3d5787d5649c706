"""Classifier-free projection guidance, CFPG (paper, section 3.2, eq. 12-15; supplement 7.2).

At every denoising step the backbone makes four noise predictions: ``eps_t+`` and ``eps_t-``
(conditioned on the text prompt and the negative prompt) and ``eps_h+`` and ``eps_h-`` (the same
two with HD-CLIP conditioning: semantic cues in the positive branch, degradation cues in the
negative one). CFPG splits the HD-CLIP deviation of each branch into the part parallel to the
text prediction (fidelity to the text's global context) and the part orthogonal to it
(compensation: what the LQ image adds), re-weights the two parts, and feeds the rectified pair to
the backbone's ordinary classifier-free guidance:

    eq. 12   D+ = eps_h+ - eps_t+,   D- = eps_h- - eps_t-
    eq. 13   D_par = (<D, b> / <b, b>) b,   D_orth = D - D_par       (baseline b = eps_t)
    eq. 14   eps~ = eps_t + w_par D_par + w_orth D_orth               (each branch)
    eq. 15   eps = eps~- + s (eps~+ - eps~-)                          (s: the CFG scale)

Special cases (supplement 7.2), exact up to float rounding: ``w_par = w_orth = 0`` is plain text
CFG, ``w_par = w_orth = 1`` is pure HD-CLIP CFG, and ``w_par = w_orth = w`` is CFG on the linear
interpolation ``(1 - w) eps_t + w eps_h``.

The paper's other variant, "CFG" (section 4.1), needs no extra backbone pass: the HD-CLIP
embeddings are added to the text embeddings with a fixed ratio (``add_embeddings``) and the
backbone runs its ordinary CFG.

Inner products, norms and the re-weighting run in float64; results come back in the inputs'
dtype, so float16 and bfloat16 predictions lose nothing to the projection.
"""
from __future__ import annotations

import torch

W_PAR = 1.0
"""Default weight of the parallel (fidelity) part, eq. 14 (paper, table 5)."""
W_ORTH = 0.6
"""Default weight of the orthogonal (compensation) part, eq. 14 (paper, table 5)."""
EPS = 1e-12
"""Added to ``<b, b>`` in eq. 13's denominator, so that a zero baseline gives no NaN."""


def _check_batch(*tensors: torch.Tensor) -> None:
    shape = tensors[0].shape
    assert len(shape) >= 1, "predictions need a batch dimension"
    for t in tensors[1:]:
        assert t.shape == shape, f"shape mismatch: {tuple(t.shape)} vs {tuple(shape)}"


def _parallel64(d: torch.Tensor, b: torch.Tensor, eps: float) -> torch.Tensor:
    """Eq. 13's parallel part of float64 ``d`` along float64 ``b``, per sample.

    The inner products run over each sample's flattened elements: ``sum(dim=())`` would sum
    over the whole batch when a sample is a single value (shape ``(B,)``)."""
    shape = (d.shape[0],) + (1,) * (d.ndim - 1)
    dot = (d * b).reshape(d.shape[0], -1).sum(1).reshape(shape)
    bb = (b * b).reshape(b.shape[0], -1).sum(1).reshape(shape)
    return dot / (bb + eps) * b


def project(deviation: torch.Tensor, baseline: torch.Tensor,
            eps: float = EPS) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Eq. 13: split ``deviation`` into its parts parallel and orthogonal to ``baseline``.

        D_par  = (<D, b> / (<b, b> + eps)) b
        D_orth = D - D_par

    Per sample: the inner products run over every dimension but the first (batch). Computed in
    float64; ``eps`` in the denominator makes a zero baseline give a zero parallel part (and
    ``D_orth = D``) instead of NaN.

    Args:
        deviation: ``D``, shape ``(B, ...)``.
        baseline: ``b``, the same shape.
        eps: added to ``<b, b>``.

    Returns:
        ``(D_par, D_orth)`` in ``deviation``'s dtype.
    """
    _check_batch(deviation, baseline)
    d = deviation.double()
    par = _parallel64(d, baseline.double(), eps)
    return par.to(deviation.dtype), (d - par).to(deviation.dtype)


def _rectify64(eps_text: torch.Tensor, eps_hd: torch.Tensor, *, w_par: float,
               w_orth: float) -> torch.Tensor:
    """Eq. 12 and 14 in float64 (the projection, eq. 13, too); the caller casts back."""
    text = eps_text.double()
    dev = eps_hd.double() - text
    par = _parallel64(dev, text, EPS)
    return text + w_par * par + w_orth * (dev - par)


def rectify(eps_text: torch.Tensor, eps_hd: torch.Tensor, *, w_par: float = W_PAR,
            w_orth: float = W_ORTH) -> torch.Tensor:
    r"""Eq. 12 + 14 for one branch: the rectified prediction ``eps~``.

        D    = eps_hd - eps_text                                (eq. 12)
        eps~ = eps_text + w_par D_par + w_orth D_orth           (eq. 14)

    with ``D_par`` and ``D_orth`` the parts of ``D`` parallel and orthogonal to the text
    prediction ``eps_text`` per sample (eq. 13, see ``project``). Rows are independent, so the two
    branches may go in one call (``[eps_t-; eps_t+]`` with ``[eps_h-; eps_h+]``).

    Args:
        eps_text: text-conditioned prediction, shape ``(B, ...)``.
        eps_hd: HD-CLIP-conditioned prediction, the same shape.
        w_par: weight of the parallel (fidelity) part.
        w_orth: weight of the orthogonal (compensation) part.

    Returns:
        ``eps~`` in ``eps_text``'s dtype.
    """
    _check_batch(eps_text, eps_hd)
    return _rectify64(eps_text, eps_hd, w_par=w_par, w_orth=w_orth).to(eps_text.dtype)


def cfg(eps_neg: torch.Tensor, eps_pos: torch.Tensor, scale: float) -> torch.Tensor:
    r"""Eq. 15, classifier-free guidance as diffusers writes it.

        eps = eps_neg + scale (eps_pos - eps_neg)
    """
    _check_batch(eps_neg, eps_pos)
    return eps_neg + scale * (eps_pos - eps_neg)


def cfpg(eps_text_neg: torch.Tensor, eps_text_pos: torch.Tensor, eps_hd_neg: torch.Tensor,
         eps_hd_pos: torch.Tensor, *, w_par: float = W_PAR, w_orth: float = W_ORTH,
         scale: float) -> torch.Tensor:
    r"""Classifier-free projection guidance, eq. 12-15: the guided noise prediction.

        eps~- = eps_t- + w_par D-_par + w_orth D-_orth,   D- = eps_h- - eps_t-
        eps~+ = eps_t+ + w_par D+_par + w_orth D+_orth,   D+ = eps_h+ - eps_t+
        eps   = eps~- + scale (eps~+ - eps~-)

    (``_par``/``_orth``: parts parallel/orthogonal to the branch's text prediction, per sample.)

    Args:
        eps_text_neg, eps_text_pos: predictions for the negative and the positive prompt.
        eps_hd_neg, eps_hd_pos: the same with HD-CLIP conditioning (degradation cues in the
            negative branch, semantic cues in the positive one).
        w_par, w_orth: eq. 14's weights (defaults ``W_PAR``, ``W_ORTH``).
        scale: the backbone's CFG scale ``s``.

    All four tensors share one shape ``(B, ...)``; the math runs in float64 and the result comes
    back in the inputs' dtype.
    """
    _check_batch(eps_text_neg, eps_text_pos, eps_hd_neg, eps_hd_pos)
    neg = _rectify64(eps_text_neg, eps_hd_neg, w_par=w_par, w_orth=w_orth)
    pos = _rectify64(eps_text_pos, eps_hd_pos, w_par=w_par, w_orth=w_orth)
    return cfg(neg, pos, scale).to(eps_text_pos.dtype)


def add_embeddings(text_embeds: torch.Tensor, hd_embeds: torch.Tensor,
                   ratio: float) -> torch.Tensor:
    r"""The paper's "CFG" variant: an HD-CLIP term added to the text embeddings.

        c = c_text + ratio * hd_embeds

    Applied once per branch before the backbone's ordinary CFG: semantic HD-CLIP embeddings to
    the prompt's embeddings, degradation embeddings to the negative prompt's, each with its own
    fixed ratio. Its caller (``TextEmbeds.mix`` in :mod:`zephir.backbones.base`) passes the
    difference, ``hd_embeds = r (c_hd - c_text)`` with ``ratio`` 1, so that the conditioning is
    ``c_text + r (c_hd - c_text)`` (docs/method.md, "Restoration": the paper's "CFG" variant), not
    ``c_text + r c_hd``. ``hd_embeds`` are already in the backbone's text space (the
    training-free bridge of docs/method.md) and must broadcast to ``text_embeds``' shape:
    ``(B, L, D)`` token for token, or ``(B, 1, D)`` added to every token.

    Returns:
        The conditioning, in ``text_embeds``' dtype and shape.
    """
    shape = torch.broadcast_shapes(text_embeds.shape, hd_embeds.shape)
    assert shape == text_embeds.shape, (
        f"HD-CLIP embeddings {tuple(hd_embeds.shape)} do not broadcast to the text embeddings "
        f"{tuple(text_embeds.shape)}")
    return text_embeds + ratio * hd_embeds.to(text_embeds.dtype)
