"""Shared fixtures: small real photos from scikit-image, written as files when needed."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from zephir import datasets
from zephir import io as zio

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    return datasets.embedded_image("astronaut")


@pytest.fixture(scope="session")
def photo_dir(tmp_path_factory) -> Path:
    """Four bundled photos, downscaled to keep tests quick, as PNG files."""
    import cv2

    folder = tmp_path_factory.mktemp("photos")
    for name in ("astronaut", "chelsea", "coffee", "camera"):
        img = datasets.embedded_image(name)
        img = cv2.resize(img, (img.shape[1] // 2, img.shape[0] // 2), interpolation=cv2.INTER_AREA)
        zio.write_png(folder / f"{name}.png", img)
    return folder


@pytest.fixture(scope="session")
def labelled(photo_dir, tmp_path_factory) -> Path:
    """A small labelled set (synth manifest) of the four photos: singles and mixtures."""
    from zephir.degrade import synth

    out = tmp_path_factory.mktemp("labelled")
    spec = synth.SynthSpec(levels_per_type=6, crop_size=128, mixtures_per_image=2,
                           val_fraction=0.25, seed=1)
    synth.synthesize(photo_dir, out, spec, progress=False)
    return out / synth.MANIFEST


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module (diffusion tests: small kernels, less contention)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
