"""The paper's published numbers (zephir/report/paper_values.csv): well formed, consistent
across tables, and found as printed, in place, in the paper's text when it is at hand."""
from __future__ import annotations

import csv
import re
from collections import defaultdict
from importlib import resources
from pathlib import Path

import pytest

SEED = Path(__file__).resolve().parents[3] / "shared/seeds/000_57a48c6237a294a6.txt"
#: table -> (rows, columns) of the printed table.
SHAPES = {"table1": (9, 15), "table2": (3, 4), "table3": (4, 4), "table4": (5, 4),
          "table5": (15, 5), "table6": (3, 4), "table7": (3, 12)}


@pytest.fixture(scope="module")
def records() -> list[dict]:
    text = resources.files("zephir.report").joinpath("paper_values.csv").read_text("utf-8")
    reader = csv.DictReader(text.splitlines())
    assert reader.fieldnames == ["table", "row", "column", "value", "note"]
    return list(reader)


def _value(records, table: str, row: str, column: str) -> str:
    (hit,) = [r["value"] for r in records
              if (r["table"], r["row"], r["column"]) == (table, row, column)]
    return hit


def test_well_formed(records):
    keys = [(r["table"], r["row"], r["column"]) for r in records]
    assert len(set(keys)) == len(keys)
    for r in records:
        assert re.fullmatch(r"-?\d+(\.\d+)?", r["value"]), r
        assert r["row"] and r["column"]
    for table, (n_rows, n_cols) in SHAPES.items():
        mine = [r for r in records if r["table"] == table]
        assert len({r["row"] for r in mine}) == n_rows, table
        assert len({r["column"] for r in mine}) == n_cols, table
        assert len(mine) == n_rows * n_cols, table
    assert {r["table"] for r in records} == set(SHAPES)


def test_the_same_model_has_the_same_numbers_across_tables(records):
    """HD-CLIP of table 2 is loss setting (D) of table 3 and top-k 2 / gap 5 of table 4; the
    FaithDiff CFPG default (w_orth 0.6, w_par 1.0) of table 5 is its DIV2K-Val row of table 1."""
    for column in ("Type Acc (%)", "MAE", "SROCC", "PCC"):
        hd = _value(records, "table2", "HD-CLIP", column)
        assert hd == _value(records, "table3", "(D)", column)
        assert hd == _value(records, "table4", "top-k=2 gap=5", column)
    for metric in ("PSNR", "SSIM", "LPIPS", "MUSIQ", "Q-Align"):
        assert (_value(records, "table1", "FaithDiff CFPG", f"DIV2K-Val/{metric}")
                == _value(records, "table5", "sweep 2 w_orth=0.6 w_par=1.0", metric))


@pytest.mark.skipif(not SEED.is_file(), reason=f"paper text not at {SEED}")
def test_values_are_printed_in_the_paper_in_place(records):
    """Every value appears verbatim in the text; more strictly, the values of one printed
    row (one dataset of it in tables 1 and 7; one printed line of table 6, which lists the
    models across) appear there side by side, in order."""
    seed = SEED.read_text("utf-8")
    verbatim = [r["value"] in seed for r in records]
    assert sum(verbatim) >= 0.95 * len(records)
    assert all(verbatim)
    groups = defaultdict(list)
    for r in records:
        if r["table"] == "table6":
            key = (r["table"], r["column"])
        else:
            key = (r["table"], r["row"], r["column"].split("/")[0] if "/" in r["column"] else "")
        groups[key].append(r["value"])
    for key, values in groups.items():
        assert " | ".join(values) in seed, key
