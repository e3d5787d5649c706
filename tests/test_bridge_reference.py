"""The bridge's words, vocabulary, ridge fit and pooled map against references written another
way: hand-listed phrases, numpy's pseudo-inverse and normal equations, scikit-learn's R^2, and
a text encoder with a pooled output (SDXL's layout) whose map is recomputed here."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import r2_score

from zephir.backbones.base import TextEmbeds
from zephir.bridge import (
    TAG_TEMPLATE,
    TAGS,
    Bridge,
    BridgeOptions,
    degradation_words,
    fit_linear,
    hdclip_texts,
    level_word,
    vocabulary,
)
from zephir.conditioning import Conditioning

TYPES = ("blur", "noise", "jpeg", "downsample")


# --------------------------------------------------------------------------- words

def test_level_word_below_every_threshold_takes_the_lowest_word():
    assert level_word(-1.0) == "slight"  # below the lowest threshold, 0
    words = BridgeOptions(level_words=((50.0, "strong"), (20.0, "weak")))
    assert [level_word(lv, words) for lv in (70.0, 50.0, 30.0, 10.0)] == \
        ["strong", "strong", "weak", "weak"]


def test_a_type_without_a_noun_is_named_by_itself():
    desc = {"degradations": {"haze": {"present": 0.9, "level": 80.0},
                             "jpeg": {"present": 0.7, "level": 10.0}}}
    assert degradation_words(desc) == ["heavy haze", "slight jpeg artifacts"]


def test_degradation_words_use_the_options_level_words():
    words = BridgeOptions(level_words=((50.0, "strong"), (0.0, "weak")))
    desc = {"degradations": {"blur": {"present": 0.9, "level": 60.0},
                             "noise": {"present": 0.9, "level": 40.0}}}
    assert degradation_words(desc, words) == ["strong blur", "weak noise"]


def test_unknown_options_are_named_with_the_known_ones():
    with pytest.raises(ValueError) as err:
        BridgeOptions.from_dict({"zeta": 1, "alpha": 2})
    assert str(err.value) == ("bridge options: unknown key(s) alpha, zeta; expected some of "
                              "embedding_scale, level_words, present_threshold, ridge, tags")


def test_vocabulary_is_the_listed_phrases():
    expected = [*TAGS, *(f"a photo of a {t}." for t in TAGS),
                "blur", "noise", "jpeg artifacts", "pixelation",
                "slight blur", "moderate blur", "heavy blur",
                "slight noise", "moderate noise", "heavy noise",
                "slight jpeg artifacts", "moderate jpeg artifacts", "heavy jpeg artifacts",
                "slight pixelation", "moderate pixelation", "heavy pixelation",
                "a photo", "a high-resolution photo", "a low-quality photo"]
    assert vocabulary() == expected
    texts = hdclip_texts()
    assert len(texts) == len(set(texts)) and set(texts) == set(expected)
    assert texts[:len(TAGS)] == [f"a photo of a {t}." for t in TAGS]


# --------------------------------------------------------------------------- the fit

def _data(n: int, d: int, D: int, seed: int):
    g = np.random.default_rng(seed)
    return g.normal(size=(n, d)), g.normal(size=(n, D)) * 3.0 + 1.0


def test_ridge_fit_solves_the_normal_equations():
    """A = (Xc^T Xc + r I)^-1 Xc^T Yc in numpy, at the default r = 0.1 and at r = 2."""
    X, Y = _data(40, 6, 3, 0)
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    for ridge, m in ((0.1, fit_linear(torch.from_numpy(X), torch.from_numpy(Y))),
                     (2.0, fit_linear(torch.from_numpy(X), torch.from_numpy(Y), 2.0))):
        A = np.linalg.solve(Xc.T @ Xc + ridge * np.eye(6), Xc.T @ Yc)
        np.testing.assert_allclose(m.A.numpy(), A, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(m(torch.from_numpy(X)).numpy(), Y.mean(0) + Xc @ A,
                                   rtol=1e-10, atol=1e-12)


def test_plain_least_squares_is_the_pseudo_inverse_solution():
    """ridge 0 with more unknowns than samples: numpy's pinv gives the minimum-norm A."""
    X, Y = _data(8, 20, 3, 1)
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    m = fit_linear(torch.from_numpy(X), torch.from_numpy(Y), ridge=0.0)
    np.testing.assert_allclose(m.A.numpy(), np.linalg.pinv(Xc) @ Yc, atol=1e-9)


