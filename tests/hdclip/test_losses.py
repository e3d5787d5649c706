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


# --------------------------------------------------------------------------- ablation A

def test_align_is_infonce_at_the_nearest_bin_against_a_plain_loop():
    """Ablation A's alignment: -log softmax_j(cos(e, t_j) / tau) at the bin nearest to the
    true level, every other bin an unweighted negative (written here with Python loops)."""
    import math

    torch.manual_seed(2)
    bins = bin_centres(20)                                    # 0, 20, ..., 100
    anchors = F.normalize(torch.randn(3, 6, 8), dim=-1)
    emb = F.normalize(torch.randn(3, 8), dim=-1)
    level = torch.tensor([31.0, 50.0, 99.0])                  # nearest: 40, 40 (tie: lower), 100
    tau = 0.1
    total = 0.0
    for n, nearest in enumerate([2, 2, 5]):
        s = [sum(emb[n, i].item() * anchors[n, j, i].item() for i in range(8)) / tau
             for j in range(6)]
        total += -s[nearest] + math.log(sum(math.exp(v) for v in s))
    got = losses.alignment_loss(emb, anchors, level, bins, tau=tau)
    assert got.item() == pytest.approx(total / 3, rel=1e-5)
    assert losses.alignment_loss(emb[:0], anchors[:0], level[:0], bins).item() == 0.0


def test_ablation_a_trains_the_embeddings_and_the_shift_through_align():
    """With terms {conf, align} (ablation A) the heads' embedding rows and the shift get a
    gradient; "align" is a mean over the present (sample, type) pairs."""
    from zephir.hdclip import model as M

    torch.manual_seed(0)
    m = M.build(M.HDCLIPConfig(arch="zephir-tiny-rn"))
    x = torch.rand(3, 3, m.image_size, m.image_size)
    present = torch.tensor([[1, 0, 0, 0], [0, 0, 1, 0], [1, 0, 0, 1]])
    level = torch.tensor([[12.0, 0, 0, 0], [0, 0, 64, 0], [88, 0, 0, 31]])
    out = m(x, semantic=False)
    terms = m.loss_terms(out, present, level, terms=["conf", "align"])
    assert set(terms) == {"conf", "align"}
    b, k = present.nonzero(as_tuple=True)
    want = losses.alignment_loss(out.embeddings[b, k], out.anchors[k], level[b, k], m.bins,
                                 tau=m.cfg.tau)
    assert terms["align"].item() == pytest.approx(want.item())
    sum(terms.values()).backward()
    assert m.shift.grad is not None and m.shift.grad.abs().sum() > 0
    assert m.heads[0].weight.grad[:-1].abs().sum() > 0
    assert "align" not in m.loss_terms(out, present, level, terms=["conf", "level", "slerp"])


def test_eq9_and_align_under_bf16_autocast_at_d512():
    """At d = 512 neighbouring anchors differ in cosine by ~3e-5: under bf16 autocast the losses
    must still be the float32 ones (before the fix eq. 9 moved by ~2e-2)."""
    torch.manual_seed(0)
    bins = bin_centres(5)
    anchors = composition_anchors(torch.randn(1, 512), bins, torch.zeros(1, 21, 512))[0]
    level = torch.tensor([3.0, 12.0, 41.0, 77.5, 93.0])
    ia, ib, alpha = neighbour_bins(level, bins)
    emb = slerp(anchors[ia], anchors[ib], alpha)
    rows = anchors.expand(5, -1, -1)
    for fn in (losses.slerp_loss, losses.alignment_loss):
        want = fn(emb, rows, level, bins, tau=0.03)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = fn(emb, rows, level, bins, tau=0.03)
        assert got.dtype == torch.float32
        assert got.item() == pytest.approx(want.item(), rel=1e-6), fn.__name__
    x = F.normalize(torch.randn(6, 512), dim=-1)
    for fn in (losses.clip_loss, losses.semantic_loss):
        want = fn(x, x.roll(1, 0))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = fn(x, x.roll(1, 0))
        assert got.item() == pytest.approx(want.item(), rel=1e-6), fn.__name__


