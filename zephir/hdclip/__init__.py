"""HD-CLIP: hierarchical degradation CLIP (paper, section 3.1).

A frozen CLIP gives the semantic embedding; a trainable copy of its vision tower gives the
degradation embedding, read by four heads in a composition ordinal text space.

The public door, as open_clip's ``__init__.py`` re-exports its factory::

    from zephir.hdclip import create_model, load_pretrained, embed, describe

    model = create_model("zephir-tiny-rn")              # untrained, from a name or a config
    model, meta = load_pretrained("results/embedded/hdclip")   # a trained model's folder

Names are imported on first use, so that ``zephir.hdclip.config`` (the settings alone) stays
importable without torch. The door names :mod:`zephir.checkpoints` (the loader of every
estimator, a layer above the model) by string only: the model code imports nothing of
checkpoint files, and the baselines that :func:`load_pretrained` can rebuild import the model.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "HDCLIPConfig": "zephir.hdclip.config",
    "HDCLIP": "zephir.hdclip.model",
    "HDCLIPOutput": "zephir.hdclip.model",
    "create_model": "zephir.hdclip.factory",
    "list_architectures": "zephir.hdclip.factory",
    "load_pretrained": "zephir.checkpoints",
    "CheckpointError": "zephir.checkpoints",
    "embed": "zephir.hdclip.predict",
    "describe": "zephir.hdclip.predict",
    "estimate": "zephir.hdclip.predict",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'zephir.hdclip' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
