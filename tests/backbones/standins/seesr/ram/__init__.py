"""Stand-in for SeeSR's ``ram`` package: ``inference_ram`` (ram/inference.py)."""
from ram.inference import inference_ram

__all__ = ["inference_ram"]
