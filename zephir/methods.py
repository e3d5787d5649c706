"""The degradation estimators of the paper by name: HD-CLIP and the baselines of table 2.

Checkpoints record the method, so that :func:`zephir.checkpoints.from_checkpoint` rebuilds any
of them through :func:`build`.
"""
from __future__ import annotations

from collections.abc import Callable

from zephir.baselines.clip_zeroshot import CLIPZeroShot
from zephir.baselines.daclip_style import DACLIPStyle
from zephir.baselines.mmrealsr_style import MMRealSRStyle
from zephir.estimators import Estimator
from zephir.hdclip import model as hdclip_model
from zephir.hdclip.model import HDCLIPConfig

METHODS: dict[str, Callable[[HDCLIPConfig], Estimator]] = {
    "hdclip": hdclip_model.build,
    "clip_zeroshot": CLIPZeroShot.build,
    "daclip_style": DACLIPStyle.build,
    "daclip_released": DACLIPStyle.build,   # DA-CLIP's own weights, read out the same way
    "mmrealsr_style": MMRealSRStyle.build,
}

def build(method: str, cfg: HDCLIPConfig) -> Estimator:
    """The model of ``method`` (a key of :data:`METHODS`)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
    return METHODS[method](cfg)
