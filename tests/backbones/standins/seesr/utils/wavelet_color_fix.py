"""Stand-in for SeeSR ``utils/wavelet_color_fix.py`` (same two functions, own arithmetic)."""
import _standin  # noqa: F401
from standin_common import adain_color_fix, wavelet_color_fix

__all__ = ["adain_color_fix", "wavelet_color_fix"]
