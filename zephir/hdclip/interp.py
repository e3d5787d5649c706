"""Local interpolation regression (paper, eq. 6) and slerp targets (eq. 8)."""
from __future__ import annotations

import torch


def interpolate_level(sim: torch.Tensor, bins: torch.Tensor, *, topk: int | None = 2,
                      tau: float = 0.03) -> torch.Tensor:
    """Eq. 6: level from the cosine similarities ``sim`` (..., J) to the J bin centres.

    Keep the ``topk`` most similar bins (all when None), weight them by
    ``softmax(sim / tau)`` over those bins, and return ``sum_j a_j l_j`` (shape ``...``).
    At top-1 the level is the nearest bin.
    """
    bins = bins.to(sim)
    if topk is None or topk >= sim.shape[-1]:
        weights = torch.softmax(sim / tau, dim=-1)
        return (weights * bins).sum(-1)
    top, idx = sim.topk(topk, dim=-1)
    weights = torch.softmax(top / tau, dim=-1)
    return (weights * bins[idx]).sum(-1)


def slerp(a: torch.Tensor, b: torch.Tensor, alpha: torch.Tensor, eps: float = 1e-4
          ) -> torch.Tensor:
    """Eq. 8: spherical interpolation between unit vectors ``a`` and ``b`` (..., d).

    ``alpha`` (...) in [0, 1]; falls back to normalised linear interpolation where the angle
    is below ``eps`` (where slerp's ratio of sines is 0/0).
    """
    alpha = alpha[..., None].to(a)
    cos = (a * b).sum(-1, keepdim=True).clamp(-1.0, 1.0)
    theta = torch.arccos(cos)
    sin = torch.sin(theta)
    small = sin.abs() < eps
    safe = torch.where(small, torch.ones_like(sin), sin)
    wa = torch.where(small, 1 - alpha, torch.sin((1 - alpha) * theta) / safe)
    wb = torch.where(small, alpha, torch.sin(alpha * theta) / safe)
    out = wa * a + wb * b
    return torch.where(small, torch.nn.functional.normalize(out, dim=-1), out)


def neighbour_bins(level: torch.Tensor, bins: torch.Tensor):
    """Indices of the bins around each level (``l_a <= l <= l_b``) and ``alpha`` of eq. 8."""
    bins = bins.to(level)
    j = torch.bucketize(level, bins, right=True) - 1
    j = j.clamp(0, bins.numel() - 2)
    la, lb = bins[j], bins[j + 1]
    alpha = ((level - la) / (lb - la)).clamp(0.0, 1.0)
    return j, j + 1, alpha
