"""Degradation types, their native parameters and the normalised 0..100 level.

Paper, section 4.1; ``method.md``, "Degradations and levels"::

    l = 100 (v - v_min) / (v_max - v_min)          blur, noise, downsample
    l = 100 (q_max - q) / (q_max - q_min)          jpeg (lower quality = stronger)

The 0..100 scale is a choice of this project (the paper's gap sizes 1/5/10/20 and its MAE of 2.4
only make sense on it).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Degradation:
    """One degradation type: its native parameter, range, and which end is strongest."""

    name: str
    parameter: str
    low: float          # native value at the weakest level (level 0)
    high: float         # native value at the strongest level (level 100)
    integer: bool = False  # the native parameter only takes integer values (JPEG quality)

    @property
    def vmin(self) -> float:
        return min(self.low, self.high)

    @property
    def vmax(self) -> float:
        return max(self.low, self.high)


DEGRADATIONS: dict[str, Degradation] = {
    d.name: d
    for d in (
        Degradation("blur", "sigma", 0.1, 4.0),
        Degradation("noise", "sigma_255", 1.0, 40.0),
        Degradation("jpeg", "quality", 95.0, 30.0, integer=True),
        Degradation("downsample", "scale", 1.1, 7.0),
    )
}
#: The four types, in the composite order blur -> downsample -> noise -> jpeg.
TYPES: tuple[str, ...] = ("blur", "downsample", "noise", "jpeg")
#: The order used for labels and heads (blur, noise, jpeg, downsample), as the paper lists them.
LABEL_ORDER: tuple[str, ...] = ("blur", "noise", "jpeg", "downsample")


def get(kind: str) -> Degradation:
    """The :class:`Degradation` named ``kind``; a clear error for an unknown name."""
    try:
        return DEGRADATIONS[kind]
    except KeyError:
        raise ValueError(
            f"unknown degradation type {kind!r}; expected one of {', '.join(LABEL_ORDER)}"
        ) from None


def _check_level(level, what: str) -> np.ndarray:
    arr = np.asarray(level, dtype=np.float64)
    if np.any(~np.isfinite(arr)) or np.any(arr < 0) or np.any(arr > 100):
        raise ValueError(f"{what}: level {level!r} is outside 0..100")
    return arr


def normalize(kind: str, value):
    """Native value -> level in [0, 100]. Raises ValueError outside the type's range."""
    d = get(kind)
    v = np.asarray(value, dtype=np.float64)
    eps = 1e-9 * (d.vmax - d.vmin)
    if np.any(~np.isfinite(v)) or np.any(v < d.vmin - eps) or np.any(v > d.vmax + eps):
        raise ValueError(
            f"{kind}: {d.parameter}={value!r} is outside the range {d.vmin:g}..{d.vmax:g}")
    level = 100.0 * (v - d.low) / (d.high - d.low)
    level = np.clip(level, 0.0, 100.0)
    return float(level) if level.ndim == 0 else level


def denormalize(kind: str, level):
    """Level in [0, 100] -> native value (not rounded; see :func:`realizable`)."""
    d = get(kind)
    lv = _check_level(level, kind)
    v = d.low + (d.high - d.low) * lv / 100.0
    return float(v) if v.ndim == 0 else v


def realizable(kind: str, level: float) -> tuple[float, float]:
    """The native value an operator really applies for ``level``, and that value's level.

    Continuous parameters pass through; JPEG quality is an integer, so the level is snapped to
    the level of the rounded quality (the label then matches the pixels exactly).
    """
    d = get(kind)
    value = denormalize(kind, level)
    if d.integer:
        value = float(round(value))
        return value, normalize(kind, value)
    return value, float(level)
