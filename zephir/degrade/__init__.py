"""Degradations: the four operators, their 0..100 levels, the labelled synthesiser and the
Real-ESRGAN second-order blind pipeline.

The operators (``ops``: OpenCV, SciPy) are imported on first use, so that reading the levels
(``zephir.degrade.levels``, NumPy only) stays light: the restore jobs in the backbones' own
environments and the HD-CLIP model need the level maps, not the operators.
"""
from zephir.degrade.levels import DEGRADATIONS, TYPES, denormalize, normalize

_OPS = ("apply", "downsample", "gaussian_blur", "gaussian_noise", "jpeg")

__all__ = ["DEGRADATIONS", "TYPES", "apply", "denormalize", "downsample", "gaussian_blur",
           "gaussian_noise", "jpeg", "normalize"]


def __getattr__(name: str):
    if name in _OPS:
        from zephir.degrade import ops

        return getattr(ops, name)
    raise AttributeError(f"module 'zephir.degrade' has no attribute {name!r}")
