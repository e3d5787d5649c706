"""Composition ordinal text embedding (paper, eq. 1-3).

Pure functions; the learnable shift lives in :class:`zephir.hdclip.model.HDCLIP`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def ordinal_embedding(level: torch.Tensor, dim: int, base: float = 10000.0) -> torch.Tensor:
    """Eq. 1: sinusoidal embedding of levels in [0, 100].

    ``PE(l)[2i] = sin(l / base^(2i/d))``, ``PE(l)[2i+1] = cos(l / base^(2i/d))``.
    Returns shape ``level.shape + (dim,)``; ``dim`` must be even.
    """
    if dim % 2:
        raise ValueError(f"ordinal embedding dimension must be even, got {dim}")
    level = torch.as_tensor(level, dtype=torch.float32)
    i = torch.arange(dim // 2, dtype=torch.float32, device=level.device)
    freq = base ** (-2.0 * i / dim)
    angle = level[..., None] * freq
    pe = torch.stack([torch.sin(angle), torch.cos(angle)], dim=-1)
    return pe.flatten(-2)


def bin_centres(gap: float, top: float = 100.0) -> torch.Tensor:
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
