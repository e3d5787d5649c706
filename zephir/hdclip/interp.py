"""Local interpolation regression (paper, eq. 6), slerp targets (eq. 8), and the float32 rule
that the math of eq. 4-11 follows under autocast."""
from __future__ import annotations

import functools

import torch


def float32_math(fn):
    """Run ``fn`` in float32, also inside an autocast region (the numerics of eq. 4-11).

    Under bf16 autocast a matrix product rounds cosine similarities to ~0.004, while the
    anchors of neighbouring bins differ in cosine by ~3e-5 at d = 512: eq. 6 and eq. 9 would
    see noise instead of levels. Inside an autocast region of the device type of ``fn``'s
    tensor arguments, autocast is switched off and their float16 / bfloat16 tensors are cast to
    float32; outside one, ``fn`` runs exactly as written (bit-identical).
    """
    @functools.wraps(fn)
    def run(*args, **kwargs):
        tensors = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)]
        device = tensors[0].device.type if tensors else "cpu"
        if not torch.is_autocast_enabled(device):
            return fn(*args, **kwargs)
        with torch.autocast(device, enabled=False):
            return fn(*map(_float32, args), **{k: _float32(v) for k, v in kwargs.items()})
    return run


def _float32(x):
    half = isinstance(x, torch.Tensor) and x.dtype in (torch.float16, torch.bfloat16)
    return x.float() if half else x


@float32_math
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


@float32_math
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
