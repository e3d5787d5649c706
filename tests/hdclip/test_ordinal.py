"""Eq. 1-3: sinusoidal ordinal embedding, bins, composition anchors."""
from __future__ import annotations

import math

import pytest
import torch

from zephir.hdclip.ordinal import bin_centres, composition_anchors, ordinal_embedding


def test_eq1_against_the_formula():
    d, base = 16, 10000.0
    pe = ordinal_embedding(torch.tensor([0.0, 37.5]), d, base)
    assert pe.shape == (2, d)
    for i in range(d // 2):
        w = base ** (2 * i / d)
        # the level is normalised to [0, 1] first, as in the paper
        assert pe[1, 2 * i].item() == pytest.approx(math.sin(0.375 / w), abs=1e-6)
        assert pe[1, 2 * i + 1].item() == pytest.approx(math.cos(0.375 / w), abs=1e-6)
    assert torch.all(pe[0, 0::2] == 0) and torch.all(pe[0, 1::2] == 1)


@pytest.mark.parametrize("d", [64, 512])   # the tiny model's and ViT-B/32's embedding size
def test_eq1_similarity_falls_as_the_level_gap_grows(d):
    """Ordinal over the whole range, from either end: the property the slerp loss relies on
    (on the raw 0..100 scale it held for gaps below ~5 levels only)."""
    pe = torch.nn.functional.normalize(ordinal_embedding(torch.arange(0, 101.0), d), dim=-1)
    sim = pe @ pe.t()
    assert torch.all(sim[0, 1:] < sim[0, :-1])
    assert torch.all(sim[100, 1:] > sim[100, :-1])


def test_eq1_needs_an_even_dimension():
    with pytest.raises(ValueError, match="even"):
        ordinal_embedding(torch.tensor([1.0]), 7)


@pytest.mark.parametrize("gap,n", [(1, 101), (5, 21), (10, 11), (20, 6)])
def test_eq3_bins(gap, n):
    b = bin_centres(gap)
    assert b.numel() == n and b[0] == 0 and b[-1] == 100
    assert torch.allclose(b[1:] - b[:-1], torch.full((n - 1,), float(gap)))


def test_eq3_gap_must_divide_100():
    with pytest.raises(ValueError, match="gap 7"):
        bin_centres(7)


def test_eq2_anchors_are_unit_and_ordered():
    torch.manual_seed(0)
    words = torch.randn(4, 512)  # CLIP ViT-B/32's embedding size
    bins = bin_centres(5)
    anchors = composition_anchors(words, bins, torch.zeros(4, 21, 512))
    assert anchors.shape == (4, 21, 512)
    assert torch.allclose(anchors.norm(dim=-1), torch.ones(4, 21), atol=1e-6)
    for k in range(4):                        # nearer levels are more similar, for every type
        sim = anchors[k, 0] @ anchors[k].t()
        assert torch.all(sim[1:] < sim[:-1])
    # the shift embedding moves only its own (type, bin) anchor
    shift = torch.zeros(4, 21, 512)
    shift[2, 7] = 1.0
    moved = composition_anchors(words, bins, shift)
    changed = (moved - anchors).abs().sum(-1) > 1e-6
    assert changed.sum() == 1 and changed[2, 7]