def test_r2_is_scikit_learns_variance_weighted_r2():
    X, Y = _data(30, 4, 5, 2)
    Y[:, 0] *= 1e-3  # a small-variance output: R^2 is pooled over the outputs
    for ridge in (0.1, 50.0):
        m = fit_linear(torch.from_numpy(X), torch.from_numpy(Y), ridge)
        pred = m(torch.from_numpy(X)).numpy()
        assert m.r2 == pytest.approx(r2_score(Y, pred, multioutput="variance_weighted"),
                                     rel=1e-9)
    small = fit_linear(torch.from_numpy(X), torch.from_numpy(Y * 1e-3), 1e-9)
    pred = small(torch.from_numpy(X)).numpy()
    assert 0 < small.r2 < 1
    assert small.r2 == pytest.approx(r2_score(Y * 1e-3, pred, multioutput="variance_weighted"),
                                     rel=1e-6)


def test_r2_of_a_constant_target_is_nan():
    X, _ = _data(10, 3, 1, 3)
    m = fit_linear(torch.from_numpy(X), torch.full((10, 2), 4.0, dtype=torch.float64))
    assert np.isnan(m.r2)


def test_fit_linear_refuses_mismatched_shapes():
    with pytest.raises(AssertionError):
        fit_linear(torch.zeros(5, 3), torch.zeros(4, 2))
    with pytest.raises(AssertionError):
        fit_linear(torch.zeros(5, 3), torch.zeros(5))


# --------------------------------------------------------------------------- tags

def _hd_text(dim: int = 16):
    """HD-CLIP's text side as the bridge sees it: fixed random unit rows per text."""
    table: dict[str, torch.Tensor] = {}

    def encode(texts):
        for t in texts:
            if t not in table:
                g = torch.Generator().manual_seed(len(table) + 7)
                table[t] = F.normalize(torch.randn(dim, generator=g), dim=0)
        return torch.stack([table[t] for t in texts])

    return encode


def _cond(semantic: torch.Tensor, dim: int = 16, present=(0.0, 0.0, 0.0, 0.0),
          embeddings: torch.Tensor | None = None) -> Conditioning:
    emb = embeddings if embeddings is not None else torch.zeros(4, dim)
    return Conditioning(semantic=semantic, embeddings=emb,
                        present=torch.tensor(present, dtype=torch.float32),
                        levels=torch.zeros(4), types=TYPES)


def test_tags_are_the_nearest_by_cosine_with_scores_to_four_places():
    hd = _hd_text()
    bridge = Bridge("prompt", backbone=None, hd_text=hd, options={"tags": 1})
    rows = hd([TAG_TEMPLATE.format(t) for t in TAGS])
    sem = F.normalize(rows[5] + 0.5 * rows[9], dim=0) * 3.0  # not unit: normalised first
    cos = (rows @ F.normalize(sem, dim=0)).numpy()
    ((tag, score),) = bridge.tags(_cond(sem))
    assert tag == TAGS[int(np.argmax(cos))] == TAGS[5]
    assert score == round(float(cos.max()), 4)
    assert len(Bridge("prompt", None, hd, {"tags": 3}).tags(_cond(sem))) == 3


def test_no_tags_asked_needs_no_semantic_embedding():
    bridge = Bridge("prompt", None, _hd_text(), {"tags": 0})
    assert bridge.tags(_cond(torch.zeros(16))) == []


