"""Tables 1, 5 and 7 and figures 6 and 11: restoration results as the paper shows them.

Tables are built from the score files of ``zephir score`` (one JSON per set x backbone x run:
the metric means, their labels and directions, and what was restored: the job's settings and
whether the backbone and HD-CLIP were random-init). Figures are drawn from the restored PNGs
themselves, as crops beside the LQ and HQ images of the blind set.
"""
from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from zephir.report.render import Column
from zephir.report.results import read_json

#: How a table names each run.
MODES = {"baseline": "baseline", "cfg": "CFG", "cfpg": "CFPG"}
#: Decimals of each metric, as the paper prints them.
FORMATS = {"psnr": ".2f", "ssim": ".4f", "lpips": ".4f", "musiq": ".2f", "qalign": ".4f",
           "niqe": ".4f", "brisque": ".4f"}


def read_scores(paths: Sequence[Path]) -> list[dict]:
    """The score files (``<run>.json`` of ``zephir score``)."""
    return read_json(paths, "scores", "zephir score")


def _label(metric: str, result: dict) -> str:
    return result["labels"].get(metric, metric)


def _value(result: dict, metric: str):
    """A metric's mean: a number, or the text that says why there is none."""
    value = result["means"].get(metric)
    return float("nan") if value is None else value


def run_label(result: dict) -> str:
    """``CFPG``, ``CFG``, ``baseline``, or ``CFPG w_orth=0.6 w_par=1`` for a sweep run."""
    run = result["meta"]["run"]
    if run in MODES:
        return MODES[run]
    w_orth, w_par = run.removeprefix("cfpg-wo").split("-wp")
    return f"CFPG w_orth={w_orth} w_par={w_par}"


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


def _wide(results: Sequence[dict], per_set: bool) -> pd.DataFrame:
    """One row per backbone and run; one column per metric (per set when ``per_set``)."""
    rows: dict[tuple[str, str], dict] = {}
    for r in results:
        m = r["meta"]
        row = rows.setdefault((m["backbone"], run_label(r)),
                              {"Backbone": m["backbone"], "Mode": run_label(r)})
        prefix = f"{m.get('label', m['dataset'])}/" if per_set else ""
        for metric in r["means"]:
            row[prefix + _label(metric, r)] = _value(r, metric)
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
                     **{_label(k, r): _value(r, k) for k in r["means"]}})
    return pd.DataFrame(rows)


def unavailable_note(results: Sequence[dict]) -> str:
    """The caption sentence naming the metrics left n/a for missing weights."""
    missing = sorted({_label(k, r) for r in results for k in r.get("unavailable", {})})
    if not missing:
        return ""
    return (f"n/a (weights missing): {', '.join(missing)}; `zephir weights check` says where "
            "each file goes.")


def conventions_note(results: Sequence[dict]) -> str:
    """Each metric's convention (channel, range, border), once."""
    seen: dict[str, str] = {}
    for r in results:
        for k, text in r.get("conventions", {}).items():
            seen.setdefault(_label(k, r), text)
    return " ".join(f"{k}: {v}" for k, v in seen.items())


# --------------------------------------------------------------------------- figures

def _done(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def _crop(img: np.ndarray, size: int) -> np.ndarray:
    h, w = img.shape[:2]
    s = min(size, h, w)
    y, x = (h - s) // 2, (w - s) // 2
    return img[y:y + s, x:x + s]


def _panel_label(done: dict) -> str:
    job = done["job"]
    if job["mode"] == "cfpg" and "w_orth" in job:
        return f"CFPG w_orth={job['w_orth']:g} w_par={job['w_par']:g}"
    return MODES[job["mode"]]


def _grid(rows: list[list[np.ndarray]], row_titles: list[str], col_titles: list[str],
          title: str, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from zephir.report.figures import _save

    n_rows, n_cols = len(rows), len(rows[0])
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(2.4 * n_cols, 2.5 * n_rows + 0.6),
                             squeeze=False, layout="constrained")
    for i, row in enumerate(rows):
        for j, img in enumerate(row):
            ax = axes[i, j]
            ax.imshow(img, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(col_titles[j], fontsize=9)
            if j == 0:
                ax.set_ylabel(row_titles[i], fontsize=9)
    fig.suptitle(title, fontsize=10)
    return _save(fig, out)


def _note(dones: Sequence[dict]) -> str:
    what = (["random-init backbone"] if any(d["random_init"] for d in dones) else []) + \
        (["random-init HD-CLIP"] if any(d["hdclip_random_init"] for d in dones) else [])
    return f" [{', '.join(what)}: not the paper's images]" if what else ""


def _upscale_nearest(img: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    ys = (np.arange(shape[0]) * img.shape[0] // shape[0]).clip(0, img.shape[0] - 1)
    xs = (np.arange(shape[1]) * img.shape[1] // shape[1]).clip(0, img.shape[1] - 1)
    return img[ys][:, xs]


def figure6(restored: Sequence[Path], blind: Path, out: Path, *, crop: int = 96,
            images: int = 3) -> Path:
    """Fig. 6: crops of LQ (nearest-neighbour upscaled) / each run / HQ for the first
    ``images`` images of a blind set; ``restored``: one shard record of each run."""
    from zephir import io as zio
    from zephir.degrade.blind import read_manifest

    dones = [_done(p) for p in restored]
    rows_in = read_manifest(blind)[:images]
    root = Path(blind).parent
    rows, titles = [], []
    for row in rows_in:
        stem = Path(row["lq"]).stem
        hq = zio.load_image(root / row["hq"]).pixels
        lq = _upscale_nearest(zio.load_image(root / row["lq"]).pixels, hq.shape[:2])
        panels = [_crop(lq, crop)]
        for path in restored:
            panels.append(_crop(zio.load_image(Path(path).parent / f"{stem}.png").pixels, crop))
        rows.append(panels + [_crop(hq, crop)])
        titles.append(stem)
    cols = ["LQ (x4 nearest)"] + [_panel_label(d) for d in dones] + ["HQ"]
    return _grid(rows, titles, cols, "Fig. 6: restorations" + _note(dones), out)


def figure11(restored: Sequence[Path], blind: Path, out: Path, *, crop: int = 96) -> Path:
    """Fig. 11: CFPG over the w_orth x w_par sweep, crops of the first image of the set, one
    row per w_orth and one column per w_par."""
    from zephir import io as zio
    from zephir.degrade.blind import read_manifest

    dones = [_done(p) for p in restored]
    stem = Path(read_manifest(blind)[0]["lq"]).stem
    grid: dict[float, dict[float, np.ndarray]] = {}
    for path, d in zip(restored, dones):
        img = zio.load_image(Path(path).parent / f"{stem}.png").pixels
        grid.setdefault(d["job"]["w_orth"], {})[d["job"]["w_par"]] = _crop(img, crop)
    w_orths = sorted(grid)
    w_pars = sorted({p for row in grid.values() for p in row})
    missing = [(o, p) for o in w_orths for p in w_pars if p not in grid[o]]
    if missing:
        raise ValueError(f"figure 11: the sweep lacks (w_orth, w_par) {missing}")
    rows = [[grid[o][p] for p in w_pars] for o in w_orths]
    return _grid(rows, [f"w_orth={o:g}" for o in w_orths], [f"w_par={p:g}" for p in w_pars],
                 f"Fig. 11: CFPG weights on {stem}" + _note(dones), out)
