"""Composition ordinal text embedding (paper, eq. 1-3).

Pure functions; the learnable shift lives in :class:`zephir.hdclip.model.HDCLIP`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

LEVEL_MAX = 100.0  # levels live on 0..100 (zephir.degrade.levels)


def ordinal_embedding(level: torch.Tensor, dim: int, base: float = 10000.0) -> torch.Tensor:
    """Eq. 1: sinusoidal embedding of a level in [0, 100], normalised to ``u = l / 100``.

    ``PE(l)[2i] = sin(u / base^(2i/d))``, ``PE(l)[2i+1] = cos(u / base^(2i/d))``.
    The paper normalises the level before encoding it. This matters: on the raw 0..100 scale the
    fastest component turns one radian per level, so anchors one bin (5 levels) apart are already
    as dissimilar as anchors 50 apart (cosine 0.73 vs 0.49 at d=64) and the anchors carry no
    order beyond the nearest bin. On [0, 1] no component turns more than one radian over the
    whole range, and similarity falls monotonically with the level gap.
    Returns shape ``level.shape + (dim,)``; ``dim`` must be even.
    """
    if dim % 2:
        raise ValueError(f"ordinal embedding dimension must be even, got {dim}")
    u = torch.as_tensor(level, dtype=torch.float32) / LEVEL_MAX
    i = torch.arange(dim // 2, dtype=torch.float32, device=u.device)
    freq = base ** (-2.0 * i / dim)
    angle = u[..., None] * freq
    pe = torch.stack([torch.sin(angle), torch.cos(angle)], dim=-1)
    return pe.flatten(-2)


def bin_centres(gap: float, top: float = LEVEL_MAX) -> torch.Tensor:
    """Eq. 3: bin centres ``l_j = j * gap`` for ``j = 0 .. top / gap`` (21 bins at gap 5)."""
    if gap <= 0 or top % gap:
        raise ValueError(f"gap {gap} must be positive and divide {top}")
    return torch.arange(0, top + gap / 2, gap, dtype=torch.float32)


def composition_anchors(word: torch.Tensor, levels: torch.Tensor, shift: torch.Tensor,
                        *, base: float = 10000.0, pe_scale: float = 1.0) -> torch.Tensor:
    """Eq. 2: ``t_k(l) = E_text(word_k) + PE(l) + delta_k(l)``, L2-normalised.

    ``word``: (K, d) text embeddings of the type words; ``levels``: (J,) bin centres;
    ``shift``: (K, J, d) learnable shift embedding. Returns (K, J, d) unit vectors.
    **(choice)** ``word`` and ``PE`` are each scaled to unit norm first (``pe_scale`` times that
    for PE), so that neither term swamps the other whatever the encoder's output scale.
    """
    k, d = word.shape
    assert shift.shape == (k, levels.numel(), d), (shift.shape, (k, levels.numel(), d))
    pe = ordinal_embedding(levels.to(word.device), d, base) * (2.0 / d) ** 0.5 * pe_scale
    anchors = F.normalize(word, dim=-1)[:, None, :] + pe[None] + shift
    return F.normalize(anchors, dim=-1)