def test_clip_loss_does_not_count_same_photo_pairs_as_negatives():
    """Rows 0 and 1 show the same photo: each is left out of the other's negatives, in both
    directions of the symmetric loss (written here with Python loops)."""
    import math

    torch.manual_seed(4)
    img, txt = F.normalize(torch.randn(3, 5), dim=-1), F.normalize(torch.randn(3, 5), dim=-1)
    same = torch.tensor([[1, 1, 0], [1, 1, 0], [0, 0, 1]]).bool()
    scale = 10.0

    def ce(rows):  # rows[i][j]: logit of i against j; positive j = i; skip same-photo j != i
        return sum(-rows[i][i] + math.log(sum(math.exp(rows[i][j]) for j in range(3)
                                              if j == i or not same[i, j]))
                   for i in range(3)) / 3

    s = [[scale * float(img[i] @ txt[j]) for j in range(3)] for i in range(3)]
    want = 0.5 * (ce(s) + ce([list(c) for c in zip(*s)]))
    got = losses.clip_loss(img, txt, scale, same=same)
    assert got.item() == pytest.approx(want, rel=1e-5)
    assert got.item() < losses.clip_loss(img, txt, scale).item()


def test_eq9_with_numclips_batch_negatives_against_a_plain_loop():
    """slerp_negatives "batch": row n's negatives are the slerp targets of the other rows of
    its type, weighted by |l_m - l_n| / mean over those rows (eq. 10); written out per row
    with Python sums of exponentials, float64."""
    torch.manual_seed(3)
    bins = bin_centres(5)
    anchors2 = F.normalize(torch.randn(2, 21, 16), dim=-1)
    kind = torch.tensor([0, 0, 1, 0, 1, 1, 0])
    level = torch.tensor([12.0, 40.0, 7.5, 40.0, 93.0, 55.0, 81.0])
    emb = F.normalize(torch.randn(7, 16), dim=-1)
    tau = 0.1
    got = losses.slerp_loss_batch(emb, anchors2[kind], level, bins, kind, tau=tau)

    def target(i):
        a, b, alpha = neighbour_bins(level[i:i + 1], bins)
        k = int(kind[i])
        return slerp(anchors2[k, a], anchors2[k, b], alpha)[0].double()

    total = 0.0
    for n in range(7):
        e = emb[n].double()
        pos = float(torch.exp(e @ target(n) / tau))
        others = [m for m in range(7) if m != n and kind[m] == kind[n]]
        dist = [abs(float(level[m] - level[n])) for m in others]
        mean = sum(dist) / len(dist)
        neg = sum(d / mean * float(torch.exp(e @ target(m) / tau))
                  for m, d in zip(others, dist))
        total += -float(torch.log(torch.tensor(pos / (pos + neg), dtype=torch.float64)))
    assert got.item() == pytest.approx(total / 7, rel=1e-5)
    # rows 1 and 3 share level 40: each weighs 0 as the other's negative
    alone = losses.slerp_loss_batch(emb[[1, 3]], anchors2[kind[[1, 3]]], level[[1, 3]], bins,
                                    kind[[1, 3]], tau=tau)
    assert alone.item() == pytest.approx(0.0, abs=1e-6)


def test_eq10_by_hand_on_a_fine_grid():
    """Bins 0, 0.5, 1 and the level 0.5: distances 0.5, 0, 0.5, their mean 1/3, so
    v = 1.5, 0, 1.5 (a mean distance below 1 is divided by, not clamped)."""
    v = losses.ordinal_weights(torch.tensor([0.5]), torch.tensor([0.0, 0.5, 1.0]))
    assert v[0].tolist() == pytest.approx([1.5, 0.0, 1.5], rel=1e-6)


def test_eq10_takes_cpu_bins_to_the_levels_device():
    meta = torch.device("meta")
    assert losses.ordinal_weights(torch.tensor([5.0], device=meta), bin_centres(5)).device == meta
