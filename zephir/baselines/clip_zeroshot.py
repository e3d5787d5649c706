"""CLIP zero-shot degradation estimation (table 2, "CLIP").

The frozen CLIP scores numeric text prompts ("a blurry photo, blur sigma 2.0", ...), one per type
and bin centre; the type and the level are read from the best prompt. Numbers are only tokens to
CLIP's text tower, which is what this baseline shows.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from zephir.degrade import levels as dlevels
from zephir.estimator_interface import Estimate
from zephir.hdclip.model import HDCLIPConfig, load_clip, normalize, tower_image_size
from zephir.hdclip.ordinal import bin_centres

#: One prompt per type; ``{v}`` is the native value at the level (sigma, sigma on 0..255, JPEG
#: quality, scale).
TEMPLATES = {
    "blur": "a blurry photo, blur sigma {v:.1f}",
    "noise": "a noisy photo, noise sigma {v:.0f}",
    "jpeg": "a JPEG compressed photo, quality {v:.0f}",
    "downsample": "a downsampled photo, scale {v:.1f}",
}


def prompts(types: Sequence[str], bins: torch.Tensor) -> list[str]:
    """The K x J numeric prompts, type-major, at the levels ``bins``."""
    return [TEMPLATES[t].format(v=dlevels.realizable(t, float(b))[0])
            for t in types for b in bins.tolist()]


def readout(sim: torch.Tensor, bins: torch.Tensor, tau: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Type scores and levels from the (B, K, J) similarities to the prompts.

    The score of a type is the softmax probability mass of its prompts (over all K x J prompts);
    its level is the bin of its best prompt.
    """
    b, k, j = sim.shape
    p = torch.softmax(sim.reshape(b, k * j) / tau, dim=-1).reshape(b, k, j)
    return p.sum(-1), bins.to(sim)[sim.argmax(-1)]


def encode_prompts(clip: nn.Module, tokenizer, texts: list[str], k: int) -> torch.Tensor:
    """(K, J, d) unit text embeddings of the prompts."""
    with torch.no_grad():
        emb = F.normalize(clip.encode_text(tokenizer(texts)).float(), dim=-1)
    return emb.reshape(k, -1, emb.shape[-1])


class PromptEstimator(nn.Module):
    """An image tower read out against the numeric prompts (zero-shot and DA-CLIP-style)."""

    def __init__(self, clip: nn.Module, tokenizer, cfg: HDCLIPConfig, tower: nn.Module):
        super().__init__()
        self.cfg = cfg
        self.tower = tower
        self.register_buffer("bins", bin_centres(cfg.gap))
        self.register_buffer("text", encode_prompts(clip, tokenizer,
                                                    prompts(cfg.types, self.bins), len(cfg.types)))

    @classmethod
    def build(cls, cfg: HDCLIPConfig):
        clip, tokenizer = load_clip(cfg.arch, cfg.checkpoint, quick_gelu=cfg.quick_gelu)
        return cls(clip, tokenizer, cfg)

    @property
    def image_size(self) -> int:
        return tower_image_size(self.tower)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """(B, d) unit image embeddings of the tower, which the prompts are read against."""
        return F.normalize(self.tower(normalize(images)), dim=-1)

    def forward(self, images: torch.Tensor, **_) -> torch.Tensor:
        return self.embed(images)

    @torch.no_grad()
    def estimate_batch(self, images: torch.Tensor) -> Estimate:
        sim = torch.einsum("bd,kjd->bkj", self.embed(images).float(), self.text)
        scores, levels = readout(sim, self.bins, self.cfg.tau)
        return Estimate(scores=scores, levels=levels)


class CLIPZeroShot(PromptEstimator):
    """Frozen CLIP image embeddings against the numeric prompts; nothing is trained."""

    def __init__(self, clip: nn.Module, tokenizer, cfg: HDCLIPConfig):
        super().__init__(clip, tokenizer, cfg, clip.visual.eval())
        for p in self.tower.parameters():
            p.requires_grad_(False)

    def train(self, mode: bool = True):
        return super().train(False)  # frozen, BatchNorm statistics included

    def loss_terms(self, out, present, level, *, terms, targets=None):
        raise RuntimeError("CLIP zero-shot has nothing to train")
