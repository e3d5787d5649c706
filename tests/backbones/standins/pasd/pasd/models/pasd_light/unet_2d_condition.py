"""Stand-in for PASD ``pasd/models/pasd_light/unet_2d_condition.py`` (the same stand-in)."""
from pasd.models.pasd.unet_2d_condition import UNet2DConditionModel

__all__ = ["UNet2DConditionModel"]
