"""Degradation-estimation metrics (paper, table 2): type accuracy, level MAE, SROCC, PCC.

A type an estimator does not model (MM-RealSR-style: JPEG and downsampling) has NaN scores and
levels. Its samples are left out of the level metrics, and type accuracy and type recall, which
need every type, are NaN for such an estimator. An estimator whose levels are scores shown on
the 0..100 axis rather than estimates of the level (``level_scale=False``) gets no MAE.
"""
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


def predicted_types(scores: np.ndarray, types) -> np.ndarray:
    """The most confident type of each row of (N, K) ``scores``; "" (no prediction) for a row
    with a NaN score, i.e. from an estimator that does not model every type."""
    scores, names = np.asarray(scores, float), np.asarray(types, dtype=object)
    out = names[np.nan_to_num(scores, nan=-np.inf).argmax(1)] if len(scores) else names[:0]
    out[np.isnan(scores).any(1)] = ""
    return out


def summarize(pred_type, true_type, pred_level, true_level, types, *,
              level_scale: bool = True) -> dict:
    """Type accuracy, and level MAE / SROCC / PCC on the true type, pooled and per type.

    Samples whose predicted level is NaN (a type the estimator does not model) are left out of
    the level metrics (``n_levels`` counts those pooled); type accuracy is NaN when any sample
    has no predicted type ("") or no predicted level. ``level_scale=False``: MAE is NaN.
    """
    pred_type, true_type = np.asarray(pred_type, dtype=object), np.asarray(true_type)
    pred_level, true_level = np.asarray(pred_level, float), np.asarray(true_level, float)
    modelled = ~np.isnan(pred_level)
    typed = bool(modelled.all() and all(isinstance(p, str) and p for p in pred_type))
    out = {"type_acc": type_accuracy(pred_type, true_type) if typed else float("nan"),
           **_levels(pred_level, true_level, level_scale), "n": len(true_type)}
    out["n_levels"] = out.pop("n_pooled")
    for t in types:
        m = true_type == t
        if m.any():
            lv = _levels(pred_level[m], true_level[m], level_scale)
            out[f"{t}_acc"] = (type_accuracy(pred_type[m], true_type[m]) if typed
                               else float("nan"))
            out[f"{t}_mae"], out[f"{t}_srocc"] = lv["mae"], lv["srocc"]
    return out


def type_recall(scores: np.ndarray, present: np.ndarray) -> float:
    """Mixtures: share of the present types found among the n most confident, n = how many
    types are present (1.0 when the top-n types are exactly the present ones)."""
    scores, present = np.asarray(scores, float), np.asarray(present, bool)
    n = present.sum(1)
    rank = np.argsort(-scores, axis=1, kind="stable")
    found = [present[i, rank[i, :n[i]]].sum() for i in range(len(n))]
    return float(np.sum(found) / np.sum(n)) if n.sum() else float("nan")


def _levels(pred: np.ndarray, true: np.ndarray, level_scale: bool = True) -> dict:
    """MAE / SROCC / PCC over the pairs whose prediction is not NaN (``n_pooled`` of them; NaN
    metrics when there are none); MAE NaN without ``level_scale``."""
    keep = ~np.isnan(pred)
    pred, true = pred[keep], true[keep]
    if not len(true):
        return {"mae": float("nan"), "srocc": float("nan"), "pcc": float("nan"), "n_pooled": 0}
    return {"mae": mae(pred, true) if level_scale else float("nan"), "srocc": srocc(pred, true),
            "pcc": pcc(pred, true), "n_pooled": len(true)}


def _pooled(pred: np.ndarray, true: np.ndarray, level_scale: bool) -> dict:
    """:func:`_levels` with the pooled count as ``n``."""
    out = _levels(pred, true, level_scale)
    out["n"] = out.pop("n_pooled")
    return out


def per_photo(photo, true_type, pred_level, true_level, types) -> tuple[dict, dict]:
    """Level SROCC per type and source photo of single-type samples, and per type its mean
    over the photos (NaN SROCCs, e.g. a type not modelled, left out of the mean)."""
    photo, true_type = np.asarray(photo, dtype=object), np.asarray(true_type)
    pred_level, true_level = np.asarray(pred_level, float), np.asarray(true_level, float)
    table, means = {}, {}
    for t in types:
        m = true_type == t
        if not m.any():
            continue
        table[t] = {}
        for p in dict.fromkeys(photo[m]):
            sel = m & (photo == p) & ~np.isnan(pred_level)
            table[t][str(p)] = srocc(pred_level[sel], true_level[sel])
        vals = [v for v in table[t].values() if not np.isnan(v)]
        means[t] = float(np.mean(vals)) if vals else float("nan")
    return table, means


def not_modelled(pred: np.ndarray, types) -> list[str]:
    """The types whose predicted level is NaN on every row of (N, K) ``pred``."""
    pred = np.asarray(pred, float)
    return [t for k, t in enumerate(types) if len(pred) and np.isnan(pred[:, k]).all()]


def evaluate_table(table, types, gap: float = 5.0, *, level_scale: bool = True) -> dict:
    """Every estimation metric of one predictions table
    (:func:`zephir.estimator_evaluation.evaluate`).

    ``single``: table 2 on single-type samples (:func:`summarize`). Beyond the paper:
    ``near_bin`` / ``between_bins``: level metrics of the single-type samples whose true level
    lies within ``gap / 4`` of a bin centre (multiples of ``gap``) or farther, each recording
    the ``gap`` it was split by; ``mixtures``: samples of 2-4 types (``samples`` of them), type
    recall and level metrics over every present type (``n`` pairs pooled).
    ``per_photo`` (when the table has a ``source`` column): per type, each source photo's
    level SROCC over its single-type samples (``{type: {photo: srocc}}``) and
    ``per_photo_mean`` its mean over photos (NaN ones left out): ranking within a photo, which
    the pooled SROCC mixes with offsets between photos.
    ``not_modelled``: the types without predictions (their samples are left out of the level
    metrics; type accuracy and recall are NaN); ``level_scale``: False when the levels are
    scores on the 0..100 axis (no MAE anywhere).
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
    out = {"single": summarize(predicted_types(scores[single], types), names[k], p_lv, t_lv,
                               types, level_scale=level_scale),
           "not_modelled": not_modelled(pred, types), "level_scale": bool(level_scale)}
    if "source" in table:
        out["per_photo"], out["per_photo_mean"] = per_photo(
            np.asarray(table["source"])[rows], names[k], p_lv, t_lv, types)
    dist = np.abs(t_lv - gap * np.round(t_lv / gap))
    near = dist <= gap / 4
    out["near_bin"] = {**_pooled(p_lv[near], t_lv[near], level_scale), "gap": float(gap)}
    out["between_bins"] = {**_pooled(p_lv[~near], t_lv[~near], level_scale),
                           "gap": float(gap)}
    mix = count >= 2
    if mix.any():
        m_true, m_pred = true[mix][present[mix]], pred[mix][present[mix]]
        recall = (float("nan") if np.isnan(scores[mix]).any()
                  else type_recall(scores[mix], present[mix]))
        out["mixtures"] = {"type_recall": recall, **_pooled(m_pred, m_true, level_scale),
                           "samples": int(mix.sum())}
    return out
