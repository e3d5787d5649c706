"""The headline numbers `dvc metrics show` prints: a few values a reader compares across commits.

Every table keeps all its cells in its own files (``tables/*.json``); this module picks, from
tables 2 and 1, at most :data:`MAX_VALUES` numbers and writes them as small JSON files of one
folder, one file per row that `dvc metrics show` prints: ``hdclip.json`` (HD-CLIP's type
accuracy, MAE, SROCC and PCC, table 2) and ``<backbone>-<mode>.json`` (table 1's mean over its
sets of each metric of ``report.headline.metrics``). Files of one kind share their keys, so the
printed table has few columns and fits a 100-column terminal.
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from zephir import io as zio

#: Table 2's columns, under the short names the headline shows.
ESTIMATION = {"Type Acc (%)": "Acc", "MAE": "MAE", "SROCC": "SROCC", "PCC": "PCC"}
#: The most values the headline may hold.
MAX_VALUES = 40


def _key(label: str) -> str:
    """A metric label as a config names it: "Q-Align" -> "qalign"."""
    return label.lower().replace("-", "")


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def headline(table2: Mapping | None, table1: Mapping | None, metrics: Sequence[str]
             ) -> dict[str, dict[str, float]]:
    """File stem -> {name: value}, from the ``metrics()`` JSON of tables 2 and 1 (either may
    be None). A metric some set has no number for (weights missing) is left out of the row."""
    out: dict[str, dict[str, float]] = {}
    if table2 is not None:
        if "HD-CLIP" not in table2:
            raise ValueError(f"headline: table 2 has no HD-CLIP row (rows: {', '.join(table2)})")
        cells = table2["HD-CLIP"]
        out["hdclip"] = {short: cells[col] for col, short in ESTIMATION.items()
                         if _number(cells.get(col))}
    for row, cells in (table1 or {}).items():
        backbone, _, mode = row.partition(" / ")
        values = {}
        for metric in metrics:
            found = [(c.rsplit("/", 1)[0], v) for c, v in cells.items()
                     if _key(c.rsplit("/", 1)[-1]) == _key(metric)]
            if found and all(_number(v) for _, v in found):
                label = next(c for c in cells if _key(c.rsplit("/", 1)[-1]) == _key(metric))
                values[label.rsplit("/", 1)[-1]] = sum(v for _, v in found) / len(found)
        out[f"{backbone}-{mode.lower()}"] = values
    n = sum(len(v) for v in out.values())
    if n > MAX_VALUES:
        raise ValueError(f"headline: {n} values, more than {MAX_VALUES}: list fewer "
                         f"report.headline.metrics (now {', '.join(metrics)})")
    return out


def write(values: Mapping[str, Mapping[str, float]], out: Path) -> list[Path]:
    """One JSON file per entry in the folder ``out`` (atomically); returns the paths."""
    paths = []
    for stem, row in values.items():
        path = Path(out) / f"{stem}.json"
        zio.write_text(path, json.dumps(dict(row), indent=1) + "\n")
        paths.append(path)
    return paths


def make(table2: Path | None, table1: Path | None, metrics: Sequence[str], out: Path
         ) -> list[Path]:
    """Read the tables' JSON files and write the headline folder ``out``."""
    read = (lambda p: None if p is None else json.loads(Path(p).read_text()))
    Path(out).mkdir(parents=True, exist_ok=True)
    return write(headline(read(table2), read(table1), metrics), out)
