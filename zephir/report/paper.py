"""The paper's published numbers beside a run's: how far a reproduction is, at a glance.

``paper_values.csv`` holds every value of tables 1-7 as the paper prints it (table, row,
column, value). :func:`compare` matches a rendered table's rows to the paper's (each table has
its row key in :data:`ROW_KEYS`) and gives, for every numeric cell the paper also reports, the
run's value, the paper's and their difference.
"""
from __future__ import annotations

import csv
import io
from collections.abc import Callable
from functools import cache
from importlib import resources
from pathlib import Path

import pandas as pd

from zephir import io as zio
from zephir.report import render
from zephir.report.render import Column

#: Backbone names as the paper's tables print them.
BACKBONES = {"seesr": "SeeSR", "pasd": "PASD", "faithdiff": "FaithDiff"}
#: Method labels of table 2 as the paper prints them (the reimplementations stand for them).
METHODS = {"CLIP (zero-shot)": "CLIP", "DA-CLIP-style": "DA-CLIP",
           "DA-CLIP (released weights)": "DA-CLIP", "HD-CLIP": "HD-CLIP"}


@cache
def values() -> dict[tuple[str, str, str], float]:
    """(table, row, column) -> the value printed in the paper."""
    text = resources.files("zephir.report").joinpath("paper_values.csv").read_text("utf-8")
    return {(r["table"], r["row"], r["column"]): float(r["value"])
            for r in csv.DictReader(io.StringIO(text))}


def _sweep_row(row: dict) -> str | None:
    """Table 5's rows are three one-way sweeps; a (w_orth, w_par) pair is looked up in the
    first sweep that holds it."""
    wanted = f"w_orth={float(row['w_orth']):.1f} w_par={float(row['w_par']):.1f}"
    keys = sorted({k[1] for k in values() if k[0] == "table5" and k[1].endswith(wanted)})
    return keys[0] if keys else None


ROW_KEYS: dict[str, Callable[[dict], str | None]] = {
    "table1": lambda r: f"{BACKBONES.get(r['Backbone'], r['Backbone'])} {r['Mode']}",
    "table2": lambda r: METHODS.get(r["Method"]),
    "table3": lambda r: r[""],
    "table4": lambda r: f"top-k={r['top-k']} gap={r['gap size']}",
    "table5": _sweep_row,
    "table7": lambda r: f"{BACKBONES.get(r['Backbone'], r['Backbone'])} {r['Mode']}",
    "table6": lambda r: r["Model"],
}
#: A run's column under the paper's name where they differ: table 6's sizes are MiB, which
#: is what the paper's "MB" are (151.28 M x 4 B / 2^20 = 577.08).
COLUMN_KEYS: dict[str, dict[str, str]] = {"table6": {"Size (MiB)": "Size (MB)"}}


def compare(name: str, df: pd.DataFrame, columns) -> pd.DataFrame:
    """One row per cell of ``df`` that the paper also reports: the table's row (as the paper
    names it), the column, the run's value, the paper's and run - paper. Empty when the table
    has no paper counterpart or no row matches."""
    key = ROW_KEYS.get(name)
    out = []
    if key is not None:
        printed = values()
        for row in df.to_dict("records"):
            paper_row = key(row)
            for column, value in row.items():
                paper = printed.get((name, paper_row,
                                     COLUMN_KEYS.get(name, {}).get(column, column)))
                if paper is None or column not in columns:
                    continue
                run = None if isinstance(value, str) else float(value)
                out.append({"Row": paper_row, "Column": column,
                            "Run": value, "Paper": paper,
                            "Run - paper": None if run is None else run - paper})
    return pd.DataFrame(out, columns=["Row", "Column", "Run", "Paper", "Run - paper"])


def write(name: str, df: pd.DataFrame, columns, stem, caption: str) -> list:
    """``<stem>.paper.csv`` / ``.md``: :func:`compare` of a rendered table."""
    table = compare(name, df, columns)
    shown = {"Run": Column(".4g"), "Paper": Column(".4g"), "Run - paper": Column("+.4g")}
    note = (f"{caption} Beside the paper: every cell the paper also reports, as printed there."
            if len(table) else f"{caption} The paper reports none of these rows.")
    stem = Path(stem)
    paths = [stem.with_name(stem.name + ".paper.csv"), stem.with_name(stem.name + ".paper.md")]
    zio.write_text(paths[0], table.to_csv(index=False))
    zio.write_text(paths[1], render.markdown(table, shown, note))
    return paths
