"""The degradation estimators of the paper by name: HD-CLIP and the baselines of table 2.

Trained models record their method, so that :func:`zephir.checkpoints.load_pretrained`
rebuilds any of them through :func:`build`. Each method is named by where its builder lives
and imported when built, so that rebuilding HD-CLIP imports none of the baselines (nor,
through them, the degradation code and OpenCV).
"""
from __future__ import annotations

import importlib

from zephir.estimator_interface import Estimator
from zephir.hdclip.config import HDCLIPConfig

#: method -> "module:builder" of a callable HDCLIPConfig -> Estimator
METHODS: dict[str, str] = {
    "hdclip": "zephir.hdclip.model:build",
    "clip_zeroshot": "zephir.baselines.clip_zeroshot:CLIPZeroShot.build",
    "daclip_style": "zephir.baselines.daclip_style:DACLIPStyle.build",
    # DA-CLIP's own weights, read out the same way
    "daclip_released": "zephir.baselines.daclip_style:DACLIPStyle.build",
    "mmrealsr_style": "zephir.baselines.mmrealsr_style:MMRealSRStyle.build",
}


def build(method: str, cfg: HDCLIPConfig) -> Estimator:
    """The model of ``method`` (a key of :data:`METHODS`)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
    module, _, name = METHODS[method].partition(":")
    builder = importlib.import_module(module)
    for part in name.split("."):
        builder = getattr(builder, part)
    return builder(cfg)
