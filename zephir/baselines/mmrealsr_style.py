"""MM-RealSR-style degradation degrees (figure 7), reimplemented.

MM-RealSR (Mou et al., ECCV 2022; TencentARC/MM-RealSR) estimates two bounded degradation
degrees, blur and noise, without any level label: unsupervised, by metric learning. What its
code does (``mmrealsr/archs/degradat_arch.py``, ``mmrealsr/models/mmrealsrnet_model.py``,
``options/MMRealSRNet_x4.yml``), and what is kept here:

- **Estimator** (``DEResNet``): one branch per degradation, each a 3x3 convolution, residual
  blocks without normalisation, strided convolutions (no activation after them), global
  average pooling and an MLP (512 hidden units, ReLU) ending in a sigmoid; weights
  Kaiming-initialised and scaled by 0.1. Kept: a branch per degradation, the pooling and the
  head. **Not kept: the body.** MM-RealSR trains it inside an SR network whose pixel loss
  (weight 1 against 0.01 for the ranking) also reaches it; trained alone at the trainer's
  learning rate, it sat on a plateau (its pooled features are nearly a linear function of the
  image) and then blew up into a saturated sigmoid, whose gradient is zero, in our runs
  (lr 1e-3 and 2e-4, 120 steps; also with unscaled initialisation). Each branch's body is
  four stride-2 stages of conv - BatchNorm - LeakyReLU (:data:`WIDTHS`), which learned blur
  and noise degrees with SROCC ~0.9 in 160 steps on the same data.
- **Ranking pairs.** From one HQ image MM-RealSR synthesises images that differ in one
  degradation's strength only (a smaller and a larger blur kernel; a smaller and a larger
  noise sigma); the stronger one's degree must exceed the weaker one's by a margin:
  ``max(0, s_weak - s_strong + 0.05)`` (``margin_ranking_loss`` with target -1), weight 0.01.
  Here, the rows of a batch in which a type is present are paired in batch order (rows 0-1,
  2-3, ...: the batch order is a seeded permutation, so the pairs are random), each pair
  ordered by its true levels (ties dropped). Only the order of the two levels is read, never
  their values. The pair's two crops come from different places or photos, where MM-RealSR's
  share their content: the trainer hands a loss no source of the samples.
- **Anchors.** MM-RealSR pins the metric space's ends: the clean HQ image's degrees -> 0 and
  the image degraded at every range maximum -> 1 (squared error, weight 1e-4). Here, for each
  type, the rows in which that type is absent are its clean anchors (degree -> 0), and the same
  crops degraded by that type at the maximum of its range (:func:`max_degradation`, in the
  forward pass during training) its maximum anchors (degree -> 1). The two terms keep
  MM-RealSR's ratio: ``anchor`` carries a factor 1e-4 / 1e-2 = :data:`ANCHOR_WEIGHT`.

JPEG and downsampling are not modelled: their scores and levels are NaN, and the evaluation
reports them as such. The degree is not a level: ``Estimate.levels`` shows it as 100 x degree
(0 = the clean anchor, 100 = the maximum anchor) so that figure 7 can draw it on the level
axis, and :attr:`MMRealSRStyle.level_scale` is False, so that the evaluation reports no MAE.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import open_clip
import torch
import torch.nn as nn
import torch.nn.functional as F

from zephir.degrade import levels as dlevels
from zephir.estimator_interface import Estimate
from zephir.hdclip.interp import float32_math
from zephir.hdclip.model import HDCLIPConfig, register_architectures, tiny_architectures

#: The degradations MM-RealSR estimates (its ``num_degradation: 2``).
MODELLED = ("blur", "noise")
#: MM-RealSR's ``rank_opt.margin``.
MARGIN = 0.05
#: MM-RealSR's anchor weight over its ranking weight (``rank_opt_anchor`` 1e-4 / ``rank_opt``
#: 1e-2): the factor of the ``anchor`` term against the ``ranking`` term.
ANCHOR_WEIGHT = 0.01


# --------------------------------------------------------------------------- losses

def ranking_pairs(present: torch.Tensor, level: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Row indices (weak, strong) of the ranking pairs of one type.

    ``present``, ``level``: (B,) of that type. The rows where it is present are paired in
    batch order (0-1, 2-3, ...; an odd one out is left over); each pair is ordered by the two
    levels, a tie is dropped. Only comparisons of levels are made: any strictly increasing map
    of the levels gives the same pairs.
    """
    rows = present.bool().nonzero().squeeze(1)
    n = rows.numel() // 2 * 2
    a, b = rows[0:n:2], rows[1:n:2]
    la, lb = level[a], level[b]
    keep = la != lb
    weak = torch.where(la < lb, a, b)[keep]
    strong = torch.where(la < lb, b, a)[keep]
    return weak, strong


