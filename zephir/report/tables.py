"""Tables 2-4 (and the beyond-the-paper companion of table 2) from evaluation results.

Every table is built from the ``metrics.json`` files written by ``zephir evaluate`` (no number
typed by hand) and rendered as CSV, Markdown and LaTeX. Each states the config it came from (a
short hash) and, when an encoder was trained from random init or is a tiny architecture, says
so in its caption.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from zephir import io as zio
from zephir.config import LOSS_ABLATIONS as LOSSES

#: How tables and figures name each method of :data:`zephir.estimators.METHODS`.
LABELS = {"hdclip": "HD-CLIP", "clip_zeroshot": "CLIP (zero-shot)",
          "daclip_style": "DA-CLIP-style", "daclip_released": "DA-CLIP (released weights)",
          "mmrealsr_style": "MM-RealSR-style"}

_METRICS = [("Type Acc (%)", "type_acc", 100.0), ("MAE", "mae", 1.0), ("SROCC", "srocc", 1.0),
            ("PCC", "pcc", 1.0)]


def read_results(paths: Sequence[Path]) -> list[dict]:
    """The ``metrics.json`` of each evaluated model, with a clear error for a missing file."""
    out = []
    for p in map(Path, paths):
        if not p.is_file():
            raise FileNotFoundError(f"{p}: no evaluation results (run `zephir evaluate`)")
        out.append(json.loads(p.read_text()))
    return out


def losses_of(result: dict) -> str:
    """The table 3 letter of a model's loss configuration."""
    flags = (bool(result["train"]["use_level"]), bool(result["train"]["use_slerp"]))
    return next(k for k, v in LOSSES.items() if v == flags)


def _cells(m: dict) -> dict:
    return {name: m[key] * scale for name, key, scale in _METRICS}


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
        k = r["hdclip"]["topk"]
        rows.append({"top-k": "all" if k is None else str(k), "gap size": f"{r['hdclip']['gap']:g}",
                     **_cells(r["metrics"]["single"])})
    return pd.DataFrame(rows)


def caption(title: str, results: Sequence[dict], config_hash: str) -> str:
    """The caption: title, provenance, and the random-init / tiny-architecture warning."""
    text = f"{title} Config {config_hash}."
    random_init = any(r.get("random_init") for r in results)
    tiny = sorted({r["arch"] for r in results if r["arch"].startswith("zephir-tiny")})
    if random_init or tiny:
        what = []
        if random_init:
            what.append("trained from random init (no pretrained CLIP weights)")
        if tiny:
            what.append(f"tiny architecture {', '.join(tiny)}")
        text += (" Encoders " + " and ".join(what) + ": these numbers are not the paper's and "
                 "only compare the methods with each other.")
    trained = [r for r in results if r["method"] != "clip_zeroshot" and "steps" in r["train"]]
    if len({r["train"]["steps"] for r in trained}) == 1:
        text += f" Training steps: {trained[0]['train']['steps']} per model."
    elif trained:
        text += " Training steps: " + ", ".join(
            f"{LABELS[r['method']]} {r['train']['steps']}" for r in trained) + "."
    return text


def _latex_escape(s: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("%", r"\%"), ("_", r"\_"), ("&", r"\&"),
                 ("#", r"\#")):
        s = s.replace(a, b)
    return s


def render(df: pd.DataFrame, stem: Path, caption_text: str, label: str) -> list[Path]:
    """Write ``stem``.csv, .md and .tex (atomically); returns the three paths."""
    stem = Path(stem)
    csv_text = df.to_csv(index=False, float_format="%.4f")
    md = df.to_markdown(index=False, floatfmt=".4f") + f"\n\n{caption_text}\n"
    shown = df.rename(columns=_latex_escape)
    for col in shown.columns:
        if shown[col].dtype == object:
            shown[col] = shown[col].map(lambda v: _latex_escape(str(v)))
    tex = shown.style.hide(axis="index").format(precision=4).to_latex(
        caption=_latex_escape(caption_text), label=label, hrules=True, position="t")
    paths = [stem.with_suffix(".csv"), stem.with_suffix(".md"), stem.with_suffix(".tex")]
    for path, text in zip(paths, (csv_text, md, tex)):
        zio.write_text(path, text)
    return paths


#: name -> (builder, title)
TABLES = {
    "table2": (table2, "Table 2: degradation estimation on the single-type validation samples."),
    "table2_beyond": (table2_beyond, "Beside table 2 (beyond the paper): levels near bin "
                      "centres (within gap/4 of a multiple of 5) and between them, and "
                      "mixtures of 2-4 types (type recall: share of the present types among "
                      "the most confident ones)."),
    "table3": (table3, "Table 3: loss ablations of HD-CLIP."),
    "table4": (table4, "Table 4: top-k bin centres and gap size of the local interpolation "
               "regression (eq. 6)."),
}


def make(name: str, metrics: Sequence[Path], config_hash: str, out_stem: Path) -> list[Path]:
    """Build table ``name`` from evaluation results and render it; returns the files."""
    if name not in TABLES:
        raise ValueError(f"unknown table {name!r}; expected one of {', '.join(TABLES)}")
    builder, title = TABLES[name]
    results = read_results(metrics)
    return render(builder(results), out_stem, caption(title, results, config_hash),
                  f"tab:{name}")
