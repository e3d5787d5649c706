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


# ----------------------------------------------------- figure 21 and section 9.1's comparisons

def disagreement_crop(images: Sequence[np.ndarray], size: int) -> tuple[int, int]:
    """The crop rule of the comparison figures (not chosen by hand): of the ``size`` x ``size``
    windows on a grid of stride ``size // 2`` (plus the windows flush with the right and bottom
    edges), the one where the runs' restorations of one image differ most, i.e. with the
    largest mean over the window of the per-pixel standard deviation across the runs (ties:
    the first in raster order). Returns its top-left corner (y, x)."""
    stack = np.stack([np.asarray(im, dtype=np.float64) for im in images])
    spread = stack.std(axis=0)
    spread = spread.mean(axis=-1) if spread.ndim == 3 else spread
    h, w = spread.shape
    s = min(size, h, w)
    integral = np.pad(spread.cumsum(0).cumsum(1), ((1, 0), (1, 0)))

    def starts(n: int) -> list[int]:
        out = list(range(0, n - s + 1, max(1, s // 2)))
        return out if out[-1] == n - s else out + [n - s]

    best, corner = -1.0, (0, 0)
    for y in starts(h):
        for x in starts(w):
            total = (integral[y + s, x + s] - integral[y, x + s] - integral[y + s, x]
                     + integral[y, x])
            if total > best + 1e-12:
                best, corner = total, (y, x)
    return corner


def _set_name(lq: Path) -> str:
    """A set's name from its LQ source: results/<run>/{blind,data}/<set>/<file>."""
    return Path(lq).parent.name


def _hq_of(lq: Path) -> dict[str, Path]:
    """{stem: HQ path} of a blind manifest; empty for an image index (an hq: false set)."""
    import csv as _csv

    lq = Path(lq)
    with lq.open(newline="", encoding="utf-8") as fh:
        rows = list(_csv.DictReader(fh))
    if not rows or "hq" not in rows[0]:
        return {}
    return {Path(r["lq"]).stem: lq.parent / r["hq"] for r in rows}


def _comparison_row(restored: Sequence[Path], stem: str, lq_path: Path, hq: Path | None,
                    crop: int) -> list[np.ndarray]:
    from zephir import io as zio

    outs = [zio.load_image(Path(p).parent / f"{stem}.png").pixels for p in restored]
    lq = _upscale_nearest(zio.load_image(lq_path).pixels, outs[0].shape[:2])
    y, x = disagreement_crop(outs, crop)
    s = min(crop, *outs[0].shape[:2])
    panels = [lq, *outs] + ([zio.load_image(hq).pixels] if hq is not None else [])
    return [p[y:y + s, x:x + s] for p in panels]


def _restored_stems(restored: Sequence[Path], lq: Path) -> list[tuple[str, Path]]:
    from zephir.data import lq_inputs

    return [(stem, path) for stem, path in lq_inputs(lq).items()
            if all((Path(p).parent / f"{stem}.png").is_file() for p in restored)]


def comparison(restored: Sequence[Path], lq: Path, out: Path, *, crop: int = 96,
               images: int = 3) -> Path:
    """Section 9.1: one set restored by one backbone in every mode, the first ``images``
    images (by stem) as rows: LQ (nearest-upscaled), each run, HQ where the set has it; each
    row cropped where the runs differ most (:func:`disagreement_crop`)."""
    dones = [_done(p) for p in restored]
    stems = _restored_stems(restored, lq)[:images]
    if not stems:
        raise ValueError(f"comparison: no image of {lq} is restored by every run given")
    hq = _hq_of(lq)
    rows = [_comparison_row(restored, stem, path, hq.get(stem), crop) for stem, path in stems]
    cols = ["LQ (nearest)"] + [_panel_label(d) for d in dones] + (["HQ"] if hq else [])
    backbone = dones[0]["job"].get("backbone", "")
    return _grid(rows, [s for s, _ in stems], cols,
                 f"{_set_name(lq)}, {backbone}: crops where the runs differ most" + _note(dones),
                 out)


def figure21(restored: Sequence[Path], lq: Sequence[Path], out: Path, *, crop: int = 96
             ) -> Path:
    """Fig. 21: RealDeg's subsets (one ``lq`` source each) restored by one backbone in every
    mode: ``restored`` holds the runs of the first set, then of the second, ... (the same
    modes in the same order); a row per set, its first restored image, cropped where the runs
    differ most (:func:`disagreement_crop`)."""
    if not lq or len(restored) % len(lq):
        raise ValueError(f"figure 21: {len(restored)} --restored records do not split into "
                         f"{len(lq)} sets of the same runs")
    per = len(restored) // len(lq)
    dones = [_done(p) for p in restored]
    rows, titles = [], []
    for i, source in enumerate(lq):
        runs = restored[i * per:(i + 1) * per]
        stems = _restored_stems(runs, source)
        if not stems:
            raise ValueError(f"figure 21: no image of {source} is restored by its runs")
        stem, path = stems[0]
        rows.append(_comparison_row(runs, stem, path, None, crop))
        titles.append(f"{_set_name(source)}: {stem}")
    cols = ["LQ (nearest)"] + [_panel_label(d) for d in dones[:per]]
    backbone = dones[0]["job"].get("backbone", "")
    return _grid(rows, titles, cols, f"Fig. 21: real-world sets, {backbone}: crops where the "
                 "runs differ most" + _note(dones), out)
