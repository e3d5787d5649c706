"""Building HD-CLIP by name or config, and loading trained models: the public door.

As open_clip's ``src/open_clip/factory.py`` (``create_model``, re-exported by its
``__init__.py``): :func:`create_model` builds HD-CLIP from an architecture name or a config,
:func:`zephir.checkpoints.load_pretrained`, re-exported beside it by ``zephir.hdclip``,
rebuilds any trained estimator from its folder. Neither imports OpenCV or the degradation code
(:mod:`zephir.degrade`).
"""
from __future__ import annotations

import torch

from zephir.hdclip.config import HDCLIPConfig
from zephir.hdclip.model import (
    HDCLIP,
    build,
    register_architectures,
    tiny_architectures,
)

__all__ = ["create_model", "list_architectures"]


def list_architectures() -> list[str]:
    """The CLIP architectures HD-CLIP can be built on: the tiny ones shipped with zephir
    (CPU runs) and every open_clip model config (ViT-B-32 in the paper)."""
    import open_clip

    register_architectures()
    return sorted(set(tiny_architectures()) | set(open_clip.list_models()))


def create_model(config: str | HDCLIPConfig | dict = "zephir-tiny-rn", *, device="cpu",
                 **settings) -> HDCLIP:
    """HD-CLIP, untrained, from an architecture name (``"zephir-tiny-rn"``, ``"ViT-B-32"``),
    an :class:`HDCLIPConfig` or its dict; ``settings`` override fields of the config
    (``checkpoint="openai"`` for OpenAI's CLIP weights, ``types=...``, ``gap=...``). The
    defaults are :class:`HDCLIPConfig`'s; the CLIP weights default to random init."""
    if isinstance(config, str):
        cfg = HDCLIPConfig(arch=config)
    elif isinstance(config, HDCLIPConfig):
        cfg = config
    else:
        cfg = HDCLIPConfig.from_dict(config)
    cfg = HDCLIPConfig.from_dict({**cfg.to_dict(), **settings}, "create_model settings")
    return build(cfg).to(torch.device(device))
