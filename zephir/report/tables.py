"""Builders of every table: results -> DataFrame.

Tables 2-4 (and the beyond-the-paper companions of table 2) are built from the ``metrics.json``
files of ``zephir evaluate``, tables 1, 5 and 7 from the score files of ``zephir score``, table 6
from the config's architectures (:mod:`zephir.report.efficiency` measures them): no number typed
by hand. Which files a table reads, how its columns are shown and what its caption says are
declared in :mod:`zephir.report.registry`; :mod:`zephir.report.render` writes it.
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence

import pandas as pd

from zephir.config import LOSS_ABLATIONS as LOSSES
from zephir.degrade.levels import LABEL_ORDER
from zephir.report.render import Column
from zephir.report.results import LABELS, losses_of, metric_label, run_label, topk_label

# ------------------------------------------------------- degradation estimation: tables 2-4

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


# ----------------------------------------------------------- restoration: tables 1, 5 and 7

#: Decimals of each restoration metric, as the paper prints them.
FORMATS = {"psnr": ".2f", "ssim": ".4f", "lpips": ".4f", "musiq": ".2f", "qalign": ".4f",
           "niqe": ".4f", "brisque": ".4f"}


class MetricColumns(Mapping):
    """The column formats of a table whose columns are ``<set>/<metric label>`` or a metric
    label: each metric's decimals and direction, read from the score files."""

    def __init__(self, results: Sequence[dict]):
        self._columns: dict[str, Column] = {}
        for r in results:
            for metric, label in r["labels"].items():
                better = "lower" if r["lower_better"][metric] else "higher"
                self._columns[label] = Column(FORMATS.get(metric, ".4f"), better)

    def _metric(self, key: str) -> str:
        return str(key).rsplit("/", 1)[-1]

    def __getitem__(self, key: str) -> Column:
        return self._columns[self._metric(key)]

    def __contains__(self, key) -> bool:
        return self._metric(key) in self._columns

    def __iter__(self) -> Iterator[str]:
        return iter(self._columns)

    def __len__(self) -> int:
        return len(self._columns)


def _score(result: dict, metric: str):
    """A metric's mean: a number, or NaN where there is none."""
    value = result["means"].get(metric)
    return float("nan") if value is None else value


def _wide(results: Sequence[dict], per_set: bool) -> pd.DataFrame:
    """One row per backbone and run; one column per metric (per set when ``per_set``)."""
    rows: dict[tuple[str, str], dict] = {}
    for r in results:
        m = r["meta"]
        row = rows.setdefault((m["backbone"], run_label(r)),
                              {"Backbone": m["backbone"], "Mode": run_label(r)})
        prefix = f"{m.get('label', m['dataset'])}/" if per_set else ""
        for metric in r["means"]:
            row[prefix + metric_label(r, metric)] = _score(r, metric)
    return pd.DataFrame(list(rows.values()))


def table1(results: Sequence[dict]) -> pd.DataFrame:
    """Table 1: the sets with HQ images (DIV2K-Val, RealSR, DRealSR) x PSNR, SSIM, LPIPS,
    MUSIQ and Q-Align, a row per backbone and mode."""
    return _wide(results, per_set=True)


def table7(results: Sequence[dict]) -> pd.DataFrame:
    """Table 7: the real-world sets without HQ images (RealDeg's Classic Film, Social Media,
    Old Photo) x NIQE, BRISQUE, MUSIQ and Q-Align, a row per backbone and mode."""
    return _wide(results, per_set=True)


def table5(results: Sequence[dict]) -> pd.DataFrame:
    """Table 5: CFPG over the w_orth x w_par grid, one row per pair, the metrics as columns."""
    rows = []
    for r in results:
        w_orth, w_par = r["meta"]["run"].removeprefix("cfpg-wo").split("-wp")
        rows.append({"w_orth": w_orth, "w_par": w_par,
                     **{metric_label(r, k): _score(r, k) for k in r["means"]}})
    return pd.DataFrame(rows)


# ------------------------------------------------------------- encoder efficiency: table 6

def table6(config: dict) -> tuple[pd.DataFrame, dict]:
    """Table 6 of ``config`` as a DataFrame, and the facts its caption states (measured by
    :func:`zephir.report.efficiency.measure`; torch and open_clip only when it is made)."""
    from zephir.report.efficiency import measure

    rows, facts = measure(config)
    return pd.DataFrame(rows), facts
