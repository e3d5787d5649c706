"""Stand-in for PASD ``pasd/models/pasd_light/controlnet.py`` (the same stand-in class)."""
from pasd.models.pasd.controlnet import ControlNetModel

__all__ = ["ControlNetModel"]
