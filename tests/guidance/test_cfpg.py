"""Eq. 12-15 (CFPG) against independent recomputations, and supplement 7.2's special cases."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from zephir.guidance.cfpg import W_ORTH, W_PAR, add_embeddings, cfg, cfpg, project, rectify

SHAPE = (3, 4, 5, 6)


def _preds(seed: int, dtype: torch.dtype = torch.float64, shape=SHAPE) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=g, dtype=torch.float64).to(dtype) for _ in range(4)]


def _project_loops(d: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eq. 13 sample by sample, element by element, in Python floats."""
    par = np.zeros_like(d, dtype=np.float64)
    for i in range(d.shape[0]):
        dot = bb = 0.0
        for x, y in zip(d[i].ravel().tolist(), b[i].ravel().tolist()):
            dot += x * y
            bb += y * y
        par[i] = dot / bb * b[i]
    return par, d - par


def _cfg64(neg: torch.Tensor, pos: torch.Tensor, s: float) -> torch.Tensor:
    return neg + s * (pos - neg)


def _cfpg_loops(tn, tp, hn, hp, w_par: float, w_orth: float, s: float) -> np.ndarray:
    """Eq. 12-15 written out per sample and per element from ``_project_loops`` (numpy, no
    zephir code): rectify each branch, then CFG on the two rectified branches."""
    branches = []
    for t, h in ((tn, hn), (tp, hp)):
        t, h = t.double().numpy(), h.double().numpy()
        par, orth = _project_loops(h - t, t)                      # eq. 12, 13
        branches.append(t + w_par * par + w_orth * orth)          # eq. 14
    neg, pos = branches
    return neg + s * (pos - neg)                                  # eq. 15


def test_eq13_matches_a_per_sample_loop():
    d, b, _, _ = _preds(0)
    par, orth = project(d, b)
    ref_par, ref_orth = _project_loops(d.numpy(), b.numpy())
    np.testing.assert_allclose(par.numpy(), ref_par, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(orth.numpy(), ref_orth, rtol=1e-10, atol=1e-12)


def test_eq13_parts_sum_to_the_deviation_and_orthogonal_part_is_orthogonal():
    d, b, _, _ = _preds(1)
    par, orth = project(d, b)
    torch.testing.assert_close(par + orth, d, rtol=0, atol=1e-12)
    dots = (orth * b).flatten(1).sum(1)
    scale = orth.flatten(1).norm(dim=1) * b.flatten(1).norm(dim=1)
    assert torch.all(dots.abs() <= 1e-12 * scale)
    # The parallel part is a multiple of the baseline, sample by sample.
    coef = (par.flatten(1) / b.flatten(1))
    torch.testing.assert_close(coef, coef[:, :1].expand_as(coef), rtol=1e-9, atol=0)


def test_eq13_is_per_sample():
    d, b, _, _ = _preds(2)
    par, _ = project(d, b)
    for i in range(d.shape[0]):
        alone, _ = project(d[i:i + 1], b[i:i + 1])
        torch.testing.assert_close(par[i:i + 1], alone, rtol=0, atol=0)


def test_eq13_zero_baseline_gives_no_nan():
    d, b, _, _ = _preds(3, torch.float32)
    b[1] = 0
    par, orth = project(d, b)
    assert torch.isfinite(par).all() and torch.isfinite(orth).all()
    assert torch.equal(par[1], torch.zeros_like(par[1]))
    assert torch.equal(orth[1], d[1])
    out = cfpg(b, b, d, d, scale=7.5)
    assert torch.isfinite(out).all()


def test_eq12_14_rectify_matches_the_loop_reference():
    t, h, _, _ = _preds(4)
    w_par, w_orth = 0.8, 0.3
    par, orth = _project_loops((h - t).numpy(), t.numpy())
    expected = t.numpy() + w_par * par + w_orth * orth
    got = rectify(t, h, w_par=w_par, w_orth=w_orth)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-10, atol=1e-12)


