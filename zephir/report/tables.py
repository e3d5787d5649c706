"""Builders of tables 2-4 (and the beyond-the-paper companions of table 2): results -> DataFrame.

Every table is built from the ``metrics.json`` files written by ``zephir evaluate`` (no number
typed by hand). Which files a table reads, how its columns are shown and what its caption says
are declared in :mod:`zephir.report.registry`; :mod:`zephir.report.render` writes it.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from zephir.config import LOSS_ABLATIONS as LOSSES
from zephir.degrade.levels import LABEL_ORDER
from zephir.report.results import LABELS, losses_of, topk_label

#: The table 2 metrics: column, key in metrics.json, scale.
METRICS = [("Type Acc (%)", "type_acc", 100.0), ("MAE", "mae", 1.0), ("SROCC", "srocc", 1.0),
           ("PCC", "pcc", 1.0)]


def _cells(m: dict) -> dict:
    return {name: m[key] * scale for name, key, scale in METRICS}


def table2(results: Sequence[dict]) -> pd.DataFrame:
    """Table 2: one row per method, on the single-type validation samples."""
    return pd.DataFrame([{"Method": LABELS[r["method"]], **_cells(r["metrics"]["single"])}
                         for r in results])


def table2_beyond(results: Sequence[dict]) -> pd.DataFrame:
    """Beside table 2: levels near / between bin centres, and mixtures of 2-4 types."""
    rows = []
    for r in results:
        m = r["metrics"]
        row = {"Method": LABELS[r["method"]],
               "MAE near bin": m["near_bin"]["mae"], "SROCC near bin": m["near_bin"]["srocc"],
               "MAE between": m["between_bins"]["mae"],
               "SROCC between": m["between_bins"]["srocc"]}
        if "mixtures" in m:
            row.update({"Mix type recall (%)": 100 * m["mixtures"]["type_recall"],
                        "Mix MAE": m["mixtures"]["mae"], "Mix SROCC": m["mixtures"]["srocc"]})
        if "transfer" in r:
            t = r["transfer"]["metrics"]["single"]
            row.update({"Transfer acc (%)": 100 * t["type_acc"], "Transfer SROCC": t["srocc"]})
        rows.append(row)
    return pd.DataFrame(rows)


def table2_transfer(results: Sequence[dict]) -> pd.DataFrame:
    """Beside table 2: the transfer evaluation against the validation samples, per method and
    type (and "all", pooled over types): type accuracy, level SROCC pooled over photos, its
    mean within photos, and the worst photo of the transfer set."""
    rows = []
    for r in results:
        if "transfer" not in r:
            continue
        val, tr = r["metrics"], r["transfer"]["metrics"]
        order = r.get("hdclip", {}).get("types") or LABEL_ORDER
        for kind in ["all", *sorted(tr["per_photo"], key=list(order).index)]:
            acc, rho = (("type_acc", "srocc") if kind == "all"
                        else (f"{kind}_acc", f"{kind}_srocc"))
            nan = float("nan")
            row = {"Method": LABELS[r["method"]], "Type": kind,
                   "Val acc (%)": 100 * val["single"].get(acc, nan),
                   "Transfer acc (%)": 100 * tr["single"].get(acc, nan),
                   "Val SROCC": val["single"].get(rho, nan),
                   "Transfer SROCC": tr["single"].get(rho, nan)}
            row["SROCC gap"] = row["Transfer SROCC"] - row["Val SROCC"]
            if kind == "all":
                row.update({"Val SROCC within photo": _mean(val.get("per_photo_mean", {})),
                            "Transfer SROCC within photo": _mean(tr["per_photo_mean"]),
                            "Worst photo": "", "Worst photo SROCC": nan})
            else:
                photos = {p: v for p, v in tr["per_photo"][kind].items() if not math.isnan(v)}
                worst = min(photos, key=photos.get) if photos else ""
                row.update({"Val SROCC within photo":
                            val.get("per_photo_mean", {}).get(kind, nan),
                            "Transfer SROCC within photo": tr["per_photo_mean"][kind],
                            "Worst photo": worst,
                            "Worst photo SROCC": photos[worst] if worst else nan})
            rows.append(row)
    return pd.DataFrame(rows)


def _mean(per_type: dict) -> float:
    vals = [v for v in per_type.values() if not math.isnan(v)]
    return sum(vals) / len(vals) if vals else float("nan")


def table3(results: Sequence[dict]) -> pd.DataFrame:
    """Table 3: the loss ablations A-D (L_level, L_slerp switched on and off)."""
    rows = []
    for r in sorted(results, key=losses_of):
        use_level, use_slerp = LOSSES[losses_of(r)]
        rows.append({"": f"({losses_of(r)})", "L_level": "yes" if use_level else "no",
                     "L_slerp": "yes" if use_slerp else "no", **_cells(r["metrics"]["single"])})
    return pd.DataFrame(rows)


def table4(results: Sequence[dict]) -> pd.DataFrame:
    """Table 4: local interpolation regression, top-k x gap size."""
    def key(r):
        k = r["hdclip"]["topk"]
        return (10**9 if k is None else k, r["hdclip"]["gap"])

    rows = []
    for r in sorted(results, key=key):
        rows.append({"top-k": topk_label(r["hdclip"]["topk"]),
                     "gap size": f"{r['hdclip']['gap']:g}", **_cells(r["metrics"]["single"])})
    return pd.DataFrame(rows)
