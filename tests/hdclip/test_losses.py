"""Eq. 5, 7, 9, 10 and the semantic losses."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from zephir.hdclip import losses
from zephir.hdclip.interp import neighbour_bins, slerp
from zephir.hdclip.ordinal import bin_centres, composition_anchors


def test_eq5_against_the_formula():
    logits = torch.tensor([[2.0, -1.0], [0.0, 3.0]])
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    expected = ((torch.sigmoid(logits) - y) ** 2).mean()
    assert losses.confidence_loss(logits, y).item() == pytest.approx(expected.item())


def test_eq7_only_counts_present_types():
    pred = torch.tensor([[10.0, 50.0], [30.0, 0.0]])
    true = torch.tensor([[20.0, 99.0], [0.0, 0.0]])
    present = torch.tensor([[1, 0], [1, 0]])
    assert losses.level_loss(pred, true, present).item() == pytest.approx((10 + 30) / 2)


def test_eq10_weights_grow_with_ordinal_distance():
    bins = bin_centres(5)
    v = losses.ordinal_weights(torch.tensor([42.0]), bins)[0]
    dist = (bins - 42).abs()
    assert v.mean().item() == pytest.approx(1.0)
    order = dist.argsort()
    assert torch.all(v[order][1:] >= v[order][:-1])


def _anchors():
    torch.manual_seed(1)
    return composition_anchors(torch.randn(1, 32), bin_centres(5), torch.zeros(1, 21, 32))[0]


def test_eq9_falls_as_the_embedding_moves_toward_its_target():
    anchors = _anchors()
    bins = bin_centres(5)
    level = torch.tensor([33.0])
    ia, ib, alpha = neighbour_bins(level, bins)
    target = slerp(anchors[ia], anchors[ib], alpha)
    start = F.normalize(anchors[18:19] + 0.3 * torch.randn(1, 32), dim=-1)  # far bin
    prev = None
    for t in torch.linspace(0, 1, 6):
        emb = F.normalize((1 - t) * start + t * target, dim=-1)
        loss = losses.slerp_loss(emb, anchors[None], level, bins, tau=0.05).item()
        if prev is not None:
            assert loss < prev
        prev = loss


def test_eq9_gradient_step_lowers_the_loss():
    anchors = _anchors()
    bins = bin_centres(5)
    emb = torch.randn(3, 32, requires_grad=True)
    level = torch.tensor([5.0, 52.0, 97.0])

    def f():
        return losses.slerp_loss(F.normalize(emb, dim=-1), anchors.expand(3, -1, -1), level,
                                 bins, tau=0.05)

    before = f()
    before.backward()
    with torch.no_grad():
        emb -= 0.5 * emb.grad
    assert f().item() < before.item()


def test_clip_and_semantic_losses():
    torch.manual_seed(0)
    x = F.normalize(torch.randn(8, 16), dim=-1)
    assert losses.semantic_loss(x, x).item() == pytest.approx(0.0, abs=1e-6)
    assert losses.semantic_loss(x, -x).item() == pytest.approx(2.0)
    matched = losses.clip_loss(x, x)
    shuffled = losses.clip_loss(x, x.roll(1, 0))
    assert matched.item() < shuffled.item()
