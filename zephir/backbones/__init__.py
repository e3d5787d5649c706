"""Restoration backbones: diffusion SR pipelines that ZePHiR guides without training.

* ``base``: the interface (:class:`Backbone`, :class:`TextEmbeds`, the modes ``baseline``,
  ``cfg``, ``cfpg``);
* ``registry``: :data:`BACKBONES` and :func:`load`;
* one adapter per backbone: ``tiny`` (random-init x4 upscaler built in code), ``sd_x4_upscaler``,
  ``faithdiff``, ``seesr`` and ``pasd`` (upstream checkouts, in
  their own environments).
"""
from __future__ import annotations

from zephir.backbones.base import CFG_RATIO, MODES, Backbone, Defaults, TextEmbeds
from zephir.backbones.registry import BACKBONES, WEIGHT_KEYS, canonical, load

__all__ = ["BACKBONES", "CFG_RATIO", "MODES", "WEIGHT_KEYS", "Backbone", "Defaults",
           "TextEmbeds", "canonical", "load"]
