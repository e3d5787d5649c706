"""Degradations: the four operators, their 0..100 levels, the labelled synthesiser and the
Real-ESRGAN second-order blind pipeline."""
from zephir.degrade.levels import DEGRADATIONS, TYPES, denormalize, normalize
from zephir.degrade.ops import apply, downsample, gaussian_blur, gaussian_noise, jpeg

__all__ = ["DEGRADATIONS", "TYPES", "apply", "denormalize", "downsample", "gaussian_blur",
           "gaussian_noise", "jpeg", "normalize"]
