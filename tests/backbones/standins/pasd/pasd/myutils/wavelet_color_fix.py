"""Stand-in for PASD ``pasd/myutils/wavelet_color_fix.py`` (same functions, own arithmetic)."""
import _standin  # noqa: F401
from standin_common import adain_color_fix, wavelet_color_fix

__all__ = ["adain_color_fix", "wavelet_color_fix"]
