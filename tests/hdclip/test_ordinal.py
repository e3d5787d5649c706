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


def _pe_loop(level: float, d: int, base: float) -> list[float]:
    """Eq. 1 in Python floats: [sin(u / base^(2i/d)), cos(u / base^(2i/d))] for i < d/2."""
    out = []
    for i in range(d // 2):
        angle = (level / 100.0) / base ** (2 * i / d)
        out += [math.sin(angle), math.cos(angle)]
    return out


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64, torch.int64])
def test_eq1_default_base_is_10000_and_the_math_is_float32_for_any_level_dtype(dtype):
    """The transformer base 10000 when none is given; a float16 level is not rounded to
    float16 before it is divided by 100 (0.37 would become 0.3701), a float64 one gives
    float32 anchors like every other."""
    levels = [0.0, 37.0, 100.0]        # exact in every dtype above
    pe = ordinal_embedding(torch.tensor(levels).to(dtype), 16)
    assert pe.dtype == torch.float32
    ref = torch.tensor([_pe_loop(level, 16, 10000.0) for level in levels], dtype=torch.float64)
    # float32 rounding is ~3e-8 here; base 10001 would move the angles by up to 4e-6
    torch.testing.assert_close(pe.double(), ref, rtol=0, atol=3e-7)


def test_eq3_gap_must_be_positive():
    for gap in (0, 0.0, -5):
        with pytest.raises(ValueError, match="must be positive"):
            bin_centres(gap)


@pytest.mark.parametrize("base,pe_scale", [(None, None), (100.0, 0.5)])
def test_eq2_against_a_loop(base, pe_scale):
    """t_k(l_j) = normalize(word_k / |word_k| + pe_scale sqrt(2/d) PE(l_j) + delta_kj), each
    (type, bin) written out in Python floats, with words of unequal norms and a random shift;
    by default base 10000 and pe_scale 1."""
    g = torch.Generator().manual_seed(3)
    k, d = 3, 8
    words = torch.randn(k, d, generator=g) * torch.tensor([[0.5], [2.0], [7.0]])
    levels = bin_centres(25)
    shift = torch.randn(k, levels.numel(), d, generator=g) * 0.3
    if base is None:
        got, base, pe_scale = composition_anchors(words, levels, shift), 10000.0, 1.0
        # the defaults are exactly the Transformer's base and scale 1 (a base of 10001 moves
        # the anchors by less than the loop's float32 tolerance, so it is pinned here)
        assert torch.equal(got, composition_anchors(words, levels, shift, base=10000.0,
                                                    pe_scale=1.0))
    else:
        got = composition_anchors(words, levels, shift, base=base, pe_scale=pe_scale)
    for a in range(k):
        w = words[a].double().tolist()
        norm_w = math.sqrt(sum(x * x for x in w))
        for j, level in enumerate(levels.tolist()):
            pe = _pe_loop(level, d, base)
            t = [w[i] / norm_w + pe_scale * math.sqrt(2 / d) * pe[i] + shift[a, j, i].item()
                 for i in range(d)]
            norm_t = math.sqrt(sum(x * x for x in t))
            assert got[a, j].tolist() == pytest.approx([x / norm_t for x in t], abs=1e-6)


def test_eq1_2_stay_on_the_device_of_their_inputs():
    """Levels (or CPU bins from bin_centres) with a model on another device: the frequencies
    and the PE are made there ("meta" stands in for an accelerator)."""
    meta = torch.device("meta")
    assert ordinal_embedding(torch.tensor([5.0, 50.0], device=meta), 8).device == meta
    words, shift = torch.zeros(2, 8, device=meta), torch.zeros(2, 21, 8, device=meta)
    assert composition_anchors(words, bin_centres(5), shift).device == meta