def test_eq14_weights_act_on_their_own_part():
    t, h, _, _ = _preds(5)
    only_par = rectify(t, h, w_par=1.0, w_orth=0.0) - t
    only_orth = rectify(t, h, w_par=0.0, w_orth=1.0) - t
    # parallel-only moves along eps_t; orthogonal-only moves perpendicular to it
    ratio = only_par.flatten(1) / t.flatten(1)
    torch.testing.assert_close(ratio, ratio[:, :1].expand_as(ratio), rtol=1e-9, atol=0)
    dots = (only_orth * t).flatten(1).sum(1)
    assert torch.all(dots.abs() <= 1e-10 * only_orth.flatten(1).norm(dim=1)
                     * t.flatten(1).norm(dim=1))


@pytest.mark.parametrize("w_par,w_orth", [(1.0, 0.6), (0.3, 1.7)])
def test_eq15_cfpg_matches_the_loop_reference(w_par, w_orth):
    """Unequal weights, both ways round: swapping w_par and w_orth, or the negative and
    positive branches, moves the result away from the loop reference."""
    tn, tp, hn, hp = _preds(6)
    s = 5.5
    expected = _cfpg_loops(tn, tp, hn, hp, w_par, w_orth, s)
    got = cfpg(tn, tp, hn, hp, w_par=w_par, w_orth=w_orth, scale=s)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-10, atol=1e-12)
    swapped = _cfpg_loops(tn, tp, hn, hp, w_orth, w_par, s)
    assert np.abs(swapped - expected).max() > 1e-3
    # eq. 15 alone: the negative branch plus s times the step to the positive one
    neg, pos = torch.from_numpy(_cfpg_loops(tn, tp, hn, hp, w_par, w_orth, 0.0)), \
        torch.from_numpy(_cfpg_loops(tn, tp, hn, hp, w_par, w_orth, 1.0))
    np.testing.assert_allclose(cfg(neg, pos, s).numpy(), expected, rtol=1e-10, atol=1e-10)


def test_defaults_are_the_papers():
    assert (W_PAR, W_ORTH) == (1.0, 0.6)
    tn, tp, hn, hp = _preds(7)
    torch.testing.assert_close(cfpg(tn, tp, hn, hp, scale=3.0),
                               cfpg(tn, tp, hn, hp, w_par=1.0, w_orth=0.6, scale=3.0))


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 2e-6)])
def test_case_i_zero_weights_is_plain_text_cfg(dtype, tol):
    tn, tp, hn, hp = _preds(8, dtype)
    got = cfpg(tn, tp, hn, hp, w_par=0.0, w_orth=0.0, scale=7.5)
    expected = _cfg64(tn.double(), tp.double(), 7.5)
    torch.testing.assert_close(got.double(), expected, rtol=tol, atol=tol)
    # the per-element loop reference reaches the same closed form
    np.testing.assert_allclose(_cfpg_loops(tn, tp, hn, hp, 0.0, 0.0, 7.5), expected.numpy(),
                               rtol=1e-10, atol=1e-10)
    assert torch.equal(rectify(tp, hp, w_par=0.0, w_orth=0.0), tp)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 2e-6)])
