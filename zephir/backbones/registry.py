"""Backbones by name, and the one loader: ``load(name, settings, weights, device)``.

Names are those of the config (``tiny``, ``sd-x4-upscaler``, ``faithdiff``, ``seesr``,
``pasd``; underscores are accepted for hyphens). Every adapter imports diffusers, or its
upstream checkout, only when it loads, so this registry imports with torch alone.
"""
from __future__ import annotations

import torch

from zephir.backbones.base import Backbone
from zephir.backbones.faithdiff import FaithDiffBackbone
from zephir.backbones.pasd import PASDBackbone
from zephir.backbones.sd_x4_upscaler import UpscalerBackbone
from zephir.backbones.seesr import SeeSRBackbone
from zephir.backbones.tiny import TinyBackbone

BACKBONES: dict[str, type[Backbone]] = {
    "tiny": TinyBackbone,
    "sd-x4-upscaler": UpscalerBackbone,
    "faithdiff": FaithDiffBackbone,
    "seesr": SeeSRBackbone,
    "pasd": PASDBackbone,
}

#: The ``weights:`` keys each backbone reads (zephir.weights describes every one).
WEIGHT_KEYS: dict[str, tuple[str, ...]] = {
    "tiny": (),
    "sd-x4-upscaler": ("sd_x4_upscaler",),
    "faithdiff": ("faithdiff_repo", "sdxl", "sdxl_vae_fp16", "faithdiff"),
    "seesr": ("seesr_repo", "sd2_base", "seesr", "seesr_dape", "seesr_ram", "seesr_bert"),
    "pasd": ("pasd_repo", "sd15", "pasd"),
}


def canonical(name: str) -> str:
    """The registry name of ``name`` (``sd_x4_upscaler`` -> ``sd-x4-upscaler``); an unknown
    name is a ValueError listing the known ones."""
    key = str(name).strip().lower().replace("_", "-")
    if key not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; expected one of {', '.join(BACKBONES)}")
    return key


def load(name: str, settings: dict | None = None, weights: dict | None = None,
         device: torch.device | str = "cpu") -> Backbone:
    """The backbone ``name``, loaded from the local paths of the ``weights:`` section.

    ``settings`` overrides the backbone's defaults (``steps``, ``scale``, ``negative_prompt``,
    ``added_prompt``, ``dtype`` and the backbone's own keys). A missing weight is a
    FileNotFoundError that names its config key (``weights.<key>``), its path and how to get
    it; an upstream checkout under the wrong diffusers is a RuntimeError naming the
    environment to use.
    """
    return BACKBONES[canonical(name)].load(settings, weights, device)