def _mean(x: torch.Tensor) -> torch.Tensor:
    """Mean of ``x``; 0 (kept in the graph) when it is empty."""
    return x.mean() if x.numel() else x.sum() * 0.0


@float32_math
def ranking_loss(scores: torch.Tensor, present: torch.Tensor, level: torch.Tensor, *,
                 margin: float = MARGIN) -> torch.Tensor:
    """MM-RealSR's margin ranking loss, summed over the modelled types.

    ``scores``, ``present``, ``level``: (B, M), one column per modelled type. For each type,
    the mean over its :func:`ranking_pairs` of ``max(0, s_weak - s_strong + margin)``.
    """
    total = scores.sum() * 0.0
    for m in range(scores.shape[1]):
        weak, strong = ranking_pairs(present[:, m], level[:, m])
        total = total + _mean(F.relu(scores[weak, m] - scores[strong, m] + margin))
    return total


@float32_math
def anchor_loss(scores: torch.Tensor, max_scores: torch.Tensor, present: torch.Tensor
                ) -> torch.Tensor:
    """MM-RealSR's anchors, summed over the modelled types: for each type, over the rows where
    it is absent, ``mean(s^2)`` (clean -> 0) plus ``mean((s_max - 1)^2)`` (the same crops at the
    type's maximum -> 1). ``max_scores``: (A, M), the degrees of the maximum anchors made of the
    first A rows of the batch (A <= B)."""
    total = scores.sum() * 0.0
    a = max_scores.shape[0]
    for m in range(scores.shape[1]):
        clean = ~present[:, m].bool()
        total = (total + _mean(scores[clean, m].pow(2))
                 + _mean((max_scores[clean[:a], m] - 1).pow(2)))
    return total


# --------------------------------------------------------------------------- maximum anchors

