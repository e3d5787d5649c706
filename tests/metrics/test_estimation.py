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


def test_srocc_and_pcc_on_a_hand_worked_case_with_ties():
    """Worked by hand, no library (issue 29).

    pred = [10, 20, 20, 40, 30]  -> average ranks [1, 2.5, 2.5, 5, 4]
    true = [1, 2, 3, 3, 5]       -> average ranks [1, 2, 3.5, 3.5, 5]
    SROCC = Pearson of the ranks; both rank means are 3, deviations
    [-2, -.5, -.5, 2, 1] and [-2, -1, .5, .5, 2]: sum of products 7.25, sums of squares 9.5
    and 9.5, so SROCC = 7.25 / 9.5 = 29/38. (The tie-free shortcut 1 - 6 sum d^2 / (n(n^2-1))
    gives 1 - 6 * 4.5 / 120 = 0.775 instead: ties must get average ranks.)
    PCC on the values: means 24 and 2.8, deviations [-14, -4, -4, 16, 6] and
    [-1.8, -.8, .2, .2, 2.2]: sum of products 44, sums of squares 520 and 8.8, so
    PCC = 44 / sqrt(520 * 8.8) = 44 / sqrt(4576).
    """
    pred, true = np.array([10.0, 20, 20, 40, 30]), np.array([1.0, 2, 3, 3, 5])
    assert estimation.srocc(pred, true) == pytest.approx(29 / 38, abs=1e-12)
    assert estimation.srocc(true, pred) == pytest.approx(29 / 38, abs=1e-12)
    assert estimation.srocc(pred, -true) == pytest.approx(-29 / 38, abs=1e-12)
    assert estimation.pcc(pred, true) == pytest.approx(44 / math.sqrt(4576), abs=1e-12)
    # a monotone but bent relation: ranks agree exactly, the linear correlation does not
    x = np.array([1.0, 2, 3, 4, 5])
    assert estimation.srocc(x ** 3, x) == pytest.approx(1.0, abs=1e-12)
    # x^3 = [1, 8, 27, 64, 125], mean 45: deviations [-44, -37, -18, 19, 80] against
    # [-2, -1, 0, 1, 2]: 88 + 37 + 19 + 160 = 304; squares 1936 + 1369 + 324 + 361 + 6400 =
    # 10390 and 10
    assert estimation.pcc(x ** 3, x) == pytest.approx(304 / math.sqrt(103900), abs=1e-12)
    assert math.isnan(estimation.srocc(np.array([3.0]), np.array([1.0])))


def test_summary_pools_and_splits_by_type():
    s = estimation.summarize(T_PRED, T_TRUE, PRED, TRUE, list(TYPES))
    assert s["n"] == 200 and s["type_acc"] == pytest.approx(np.mean(T_PRED == T_TRUE))
    m = T_TRUE == "jpeg"
    assert s["jpeg_mae"] == pytest.approx(np.abs(PRED[m] - TRUE[m]).mean())
    assert s["jpeg_srocc"] == pytest.approx(stats.spearmanr(PRED[m], TRUE[m])[0])


def test_constant_predictions_have_no_correlation():
    assert math.isnan(estimation.srocc(np.ones(5), np.arange(5.0)))
    assert math.isnan(estimation.pcc(np.arange(5.0), np.ones(5)))


def test_type_recall_counts_present_types_among_the_top_n():
    from zephir.metrics.estimation import type_recall

    scores = np.array([[0.9, 0.8, 0.1, 0.0], [0.9, 0.1, 0.8, 0.7]])
    present = np.array([[1, 0, 1, 0], [1, 0, 1, 1]], bool)
    # row 0: top-2 = {0, 1}: 1 of 2 found; row 1: top-3 = {0, 2, 3}: 3 of 3
    assert type_recall(scores, present) == pytest.approx(4 / 5)


