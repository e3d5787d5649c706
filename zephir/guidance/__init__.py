"""Guidance: HD-CLIP in a diffusion backbone's sampling loop (paper, section 3.2, eq. 12-15).

* ``cfpg``: classifier-free projection guidance as pure functions (``project``: eq. 13,
  ``rectify``: eq. 12 + 14, ``cfg``: eq. 15, ``cfpg``: all four) and the paper's "CFG" variant
  (``add_embeddings``);
* ``wrap``: ``CFPGDenoiser``, a stand-in for a diffusers UNet that runs CFPG inside an
  unmodified pipeline (UNet and ControlNet on the text and HD rows in one call per step), and
  ``wrap_pipeline`` to install it for a ``with`` block;
* ``guider``: ``CFPGGuidance``, the same as a ``diffusers.guiders`` guider (imported on first
  use, since it imports diffusers).
"""
from __future__ import annotations

from typing import Any

from zephir.guidance.cfpg import W_ORTH, W_PAR, add_embeddings, cfg, cfpg, project, rectify
from zephir.guidance.wrap import CONTROLNET_MODES, CFPGDenoiser, wrap_pipeline

__all__ = ["CONTROLNET_MODES", "W_ORTH", "W_PAR", "CFPGDenoiser", "CFPGGuidance", "add_embeddings",
           "cfg", "cfpg", "project", "rectify", "wrap_pipeline"]


def __getattr__(name: str) -> Any:
    if name == "CFPGGuidance":
        from zephir.guidance.guider import CFPGGuidance

        return CFPGGuidance
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