def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """The blur of :func:`zephir.degrade.ops.gaussian_blur` on a (B, 3, H, W) batch: a sampled
    Gaussian truncated at 4 sigma, separable, reflect-101 borders, clipped to [0, 1]."""
    radius = max(1, math.ceil(4.0 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32, device=images.device)
    k = torch.exp(-t.pow(2) / (2 * sigma ** 2))
    k = (k / k.sum()).to(images.dtype)
    c = images.shape[1]
    x = F.pad(images, (radius, radius, radius, radius), mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    x = F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return x.clamp(0.0, 1.0)


@float32_math
def max_degradation(images: torch.Tensor, kind: str, generator: torch.Generator
                    ) -> torch.Tensor:
    """``images`` degraded by ``kind`` at the maximum of its range (level 100), rounded to
    the 1/255 steps of the stored samples: MM-RealSR's maximum anchor of that degradation
    (in float32, also under autocast)."""
    value = dlevels.denormalize(kind, 100.0)
    if kind == "blur":
        out = gaussian_blur(images, value)
    elif kind == "noise":
        noise = torch.randn(images.shape, generator=generator, device=images.device,
                            dtype=images.dtype)
        out = (images + noise * (value / 255.0)).clamp(0.0, 1.0)
    else:
        raise ValueError(f"MM-RealSR models blur and noise only, not {kind!r}")
    return (out * 255.0).round() / 255.0


# --------------------------------------------------------------------------- estimator

def _block(cin: int, cout: int) -> nn.Sequential:
    """A stride-2 stage: conv - BN - LeakyReLU, twice."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=2, padding=1), nn.BatchNorm2d(cout),
                         nn.LeakyReLU(0.1), nn.Conv2d(cout, cout, 3, padding=1),
                         nn.BatchNorm2d(cout), nn.LeakyReLU(0.1))


def degree_branch(widths: Sequence[int], hidden: int = 512) -> nn.Sequential:
    """One degradation's branch: (B, 3, H, W) in [0, 1] -> (B,) degree in (0, 1). A stride-2
    stage per width, global average pooling, and MM-RealSR's head (Linear - ReLU - Linear -
    sigmoid)."""
    stages = [_block(cin, cout) for cin, cout in zip((3, *widths[:-1]), widths)]
    return nn.Sequential(*stages, nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(widths[-1], hidden), nn.ReLU(), nn.Linear(hidden, 1),
                         nn.Sigmoid(), nn.Flatten(0))


#: Branch widths by encoder size: a real CLIP architecture (GPU runs) or a tiny stand-in
#: architecture (CPU runs).
WIDTHS = {"full": (32, 64, 128, 256), "tiny": (16, 32, 64, 64)}


@dataclass
class MMRealSROutput:
    degrees: torch.Tensor             # (B, M) degree of each modelled type, in (0, 1)
    max_degrees: torch.Tensor | None  # (A, M) degrees of the maximum anchors (training only)


class MMRealSRStyle(nn.Module):
    """Blur and noise degrees learned from the order of same-type samples (no level values).

    ``widths``: the stages of each branch (:data:`WIDTHS`). ``anchor_share``: the share of a
    batch's rows whose maximum anchors are made (MM-RealSR: one per three LQ images).
    """

    #: ``Estimate.levels`` are 100 x degree, not estimates of the 0..100 level: no MAE.
    level_scale = False

    def __init__(self, cfg: HDCLIPConfig, image_size: int, *, widths: Sequence[int],
                 anchor_share: float = 1 / 3):
        super().__init__()
        self.cfg = cfg
        self._image_size = image_size
        self.anchor_share = anchor_share
        self.modelled = [t for t in MODELLED if t in cfg.types]
        if not self.modelled:
            raise ValueError(f"MM-RealSR models blur and noise; synth.types {list(cfg.types)} "
                             "has neither")
        self.index = [cfg.types.index(t) for t in self.modelled]
        self.branches = nn.ModuleList(degree_branch(widths) for _ in self.modelled)
        # Training steps taken: seeds the noise of the maximum anchors, so that a resumed run
        # draws the noise an uninterrupted one would.
        self.register_buffer("draws", torch.zeros((), dtype=torch.long))

    @classmethod
    def build(cls, cfg: HDCLIPConfig) -> MMRealSRStyle:
        register_architectures()
        arch = open_clip.get_model_config(cfg.arch)
        if arch is None:
            raise ValueError(f"unknown CLIP architecture {cfg.arch!r} (its input size sets the "
                             "estimator's crops)")
        size = arch["vision_cfg"]["image_size"]
        widths = WIDTHS["tiny" if cfg.arch in tiny_architectures() else "full"]
        return cls(cfg, int(size[0] if isinstance(size, (list, tuple)) else size), widths=widths)

    @property
    def image_size(self) -> int:
        return self._image_size

    def degrees(self, images: torch.Tensor) -> torch.Tensor:
        """(B, M) degree of each modelled type of [0, 1] images."""
        return torch.stack([branch(images) for branch in self.branches], dim=1)

    def forward(self, images: torch.Tensor, **_) -> MMRealSROutput:
        """Degrees of ``images``; in training also those of each type's maximum anchors, made
        of the first ``ceil(anchor_share * B)`` rows and passed through each branch together
        with the batch (one set of BatchNorm statistics)."""
        if not self.training:
            return MMRealSROutput(self.degrees(images), None)
        gen = torch.Generator(device=images.device)
        gen.manual_seed(int(self.draws))
        self.draws += 1
        first = images[:math.ceil(self.anchor_share * images.shape[0])]
        b = images.shape[0]
        both = [branch(torch.cat([images, max_degradation(first, kind, gen)]))
                for kind, branch in zip(self.modelled, self.branches)]
        return MMRealSROutput(torch.stack([y[:b] for y in both], dim=1),
                              torch.stack([y[b:] for y in both], dim=1))

    def loss_terms(self, out: MMRealSROutput, present, level, *, terms, targets=None):
        """``ranking`` (:func:`ranking_loss`) and ``anchor`` (:func:`anchor_loss` x
        :data:`ANCHOR_WEIGHT`), whatever ``terms`` asks. ``level`` is read through comparisons
        only."""
        if out.max_degrees is None:
            raise RuntimeError("MM-RealSR's anchors are computed in training mode only")
        p, lv = present[:, self.index], level[:, self.index]
        return {"ranking": ranking_loss(out.degrees, p, lv),
                "anchor": ANCHOR_WEIGHT * anchor_loss(out.degrees, out.max_degrees, p)}

    @torch.no_grad()
    def estimate_batch(self, images: torch.Tensor) -> Estimate:
        """Degrees as scores and 100 x degree as levels of blur and noise; NaN for the types
        MM-RealSR does not model."""
        deg = self.degrees(images).float()
        scores = torch.full((images.shape[0], len(self.cfg.types)), float("nan"),
                            device=deg.device)
        scores[:, self.index] = deg
        return Estimate(scores=scores, levels=100.0 * scores)