def test_evaluate_table_splits_singles_near_and_between_bins_and_mixtures():
    import pandas as pd

    from zephir.metrics.estimation import evaluate_table

    types = ("blur", "noise")
    true_b = [10.0, 12.5, 31.0, np.nan, np.nan, 40.0]
    true_n = [np.nan, np.nan, np.nan, 20.0, 57.0, 60.0]
    pred_b = [11.0, 10.0, 35.0, 3.0, 1.0, 44.0]
    pred_n = [2.0, 1.0, 0.0, 25.0, 50.0, 61.0]
    t = pd.DataFrame({"blur_true": true_b, "noise_true": true_n, "blur_pred": pred_b,
                      "noise_pred": pred_n, "blur_score": [.9, .8, .3, .1, .2, .9],
                      "noise_score": [.1, .2, .7, .9, .8, .2]})
    m = evaluate_table(t, types, gap=5.0)
    assert m["single"]["n"] == 5 and m["single"]["type_acc"] == pytest.approx(4 / 5)
    # near a multiple of 5 (within 1.25): 10, 31, 20 ; between: 12.5, 57
    assert m["near_bin"]["n"] == 3 and m["between_bins"]["n"] == 2
    assert m["near_bin"]["mae"] == pytest.approx((1 + 4 + 5) / 3)
    assert m["between_bins"]["mae"] == pytest.approx((2.5 + 7) / 2)
    mix = m["mixtures"]
    assert mix["n"] == 2 and mix["mae"] == pytest.approx((4 + 1) / 2)
    assert mix["type_recall"] == 1.0  # both types present, both among the top 2
    true_single = [10.0, 12.5, 31.0, 20.0, 57.0]
    pred_single = [11.0, 10.0, 35.0, 25.0, 50.0]
    assert m["single"]["srocc"] == pytest.approx(stats.spearmanr(pred_single, true_single)[0])


def test_unmodelled_types_leave_type_metrics_empty_and_level_metrics_pooled_over_the_rest():
    import pandas as pd

    from zephir.metrics.estimation import evaluate_table, predicted_types

    nan = np.nan
    types = ("blur", "noise", "jpeg")
    true_b = [10.0, 30.0, nan, nan, 40.0]
    true_n = [nan, nan, 20.0, nan, 60.0]
    true_j = [nan, nan, nan, 50.0, 70.0]
    pred_b, pred_n = [12.0, 25.0, 1.0, 2.0, 44.0], [3.0, 4.0, 28.0, 9.0, 50.0]
    t = pd.DataFrame({"blur_true": true_b, "noise_true": true_n, "jpeg_true": true_j,
                      "blur_pred": pred_b, "noise_pred": pred_n, "jpeg_pred": [nan] * 5,
                      "blur_score": np.array(pred_b) / 100, "noise_score": np.array(pred_n) / 100,
                      "jpeg_score": [nan] * 5})
    scores = t[["blur_score", "noise_score", "jpeg_score"]].to_numpy()
    assert predicted_types(scores, types).tolist() == [""] * 5
    assert predicted_types(scores[:, :2], types[:2]).tolist() == ["blur", "blur", "noise",
                                                                  "noise", "noise"]
    m = evaluate_table(t, types, gap=5.0, level_scale=False)
    assert m["not_modelled"] == ["jpeg"] and m["level_scale"] is False
    s = m["single"]
    assert s["n"] == 4 and s["n_levels"] == 3            # the jpeg sample is not pooled
    assert math.isnan(s["type_acc"]) and math.isnan(s["mae"]) and math.isnan(s["jpeg_acc"])
    assert s["srocc"] == pytest.approx(stats.spearmanr([12, 25, 28], [10, 30, 20])[0])
    assert s["pcc"] == pytest.approx(stats.pearsonr([12, 25, 28], [10, 30, 20])[0])
    assert math.isnan(s["jpeg_srocc"]) and math.isnan(s["jpeg_mae"])
    mix = m["mixtures"]
    assert mix["samples"] == 1 and mix["n"] == 2 and math.isnan(mix["type_recall"])
    # with the level scale, MAE is the mean over the modelled samples only
    scaled = evaluate_table(t, types, gap=5.0)["single"]
    assert scaled["mae"] == pytest.approx((2 + 5 + 8) / 3) and math.isnan(scaled["type_acc"])
