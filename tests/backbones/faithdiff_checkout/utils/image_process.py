"""Stand-in for FaithDiff's utils/image_process.py: ``check_image_size`` pads the bottom and
right edges (replicated) to multiples of ``padder_size``."""
import numpy as np
from PIL import Image

RECORD = {"check_image_size": []}


def check_image_size(x, padder_size=8):
    """``(padded image, width, height, padded width, padded height)``."""
    width, height = x.size
    pad_h = -height % padder_size
    pad_w = -width % padder_size
    padded = np.pad(np.asarray(x), ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    RECORD["check_image_size"].append(np.asarray(x).copy())
    return Image.fromarray(padded), width, height, width + pad_w, height + pad_h
