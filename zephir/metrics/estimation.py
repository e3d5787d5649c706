"""Degradation-estimation metrics (paper, table 2): type accuracy, level MAE, SROCC, PCC."""
from __future__ import annotations

import numpy as np
from scipy import stats


def type_accuracy(pred_type: np.ndarray, true_type: np.ndarray) -> float:
    """Share of samples whose most confident type is the true one (4-way, single-type)."""
    pred_type, true_type = np.asarray(pred_type), np.asarray(true_type)
    return float(np.mean(pred_type == true_type)) if len(true_type) else float("nan")


def mae(pred: np.ndarray, true: np.ndarray) -> float:
    """Mean absolute error of the 0..100 level."""
    return float(np.mean(np.abs(np.asarray(pred, float) - np.asarray(true, float))))


def srocc(pred: np.ndarray, true: np.ndarray) -> float:
    """Spearman rank correlation (nan when either side is constant)."""
    if len(pred) < 2 or np.ptp(pred) == 0 or np.ptp(true) == 0:
        return float("nan")
    return float(stats.spearmanr(pred, true).statistic)


def pcc(pred: np.ndarray, true: np.ndarray) -> float:
    """Pearson linear correlation (nan when either side is constant)."""
    if len(pred) < 2 or np.ptp(pred) == 0 or np.ptp(true) == 0:
        return float("nan")
    return float(stats.pearsonr(pred, true).statistic)


def summarize(pred_type, true_type, pred_level, true_level, types) -> dict:
    """Type accuracy, and level MAE / SROCC / PCC on the true type, pooled and per type."""
    pred_type, true_type = np.asarray(pred_type), np.asarray(true_type)
    pred_level, true_level = np.asarray(pred_level, float), np.asarray(true_level, float)
    out = {"type_acc": type_accuracy(pred_type, true_type), "mae": mae(pred_level, true_level),
           "srocc": srocc(pred_level, true_level), "pcc": pcc(pred_level, true_level),
           "n": int(len(true_type))}
    for t in types:
        m = true_type == t
        if m.any():
            out[f"{t}_acc"] = type_accuracy(pred_type[m], true_type[m])
            out[f"{t}_mae"] = mae(pred_level[m], true_level[m])
            out[f"{t}_srocc"] = srocc(pred_level[m], true_level[m])
    return out


def type_recall(scores: np.ndarray, present: np.ndarray) -> float:
    """Mixtures: share of the present types found among the n most confident, n = how many
    types are present (1.0 when the top-n types are exactly the present ones)."""
    scores, present = np.asarray(scores, float), np.asarray(present, bool)
    n = present.sum(1)
    rank = np.argsort(-scores, axis=1, kind="stable")
    found = [present[i, rank[i, :n[i]]].sum() for i in range(len(n))]
    return float(np.sum(found) / np.sum(n)) if n.sum() else float("nan")


def _levels(pred: np.ndarray, true: np.ndarray) -> dict:
    return {"mae": mae(pred, true), "srocc": srocc(pred, true), "pcc": pcc(pred, true),
            "n": int(len(true))}


def evaluate_table(table, types, gap: float = 5.0) -> dict:
    """Every estimation metric of one predictions table (:func:`zephir.evaluation.evaluate`).

    ``single``: table 2 on single-type samples (:func:`summarize`). Beyond the paper:
    ``near_bin`` / ``between_bins``: level metrics of the single-type samples whose true level
    lies within ``gap / 4`` of a bin centre (multiples of ``gap``) or farther, each recording
    the ``gap`` it was split by; ``mixtures``:
    samples of 2-4 types, type recall and level metrics over every present type.
    """
    true = table[[f"{t}_true" for t in types]].to_numpy(float)
    pred = table[[f"{t}_pred" for t in types]].to_numpy(float)
    scores = table[[f"{t}_score" for t in types]].to_numpy(float)
    present = ~np.isnan(true)
    count = present.sum(1)
    single = count == 1
    names = np.asarray(types)
    k = present[single].argmax(1)
    rows = np.flatnonzero(single)
    t_lv, p_lv = true[rows, k], pred[rows, k]
    out = {"single": summarize(names[scores[single].argmax(1)], names[k], p_lv, t_lv, types)}
    dist = np.abs(t_lv - gap * np.round(t_lv / gap))
    near = dist <= gap / 4
    out["near_bin"] = {**_levels(p_lv[near], t_lv[near]), "gap": float(gap)}
    out["between_bins"] = {**_levels(p_lv[~near], t_lv[~near]), "gap": float(gap)}
    mix = count >= 2
    if mix.any():
        m_true, m_pred = true[mix][present[mix]], pred[mix][present[mix]]
        out["mixtures"] = {"type_recall": type_recall(scores[mix], present[mix]),
                           **_levels(m_pred, m_true)}
    return out
