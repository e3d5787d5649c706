"""MM-RealSR-style degradation estimation (figure 7), reimplemented.

MM-RealSR's degradation-aware module regresses one bounded scalar per degradation type. Here a
small CNN (four stride-2 convolution blocks, global pooling, a linear layer and a sigmoid)
regresses every type's level / 100, with 0 for an absent type; the most degraded type is the
predicted type.
"""
from __future__ import annotations

import open_clip
import torch
import torch.nn as nn
import torch.nn.functional as F

from zephir.estimators import Estimate
from zephir.hdclip.model import HDCLIPConfig, normalize, register_architectures


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=2, padding=1), nn.BatchNorm2d(cout),
                         nn.LeakyReLU(0.1), nn.Conv2d(cout, cout, 3, padding=1),
                         nn.BatchNorm2d(cout), nn.LeakyReLU(0.1))


class MMRealSRStyle(nn.Module):
    """Per-type bounded-scalar regressor on the same crops as HD-CLIP."""

    def __init__(self, cfg: HDCLIPConfig, image_size: int, width: int = 32):
        super().__init__()
        self.cfg = cfg
        self._image_size = image_size
        self.features = nn.Sequential(_block(3, width), _block(width, 2 * width),
                                      _block(2 * width, 4 * width), _block(4 * width, 4 * width))
        self.head = nn.Linear(4 * width, len(cfg.types))

    @classmethod
    def build(cls, cfg: HDCLIPConfig) -> MMRealSRStyle:
        register_architectures()
        arch = open_clip.get_model_config(cfg.arch)
        if arch is None:
            raise ValueError(f"unknown CLIP architecture {cfg.arch!r} (its input size sets the "
                             "regressor's crops)")
        size = arch["vision_cfg"]["image_size"]
        return cls(cfg, int(size[0] if isinstance(size, (list, tuple)) else size))

    @property
    def image_size(self) -> int:
        return self._image_size

    def forward(self, images: torch.Tensor, **_) -> torch.Tensor:
        """(B, K) predicted level / 100 of every type."""
        return torch.sigmoid(self.head(self.features(normalize(images)).mean((2, 3))))

    def loss_terms(self, out: torch.Tensor, present, level, *, terms, targets=None):
        return {"regression": F.l1_loss(out.float(), present * level / 100.0)}

    @torch.no_grad()
    def estimate_batch(self, images: torch.Tensor) -> Estimate:
        out = self(images).float()
        return Estimate(scores=out, levels=100.0 * out)
