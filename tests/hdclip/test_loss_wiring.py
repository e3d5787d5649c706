"""Eq. 11's terms as ``HDCLIP.loss_terms`` wires them, against plain Python loops over the
present (sample, type) pairs: each pair is scored against the anchors of its own type, with its
own level. Written from the paper's equations (5, 7, 8-10; CLIP's InfoNCE), not from
``zephir.hdclip.losses``: a wiring that hands one loss another type's anchors, another pair's
level, or the wrong branch's embedding fails here (issue 29)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from zephir.estimator_interface import SemanticTargets
from zephir.hdclip import model as M

TAU = 0.1       # a temperature far from the config's default, so the test pins its use


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _slerp(a, b, alpha):
    theta = math.acos(max(-1.0, min(1.0, float(a @ b))))
    return (math.sin((1 - alpha) * theta) * a + math.sin(alpha * theta) * b) / math.sin(theta)


def _target(anchors_k, bins, level):
    """Eq. 8: the slerp between the two bins around ``level`` (the top bin pair at 100)."""
    lo = min(max(j for j in range(len(bins)) if bins[j] <= level), len(bins) - 2)
    alpha = (level - bins[lo]) / (bins[lo + 1] - bins[lo])
    return _slerp(anchors_k[lo], anchors_k[lo + 1], alpha)


def _log_sum_exp(values):
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


def _ce(rows, positive, allowed):
    """-log softmax at ``positive`` over the allowed entries, per row, averaged."""
    total = 0.0
    for i, row in enumerate(rows):
        total += _log_sum_exp([row[j] for j in range(len(row)) if allowed(i, j)]) \
            - row[positive[i]]
    return total / len(rows)


def _reference(out, present, level, bins, targets, negatives):
    emb, anchors = out.embeddings.double().numpy(), out.anchors.double().numpy()
    conf, pred = out.confidence.double().numpy(), out.levels.double().numpy()
    pairs = [(n, k) for n in range(present.shape[0]) for k in range(present.shape[1])
             if present[n, k]]
    ref = {}
    # eq. 5: squared error of the sigmoid confidence, mean over samples and all K types
    ref["conf"] = float(np.mean([(1 / (1 + math.exp(-conf[n, k])) - float(present[n, k])) ** 2
                                 for n in range(conf.shape[0]) for k in range(conf.shape[1])]))
    # eq. 7: mean absolute level error over the present pairs only
    ref["level"] = sum(abs(pred[n, k] - level[n][k]) for n, k in pairs) / len(pairs)
    # eq. 8-10 with the type's bins as negatives: -log(e^{s+} / (e^{s+} + sum_j v_j e^{s_j}))
    slerp_bins = 0.0
    for n, k in pairs:
        e, lv = emb[n, k], level[n][k]
        s_pos = float(e @ _target(anchors[k], bins, lv)) / TAU
        dist = [abs(b - lv) for b in bins]
        mean = sum(dist) / len(dist)
        terms = [s_pos] + [float(e @ anchors[k, j]) / TAU + math.log(dist[j] / mean)
                           for j in range(len(bins)) if dist[j] > 0]
        slerp_bins += _log_sum_exp(terms) - s_pos
    # NumCLIP's variant: the other rows of the same type, their slerp targets as negatives
    slerp_batch = 0.0
    for n, k in pairs:
        e, lv = emb[n, k], level[n][k]
        s_pos = float(e @ _target(anchors[k], bins, lv)) / TAU
        others = [(m, q) for m, q in pairs if q == k and (m, q) != (n, k)]
        dist = [abs(level[m][q] - lv) for m, q in others]
        terms = [s_pos]
        if others and sum(dist) > 0:
            mean = sum(dist) / len(dist)
            terms += [float(e @ _target(anchors[k], bins, level[m][q])) / TAU
                      + math.log(d / mean) for (m, q), d in zip(others, dist) if d > 0]
        slerp_batch += _log_sum_exp(terms) - s_pos
    ref["slerp"] = (slerp_bins if negatives == "bins" else slerp_batch) / len(pairs)
    # ablation A: plain InfoNCE over the type's bins, the nearest bin (ties: lower) positive
    align = 0.0
    for n, k in pairs:
        near = min(range(len(bins)), key=lambda j: (abs(bins[j] - level[n][k]), j))
        s = [float(emb[n, k] @ anchors[k, j]) / TAU for j in range(len(bins))]
        align += _log_sum_exp(s) - s[near]
    ref["align"] = align / len(pairs)
    sem = out.semantic.double().numpy()
    # CLIP's partner of each LQ image: its caption, or its clean crop when there are none
    img = targets.image.double().numpy()
    txt = img if targets.text is None else targets.text.double().numpy()
    same = targets.same.numpy()
    ref["semantic"] = float(np.mean([1 - sem[i] @ img[i] / np.linalg.norm(sem[i])
                                     / np.linalg.norm(img[i]) for i in range(len(sem))]))
    logits = [[100.0 * float(sem[i] @ txt[j]) for j in range(len(sem))] for i in range(len(sem))]
    keep = lambda i, j: i == j or not same[i, j]  # noqa: E731
    diag = list(range(len(sem)))
    ref["clip"] = 0.5 * (_ce(logits, diag, keep) + _ce([list(c) for c in zip(*logits)], diag,
                                                       keep))
    return ref


@pytest.fixture(scope="module")
def setting():
    torch.manual_seed(0)
    m = M.build(M.HDCLIPConfig(arch="zephir-tiny-vit", tau=TAU))
    b, kk, j, d = 5, len(m.cfg.types), m.bins.numel(), m.embed_dim
    g = torch.Generator().manual_seed(1)
    unit = lambda *s: F.normalize(torch.randn(*s, generator=g), dim=-1)  # noqa: E731
    present = torch.tensor([[1, 0, 1, 0], [0, 1, 1, 0], [1, 1, 0, 1], [0, 0, 1, 1],
                            [1, 0, 0, 1]])
    # levels fall between bins, on a bin (40, twice for one type) and at the top end (100)
    level = torch.tensor([[12.5, 0, 40.0, 0], [0, 71.3, 3.2, 0], [88.0, 20.0, 0, 100.0],
                          [0, 0, 57.7, 33.3], [40.0, 0, 0, 64.9]])
    # every type's anchors differ (random unit vectors); each embedding lies near its own
    # type's anchor at its level, as a trained model's would, so another type's anchors move
    # every score by far more than float rounding
    anchors = unit(kk, j, d)
    near = (level[..., None] - m.bins).abs().argmin(-1)                     # (B, K)
    embeddings = F.normalize(anchors[torch.arange(kk), near] + 0.5 * unit(b, kk, d), dim=-1)
    out = M.HDCLIPOutput(semantic=unit(b, d), degradation=torch.zeros(b, d),
                         embeddings=embeddings, confidence=torch.randn(b, kk, generator=g),
                         levels=torch.rand(b, kk, generator=g) * 100, anchors=anchors)
    same = torch.tensor([[1, 1, 0, 0, 0], [1, 1, 0, 0, 0], [0, 0, 1, 0, 1], [0, 0, 0, 1, 0],
                         [0, 0, 1, 0, 1]]).bool()
    targets = SemanticTargets(image=unit(b, d), text=unit(b, d), same=same)
    return m, out, present, level, targets


@pytest.mark.parametrize("negatives", ["bins", "batch"])
def test_every_term_of_eq11_against_loops_over_the_present_pairs(setting, negatives):
    m, out, present, level, targets = setting
    m.cfg.slerp_negatives = negatives
    try:
        got = m.loss_terms(out, present, level, targets=targets,
                           terms=["conf", "level", "slerp", "align", "semantic", "clip"])
    finally:
        m.cfg.slerp_negatives = "bins"
    bins = m.bins.tolist()
    want = _reference(out, present, level.tolist(), bins, targets, negatives)
    assert got.keys() == want.keys()
    for name, value in want.items():
        assert got[name].item() == pytest.approx(value, rel=1e-5, abs=1e-6), name


def test_the_reference_tells_the_types_apart(setting):
    """The check above has teeth: with each type scored against the next type's anchors the
    slerp and align terms move by far more than the tolerance."""
    m, out, present, level, targets = setting
    bins = m.bins.tolist()
    want = _reference(out, present, level.tolist(), bins, targets, "bins")
    rolled = M.HDCLIPOutput(**{**vars(out), "anchors": out.anchors.roll(1, 0)})
    other = _reference(rolled, present, level.tolist(), bins, targets, "bins")
    for name in ("slerp", "align"):
        assert abs(other[name] - want[name]) > 0.1 * abs(want[name]), name


def test_without_captions_the_clip_term_pairs_each_image_with_its_clean_crop(setting):
    m, out, present, level, targets = setting
    no_text = SemanticTargets(image=targets.image, text=None, same=targets.same)
    got = m.loss_terms(out, present, level, targets=no_text, terms=["clip"])["clip"]
    want = _reference(out, present, level.tolist(), m.bins.tolist(), no_text, "bins")["clip"]
    assert got.item() == pytest.approx(want, rel=1e-5)
    with_text = m.loss_terms(out, present, level, targets=targets, terms=["clip"])["clip"]
    assert abs(with_text.item() - got.item()) > 1e-3


def test_only_the_named_terms_come_back_even_with_targets(setting):
    """conf always (eq. 5 is in every ablation); the semantic terms only when named, targets
    or not: the trainer sums whatever comes back."""
    m, out, present, level, targets = setting
    for terms in (["conf"], ["conf", "level"], ["conf", "slerp", "clip"],
                  ["conf", "align", "semantic"]):
        got = m.loss_terms(out, present, level, targets=targets, terms=terms)
        assert sorted(got) == sorted(terms), terms
    assert sorted(m.loss_terms(out, present, level, terms=["conf", "semantic", "clip"])) \
        == ["conf"]