def test_case_ii_unit_weights_is_pure_hdclip_cfg(dtype, tol):
    tn, tp, hn, hp = _preds(9, dtype)
    got = cfpg(tn, tp, hn, hp, w_par=1.0, w_orth=1.0, scale=7.5)
    expected = _cfg64(hn.double(), hp.double(), 7.5)
    torch.testing.assert_close(got.double(), expected, rtol=tol, atol=tol)
    np.testing.assert_allclose(_cfpg_loops(tn, tp, hn, hp, 1.0, 1.0, 7.5), expected.numpy(),
                               rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("w", [0.25, 0.6, 2.0])
def test_case_iii_equal_weights_is_linear_interpolation(w):
    tn, tp, hn, hp = _preds(10)
    got = cfpg(tn, tp, hn, hp, w_par=w, w_orth=w, scale=4.0)
    expected = _cfg64((1 - w) * tn + w * hn, (1 - w) * tp + w * hp, 4.0)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(_cfpg_loops(tn, tp, hn, hp, w, w, 4.0), expected.numpy(),
                               rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_gives_the_float32_answer_in_its_own_dtype(dtype):
    preds = [p.to(dtype) for p in _preds(11, torch.float32)]
    got = cfpg(*preds, w_par=1.0, w_orth=0.6, scale=7.5)
    assert got.dtype == dtype
    ref = cfpg(*[p.float() for p in preds], w_par=1.0, w_orth=0.6, scale=7.5)
    # one rounding to the half format: half an ulp of the largest values
    tol = torch.finfo(dtype).eps * ref.abs().max().item()
    torch.testing.assert_close(got.float(), ref, rtol=0, atol=tol)
    par, orth = project(preds[0], preds[1])
    assert par.dtype == orth.dtype == dtype


def test_shape_mismatch_is_refused():
    tn, tp, hn, hp = _preds(12)
    with pytest.raises(AssertionError):
        cfpg(tn, tp, hn, hp[:, :2], scale=2.0)


@pytest.mark.parametrize("position", range(4))
def test_a_shape_that_would_broadcast_is_refused_in_every_argument(position):
    """One channel where the others have four would broadcast silently (and guide with a
    smeared prediction): every argument of cfpg, cfg and project is checked."""
    preds = _preds(14)
    preds[position] = preds[position][:, :1]
    with pytest.raises(AssertionError, match="shape mismatch"):
        cfpg(*preds, scale=2.0)
    if position < 2:
        with pytest.raises(AssertionError, match="shape mismatch"):
            cfg(*preds[:2], 2.0)
        with pytest.raises(AssertionError, match="shape mismatch"):
            project(*preds[:2])


def test_add_embeddings_adds_with_the_ratio_and_broadcasts_over_tokens():
    g = torch.Generator().manual_seed(13)
    text = torch.randn(2, 7, 8, generator=g)
    tokens = torch.randn(2, 7, 8, generator=g, dtype=torch.float64)
    pooled = torch.randn(2, 1, 8, generator=g)
    out = add_embeddings(text, tokens, 0.3)
    assert out.dtype == text.dtype
    torch.testing.assert_close(out, text + 0.3 * tokens.float())
    out = add_embeddings(text, pooled, 0.5)
    for j in range(7):
        torch.testing.assert_close(out[:, j], text[:, j] + 0.5 * pooled[:, 0])
    with pytest.raises(AssertionError):
        add_embeddings(text[:, :1], tokens, 0.3)


@pytest.mark.parametrize("position", range(2))
def test_rectify_refuses_a_shape_that_would_broadcast_in_either_argument(position):
    preds = _preds(15)[:2]
    preds[position] = preds[position][:, :1]
    with pytest.raises(AssertionError, match="shape mismatch"):
        rectify(*preds)


def test_one_value_per_sample_is_a_batch_and_a_scalar_is_refused():
    """Shape (B,) is a batch of one-element predictions (eq. 13 per sample: the deviation is
    all parallel to a nonzero baseline); a 0-d tensor has no batch dimension."""
    tn, tp, hn, hp = (p.flatten(1)[:, 0] for p in _preds(16))
    got = cfpg(tn, tp, hn, hp, w_par=0.7, w_orth=0.2, scale=3.0)
    np.testing.assert_allclose(got.numpy(), _cfpg_loops(tn, tp, hn, hp, 0.7, 0.2, 3.0),
                               rtol=1e-10, atol=1e-12)
    with pytest.raises(AssertionError, match=r"^predictions need a batch dimension$"):
        cfpg(*(p[0] for p in (tn, tp, hn, hp)), scale=3.0)


def test_eq13_eps_is_added_to_the_baselines_squared_norm():
    """A baseline with <b, b> = 1e-12 = EPS: D_par = <D, b> / (2 EPS) b, by hand half of D's
    component along b, and never longer than D (eps subtracted would divide by zero)."""
    b = torch.zeros(2, 3, dtype=torch.float64)
    b[:, 0] = 1e-6
    d = torch.tensor([[4.0, 1.0, -2.0], [-6.0, 0.0, 3.0]], dtype=torch.float64)
    par, orth = project(d, b)
    expected = torch.tensor([[2.0, 0.0, 0.0], [-3.0, 0.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(par, expected, rtol=1e-12, atol=0)
    torch.testing.assert_close(orth, d - expected, rtol=1e-12, atol=0)
