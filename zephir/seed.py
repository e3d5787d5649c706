"""The one seed helper: stable per-item seeds derived from a base seed and names.

A derived seed depends only on the base seed and the keys, never on process, worker count or
order of execution, so parallel runs are byte-identical to serial ones.
"""
from __future__ import annotations

import hashlib
import random

import numpy as np


def derive_seed(seed: int, *keys: object) -> int:
    """A 63-bit seed from ``seed`` and ``keys`` (stable across Python versions and machines)."""
    text = "\x1f".join([str(int(seed)), *map(str, keys)])
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big") >> 1


def rng(seed: int, *keys: object) -> np.random.Generator:
    """A NumPy generator for the item named by ``keys`` under base ``seed``."""
    return np.random.default_rng(derive_seed(seed, *keys))


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and (when imported) torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency, but keep this importable
        return
    torch.manual_seed(seed)
