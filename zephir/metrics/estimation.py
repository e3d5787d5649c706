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
