"""Builders of tables 2-4 (and the beyond-the-paper companion of table 2): results -> DataFrame.

Every table is built from the ``metrics.json`` files written by ``zephir evaluate`` (no number
typed by hand). Which files a table reads, how its columns are shown and what its caption says
are declared in :mod:`zephir.report.registry`; :mod:`zephir.report.render` writes it.
"""
from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from zephir.config import LOSS_ABLATIONS as LOSSES
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
        rows.append(row)
    return pd.DataFrame(rows)


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
