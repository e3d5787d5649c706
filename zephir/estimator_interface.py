"""The interface every degradation estimator of the paper meets: HD-CLIP and the baselines.

:class:`Estimator` is what the trainer, the evaluation and ``zephir predict`` rely on, and
:class:`Estimate` what an estimator says of a batch of images. This module imports nothing of
zephir's: the models below it implement the interface, :mod:`zephir.estimator_registry` names them.
"""
from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch


@dataclass
class Estimate:
    """What an estimator says of a batch of images.

    ``scores``: (B, K) presence scores in [0, 1]; ``levels``: (B, K) 0..100 levels. HD-CLIP also
    gives its (B, K, d) per-type embeddings and (K, J, d) level anchors (figures 3 and 10);
    estimators without an ordinal space leave them None.
    """

    scores: torch.Tensor
    levels: torch.Tensor
    embeddings: torch.Tensor | None = None
    anchors: torch.Tensor | None = None


@dataclass
class SemanticTargets:
    """What the semantic terms of eq. 11 compare a batch's LQ semantic embeddings with.

    ``image``: (B, d) frozen CLIP embeddings of the clean crops, flipped as the LQ inputs were
    (the ground-truth semantic target); ``text``: (B, d) caption embeddings of the source
    photos, or None when the training set has no captions (the CLIP loss then pairs each LQ
    image with its clean crop); ``same``: (B, B) True where two samples show the same photo,
    which the contrastive CLIP loss must not count as negatives of each other.
    """

    image: torch.Tensor
    text: torch.Tensor | None
    same: torch.Tensor


@runtime_checkable
class Estimator(Protocol):
    """The interface every estimator of table 2 meets (HD-CLIP and the baselines).

    ``forward(images, semantic=...)`` takes (B, 3, S, S) RGB in [0, 1] with S = ``image_size``
    and returns whatever ``loss_terms`` reads. ``loss_terms`` returns the unweighted terms named
    in ``terms`` that the estimator has (an estimator with a single objective returns it whatever
    is asked); the trainer weights them (eq. 11) and averages them across ranks.
    """

    cfg: Any  # zephir.hdclip.config.HDCLIPConfig: types, gap, arch, ...

    @property
    def image_size(self) -> int: ...

    def __call__(self, images: torch.Tensor, *, semantic: bool = ...) -> Any: ...

    def loss_terms(self, out: Any, present: torch.Tensor, level: torch.Tensor, *,
                   terms: Collection[str], targets: SemanticTargets | None = None
                   ) -> dict[str, torch.Tensor]: ...

    def estimate_batch(self, images: torch.Tensor) -> Estimate: ...


def level_scale(model: Estimator) -> bool:
    """Whether ``Estimate.levels`` of ``model`` estimate the 0..100 level. An estimator whose
    levels are scores drawn on that axis (MM-RealSR-style: learned from order alone) says
    ``level_scale = False``, and its evaluation reports no MAE."""
    return bool(getattr(model, "level_scale", True))
