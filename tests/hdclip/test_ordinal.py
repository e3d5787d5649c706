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
        assert pe[1, 2 * i].item() == pytest.approx(math.sin(37.5 / w), abs=1e-6)
        assert pe[1, 2 * i + 1].item() == pytest.approx(math.cos(37.5 / w), abs=1e-6)
    assert torch.all(pe[0, 0::2] == 0) and torch.all(pe[0, 1::2] == 1)


def test_eq1_similarity_falls_as_the_level_gap_grows():
    pe = torch.nn.functional.normalize(ordinal_embedding(torch.arange(0, 31.0), 512), dim=-1)
    sim = pe[0] @ pe.t()
    near = sim[:11]  # gaps 0..10: strictly decreasing
    assert torch.all(near[1:] < near[:-1])


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
    sim = anchors[0, 0] @ anchors[0].t()
    assert torch.all(sim[1:6] < sim[:5])      # nearer levels are more similar
    # the shift embedding moves only its own (type, bin) anchor
    shift = torch.zeros(4, 21, 512)
    shift[2, 7] = 1.0
    moved = composition_anchors(words, bins, shift)
    changed = (moved - anchors).abs().sum(-1) > 1e-6
    assert changed.sum() == 1 and changed[2, 7]
