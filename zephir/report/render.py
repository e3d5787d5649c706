"""Writing a table: CSV is data, Markdown and LaTeX are presentation.

The CSV keeps every number at full precision. Markdown and LaTeX show each numeric column with
the format its :class:`Column` declares (percent with one decimal, MAE two, SROCC / PCC three)
and, where the column says whether higher or lower is better, the best value in bold as the
paper marks it (every row that ties with it at the shown precision). No pandas import here: the
registry declares columns with :class:`Column` and must stay light.
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from zephir import io as zio


@dataclass(frozen=True)
class Column:
    """How a numeric column is shown in Markdown and LaTeX.

    ``fmt`` is a format spec (``".1f"``); ``better`` is ``"higher"``, ``"lower"`` or ``None``
    (no best value: nothing in bold).
    """

    fmt: str
    better: str | None = None

    def __post_init__(self):
        if self.better not in (None, "higher", "lower"):
            raise ValueError(f"Column.better: {self.better!r} is not 'higher', 'lower' or None")
        format(1.0, self.fmt)  # a bad spec fails here, not when a table is written

    def show(self, value, missing: str) -> str:
        """The value in the column's format; a text (such as "n/a (weights missing)") as it
        is; ``missing`` for None / NaN."""
        if isinstance(value, str):
            return value
        return missing if _missing(value) else format(float(value), self.fmt)

    def best(self, values: Sequence) -> set[int]:
        """Rows holding the best value as shown (ties included); none without a direction,
        with fewer than two values to compare, or when every value ties."""
        shown = {i: float(format(float(v), self.fmt)) for i, v in enumerate(values)
                 if not _missing(v) and not isinstance(v, str)}
        if self.better is None or len(set(shown.values())) < 2:
            return set()
        top = (max if self.better == "higher" else min)(shown.values())
        return {i for i, v in shown.items() if v == top}


#: Percentages (type accuracy, type recall): one decimal, higher is better.
PERCENT = Column(".1f", "higher")
#: Mean absolute error of a 0..100 level: two decimals, lower is better.
MAE = Column(".2f", "lower")
#: Rank and linear correlations (SROCC, PCC): three decimals, higher is better.
CORR = Column(".3f", "higher")


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _text(value) -> str:
    return "" if _missing(value) else str(value)


def _latex_escape(s: str) -> str:
    out = []
    for ch in s:
        out.append({"\\": r"\textbackslash{}", "%": r"\%", "_": r"\_", "&": r"\&", "#": r"\#",
                    "$": r"\$", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                    "^": r"\textasciicircum{}"}.get(ch, ch))
    return "".join(out)


def check_columns(df, columns: Mapping[str, Column], name: str = "table") -> None:
    """Every numeric column of ``df`` needs a declared :class:`Column`."""
    loose = [c for c in df.columns if df[c].dtype.kind in "fiuc" and c not in columns]
    if loose:
        raise ValueError(f"{name}: no format declared for column(s) {', '.join(map(repr, loose))}")


def bold_note(df, columns: Mapping[str, Column]) -> str:
    """The caption sentence that says what bold marks (empty when nothing is bold)."""
    marked = [c for c in df.columns if c in columns and columns[c].best(df[c].tolist())]
    if not marked:
        return ""
    lower = [c for c in marked if columns[c].better == "lower"]
    higher = [c for c in marked if columns[c].better == "higher"]
    said = [f"{w} is better for {', '.join(cs)}" for w, cs in (("lower", lower),
                                                                ("higher", higher)) if cs]
    return f"Bold: the best value of each column ({'; '.join(said)})."


def _cells(df, columns: Mapping[str, Column], missing: str, bold, escape=lambda s: s
           ) -> list[list[str]]:
    cols = []
    for c in df.columns:
        values = df[c].tolist()
        if c in columns:
            best = columns[c].best(values)
            cols.append([bold(columns[c].show(v, missing)) if i in best
                         else columns[c].show(v, missing) for i, v in enumerate(values)])
        else:
            cols.append([escape(_text(v)) for v in values])
    return [list(row) for row in zip(*cols)] if cols else []


def markdown(df, columns: Mapping[str, Column], caption: str) -> str:
    """A pipe table (numbers right-aligned, text left), then the caption."""
    header = [str(c).replace("|", r"\|") for c in df.columns]
    rows = _cells(df, columns, "–", lambda s: f"**{s}**", lambda s: s.replace("|", r"\|"))
    numeric = [c in columns for c in df.columns]
    widths = [max([3, len(h)] + [len(r[j]) for r in rows]) for j, h in enumerate(header)]

    def line(cells):
        return "| " + " | ".join(c.rjust(w) if num else c.ljust(w)
                                 for c, w, num in zip(cells, widths, numeric)) + " |"

    rule = "|" + "|".join("-" * (w + 1) + ":" if num else ":" + "-" * (w + 1)
                          for w, num in zip(widths, numeric)) + "|"
    return "\n".join([line(header), rule, *map(line, rows)]) + f"\n\n{caption}\n"


def latex(df, columns: Mapping[str, Column], caption: str, label: str) -> str:
    """A booktabs ``table`` float with the caption and label."""
    spec = "".join("r" if c in columns else "l" for c in df.columns)
    rows = _cells(df, columns, "--", lambda s: rf"\textbf{{{s}}}", _latex_escape)
    body = [" & ".join(_latex_escape(str(c)) for c in df.columns) + r" \\", r"\midrule"]
    body += [" & ".join(r) + r" \\" for r in rows]
    return "\n".join([r"\begin{table}[t]", r"\centering", rf"\caption{{{_latex_escape(caption)}}}",
                      rf"\label{{{label}}}", rf"\begin{{tabular}}{{{spec}}}", r"\toprule", *body,
                      r"\bottomrule", r"\end{tabular}", r"\end{table}"]) + "\n"


def metrics(df, columns: Mapping[str, Column]) -> dict:
    """The table as DVC metrics: ``{row: {column: value}}``, a row named by its label columns
    (those that are not numeric columns, joined by " / "), numbers at full precision, a missing
    value as None and a text (such as "n/a (weights missing)") as it is."""
    labels = [c for c in df.columns if c not in columns]
    rows = {}
    for record in df.to_dict("records"):
        name = " / ".join(_text(record[c]) for c in labels) or str(len(rows))
        if name in rows:
            raise ValueError(f"two rows of the table are both named {name!r} by its label "
                             f"columns {labels}")
        rows[name] = {c: None if _missing(record[c]) else
                      record[c] if isinstance(record[c], str) else float(record[c])
                      for c in df.columns if c in columns}
    return rows


def write(df, stem: Path, caption: str, columns: Mapping[str, Column], label: str
          ) -> list[Path]:
    """Write ``stem``.csv (full precision), .md and .tex (declared formats, best in bold) and
    .json (:func:`metrics`, what `dvc metrics show` reads), atomically; returns the paths."""
    check_columns(df, columns, label)
    shown = " ".join(p for p in (caption, bold_note(df, columns)) if p)
    stem = Path(stem)
    paths = [stem.with_suffix(s) for s in (".csv", ".md", ".tex", ".json")]
    texts = (df.to_csv(index=False), markdown(df, columns, shown),
             latex(df, columns, shown, label),
             json.dumps(metrics(df, columns), indent=1) + "\n")
    for path, text in zip(paths, texts):
        zio.write_text(path, text)
    return paths
