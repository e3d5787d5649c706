"""Estimation metrics against scipy / scikit-learn on fixed arrays."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import accuracy_score, mean_absolute_error

from zephir.metrics import estimation

RNG = np.random.default_rng(42)
TRUE = RNG.uniform(0, 100, 200)
PRED = TRUE + RNG.normal(0, 10, 200)
TYPES = np.array(["blur", "noise", "jpeg", "downsample"])
T_TRUE = TYPES[RNG.integers(0, 4, 200)]
T_PRED = np.where(RNG.uniform(size=200) < 0.8, T_TRUE, TYPES[RNG.integers(0, 4, 200)])


def test_against_references():
    assert estimation.type_accuracy(T_PRED, T_TRUE) == pytest.approx(accuracy_score(T_TRUE, T_PRED))
    assert estimation.mae(PRED, TRUE) == pytest.approx(mean_absolute_error(TRUE, PRED))
    assert estimation.srocc(PRED, TRUE) == pytest.approx(stats.spearmanr(PRED, TRUE)[0])
    assert estimation.pcc(PRED, TRUE) == pytest.approx(np.corrcoef(PRED, TRUE)[0, 1])


def test_summary_pools_and_splits_by_type():
    s = estimation.summarize(T_PRED, T_TRUE, PRED, TRUE, list(TYPES))
    assert s["n"] == 200 and s["type_acc"] == pytest.approx(np.mean(T_PRED == T_TRUE))
    m = T_TRUE == "jpeg"
    assert s["jpeg_mae"] == pytest.approx(np.abs(PRED[m] - TRUE[m]).mean())
    assert s["jpeg_srocc"] == pytest.approx(stats.spearmanr(PRED[m], TRUE[m])[0])


def test_constant_predictions_have_no_correlation():
    assert math.isnan(estimation.srocc(np.ones(5), np.arange(5.0)))
    assert math.isnan(estimation.pcc(np.arange(5.0), np.ones(5)))
