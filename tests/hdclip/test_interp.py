"""Eq. 6 (local interpolation regression) and eq. 8 (slerp)."""
from __future__ import annotations

import math

import pytest
import torch

from zephir.hdclip.interp import interpolate_level, neighbour_bins, slerp
from zephir.hdclip.ordinal import bin_centres


def sims_peaked_at(level: float, bins: torch.Tensor, width: float = 3.0) -> torch.Tensor:
    """Cosine-like similarities that peak at ``level``."""
    return torch.exp(-((bins - level) / (width * (bins[1] - bins[0]))) ** 2)


def test_eq6_returns_the_bin_level_at_a_bin_centre():
    bins = bin_centres(5)
    for j in (0, 4, 20):
        sim = torch.full((21,), 0.1)
        sim[j] = 0.9
        for k in (1, 2, None):
            assert interpolate_level(sim, bins, topk=k, tau=0.01).item() == \
                pytest.approx(bins[j].item(), abs=1e-3)


def test_eq6_lies_between_the_two_neighbours():
    bins = bin_centres(5)
    for level in (12.0, 47.5, 81.0):
        sim = sims_peaked_at(level, bins)
        pred = interpolate_level(sim, bins, topk=2, tau=0.03).item()
        lo = bins[bins <= level].max().item()
        assert lo <= pred <= lo + 5
        assert abs(pred - level) < 2.5


def test_eq6_top1_is_the_nearest_bin():
    bins = bin_centres(5)
    sim = sims_peaked_at(38.0, bins)
    assert interpolate_level(sim, bins, topk=1).item() == pytest.approx(40.0)


def test_eq6_matches_a_hand_computation():
    bins = torch.tensor([0.0, 10.0, 20.0])
    sim = torch.tensor([0.2, 0.5, 0.4])
    w = torch.softmax(torch.tensor([0.5, 0.4]) / 0.1, 0)
    assert interpolate_level(sim, bins, topk=2, tau=0.1).item() == \
        pytest.approx((w[0] * 10 + w[1] * 20).item())
    w_all = torch.softmax(sim / 0.1, 0)
    assert interpolate_level(sim, bins, topk=None, tau=0.1).item() == \
        pytest.approx((w_all * bins).sum().item())


def _unit(*v):
    return torch.nn.functional.normalize(torch.tensor(v, dtype=torch.float64), dim=-1)


def test_eq8_endpoints_and_sphere():
    a, b = _unit(1.0, 0.0, 0.2), _unit(0.1, 1.0, -0.3)
    assert torch.allclose(slerp(a, b, torch.tensor(0.0)), a)
    assert torch.allclose(slerp(a, b, torch.tensor(1.0)), b)
    for t in torch.linspace(0, 1, 11):
        assert slerp(a, b, t).norm().item() == pytest.approx(1.0, abs=1e-9)


def test_eq8_constant_angular_speed():
    a, b = _unit(1.0, 0.0), _unit(0.0, 1.0)
    mid = slerp(a, b, torch.tensor(0.25))
    assert mid.tolist() == pytest.approx([math.cos(math.pi / 8), math.sin(math.pi / 8)])


def test_eq8_handles_theta_near_zero():
    a = _unit(1.0, 2.0, 3.0)
    b = torch.nn.functional.normalize(a + 1e-9, dim=-1)
    out = slerp(a, b, torch.tensor(0.5))
    assert torch.isfinite(out).all()
    assert torch.allclose(out, a, atol=1e-8)


def test_neighbour_bins_bracket_the_level():
    bins = bin_centres(5)
    ia, ib, alpha = neighbour_bins(torch.tensor([0.0, 12.5, 100.0, 40.0]), bins)
    assert ia.tolist() == [0, 2, 19, 8] and ib.tolist() == [1, 3, 20, 9]
    assert alpha.tolist() == pytest.approx([0.0, 0.5, 1.0, 0.0])


def test_neighbour_bins_clamp_a_level_beyond_the_grid_to_its_end_bins():
    """Below 0 the target is the first bin (alpha 0), above 100 the last (alpha 1): never an
    index that wraps around to the other end, never an alpha outside [0, 1]."""
    ia, ib, alpha = neighbour_bins(torch.tensor([-2.0, 103.0]), bin_centres(5))
    assert ia.tolist() == [0, 19] and ib.tolist() == [1, 20]
    assert alpha.tolist() == [0.0, 1.0]


def test_neighbour_bins_take_cpu_bins_to_the_levels_device():
    meta = torch.device("meta")
    ia, ib, alpha = neighbour_bins(torch.tensor([12.5], device=meta), bin_centres(5))
    assert ia.device == ib.device == alpha.device == meta