def test_a_zero_semantic_embedding_is_refused_and_a_one_hot_one_is_not():
    bridge = Bridge("prompt", None, _hd_text(), {"tags": 2})
    with pytest.raises(ValueError, match=r"no semantic embedding \(embed with semantic=True\)"):
        bridge.tags(_cond(torch.zeros(16)))
    one_hot = torch.zeros(16)
    one_hot[3] = 1.0
    assert len(bridge.tags(_cond(one_hot))) == 2


# --------------------------------------------------------------------------- a pooled map

class PooledText:
    """A text encoder in SDXL's layout: (N, 6, 12) token states and a pooled (N, 10) vector,
    each a fixed random function of the text (its bytes through a seeded projection)."""

    def __init__(self):
        g = torch.Generator().manual_seed(11)
        self.w_hidden = torch.randn(64, 12, generator=g, dtype=torch.float64)
        self.w_pooled = torch.randn(64, 10, generator=g, dtype=torch.float64)

    def _features(self, texts) -> torch.Tensor:
        f = torch.zeros(len(texts), 64, dtype=torch.float64)
        for i, t in enumerate(texts):
            for j, b in enumerate(t.encode()):
                f[i, (b + 3 * j) % 64] += 1.0
        return f

    def encode_prompt(self, texts) -> TextEmbeds:
        f = self._features(texts)
        hidden = (f @ self.w_hidden)[:, None, :].repeat(1, 6, 1).float()
        return TextEmbeds(hidden, (f @ self.w_pooled).float(),
                          torch.full((len(texts),), 5, dtype=torch.long))

    def encode_pair(self, negative: str, positive: str) -> TextEmbeds:
        return self.encode_prompt([negative, positive])


def test_the_pooled_embedding_gets_its_own_map_at_its_own_scale():
    """With a pooled output the bridge fits a second ridge map on the pooled vectors (at the
    options' ridge) and adds ``scale * mean pooled norm / RMS of its delta`` times v to it."""
    hd, backbone = _hd_text(), PooledText()
    ridge, scale = 3.0, 0.4
    bridge = Bridge("embedding", backbone, hd, {"ridge": ridge, "embedding_scale": scale})
    g = torch.Generator().manual_seed(2)
    e = F.normalize(torch.randn(4, 16, generator=g), dim=-1)
    present = [0.8, 0.0, 0.5, 0.1]
    cond = _cond(F.normalize(torch.randn(16, generator=g), dim=0), present=present,
                 embeddings=e)
    pair, record = bridge.pair(cond, prompt="a photo", negative_prompt="lowres")
    assert set(bridge.maps()) == {"hidden", "pooled"} and set(record["norms"]) == \
        {"hidden", "pooled"}

    X = hd(vocabulary()).double().numpy()
    P = backbone.encode_prompt(vocabulary()).pooled.double().numpy()
    Xc = X - X.mean(0)
    A = np.linalg.solve(Xc.T @ Xc + ridge * np.eye(16), Xc.T @ (P - P.mean(0)))
    rms = np.sqrt(np.mean(np.sum((Xc @ A) ** 2, axis=1)))
    text = backbone.encode_pair("lowres", "a photo")
    n_ref = np.linalg.norm(text.pooled.double().numpy(), axis=1).mean()

    def delta(x):
        return (x.double().numpy() - X.mean(0)) @ A

    v_neg = sum(p * delta(e[i]) for i, p in enumerate(present))
    v_pos = delta(cond.semantic)
    added = (pair.pooled - text.pooled).double().numpy()
    factor = scale * n_ref / rms
    np.testing.assert_allclose(added[0], factor * v_neg, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(added[1], factor * v_pos, rtol=1e-4, atol=1e-4)
    assert record["norms"]["pooled"]["vocabulary_rms"] == pytest.approx(rms, rel=1e-4)
