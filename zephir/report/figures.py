"""Every figure of the report, one function each, drawn from results files.

Figures 1, 3, 7, 8, 9 and 10 (and the transfer figure beyond the paper) read what the
evaluation wrote (predictions.csv, arrays.npz), a trained model's folder or the source images;
figures 6, 11, 21 and section 9.1's comparisons read the restored PNGs themselves, as crops
beside the LQ and HQ images of the set. Each writes one PNG atomically; restyling a figure
never retrains or re-restores anything. Titles say
when the encoder was trained from random init or is a tiny architecture. Which inputs and
options each figure takes is declared in :mod:`zephir.report.registry`.
"""
from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from zephir import datasets as zdata  # noqa: E402
from zephir import io as zio  # noqa: E402
from zephir.degrade import levels as dlevels  # noqa: E402
from zephir.degrade import ops  # noqa: E402
from zephir.degrade.blind import read_manifest as blind_manifest  # noqa: E402
from zephir.degrade.synth import clean_crop, read_manifest  # noqa: E402
from zephir.report.captions import figure_note  # noqa: E402
from zephir.report.results import LABELS, MODES, losses_of  # noqa: E402


def _save(fig, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    zio.write_bytes(path, buf.getvalue())
    return Path(path)


def _result(metrics: Path) -> dict:
    return json.loads(Path(metrics).read_text())


def _arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        arrays = dict(z)
    if "anchors" not in arrays:
        raise ValueError(f"{path}: no anchors (figures 3 and 10 need an HD-CLIP evaluation)")
    return arrays


def figure3(arrays: Path, predictions: Path, metrics: Path, out: Path) -> Path:
    """Fig. 3: PCA of the ordinal anchors and the image embeddings, one panel per type.

    PCA (not t-SNE): a linear map keeps the anchors' ordering and spacing readable, and is
    deterministic. Each panel fits its own PCA on that type's anchors and embeddings of the
    single-type samples of the type, both coloured by level.
    """
    from sklearn.decomposition import PCA

    a = _arrays(arrays)
    table = pd.read_csv(predictions)
    types = [str(t) for t in a["types"]]
    fig, axes = plt.subplots(1, len(types), figsize=(4.4 * len(types), 4.4), layout="constrained")
    for k, (t, ax) in enumerate(zip(types, np.atleast_1d(axes))):
        rows = np.flatnonzero((table["types"] == t).to_numpy())
        emb, anchors = a["embeddings"][rows, k], a["anchors"][k]
        pca = PCA(n_components=2).fit(np.concatenate([anchors, emb]))
        pe, pa = pca.transform(emb), pca.transform(anchors)
        sc = ax.scatter(pe[:, 0], pe[:, 1], c=table[f"{t}_true"].to_numpy()[rows], cmap="viridis",
                        vmin=0, vmax=100, s=10, alpha=0.6, label="image embeddings")
        ax.plot(pa[:, 0], pa[:, 1], "-", color="0.4", lw=0.8)
        ax.scatter(pa[:, 0], pa[:, 1], c=a["bins"], cmap="viridis", vmin=0, vmax=100, s=70,
                   marker="*", edgecolors="k", linewidths=0.6, label="level anchors")
        ax.set_title(t)
        ax.set_xlabel("PC 1")
        ax.set_ylabel("PC 2")
        ax.legend(loc="best", fontsize=8)
    fig.colorbar(sc, ax=axes, label="level (0..100)", shrink=0.9)
    fig.suptitle("Fig. 3: HD-CLIP degradation space (PCA per type)"
                 + figure_note([_result(metrics)]))
    return _save(fig, out)


def _fig7_label(result: dict) -> str:
    """A method's legend entry; scores that were never fitted to levels (no MAE: MM-RealSR-style
    degrees) are drawn as 100 x the score and say so."""
    mae = result.get("metrics", {}).get("single", {}).get("mae")
    degree = mae is None or (isinstance(mae, float) and np.isnan(mae))
    return LABELS[result["method"]] + (" (degree x 100)" if degree else "")


def figure7(predictions: Sequence[Path], metrics: Sequence[Path], out: Path) -> Path:
    """Fig. 7: predicted vs true level per type, for HD-CLIP and the MM-RealSR-style regressor."""
    results = [_result(m) for m in metrics]
    tables = [pd.read_csv(p) for p in predictions]
    types = [c.removesuffix("_true") for c in tables[0].columns if c.endswith("_true")]
    fig, axes = plt.subplots(1, len(types), figsize=(4 * len(types), 4), sharey=True,
                             layout="constrained")
    markers = ["o", "^", "s", "D"]
    for k, (t, ax) in enumerate(zip(types, np.atleast_1d(axes))):
        missing = []
        for i, (r, table) in enumerate(zip(results, tables)):
            single = table[table["types"] == t].sort_values(f"{t}_true")
            if single[f"{t}_pred"].isna().all():  # a type the method does not model
                missing.append(LABELS[r["method"]])
                continue
            ax.scatter(single[f"{t}_true"], single[f"{t}_pred"], s=8, alpha=0.5,
                       marker=markers[i % 4], label=_fig7_label(r))
        if missing:
            ax.text(0.97, 0.03, "not modelled: " + ", ".join(missing), ha="right",
                    va="bottom", fontsize=8, transform=ax.transAxes)
        ax.plot([0, 100], [0, 100], "k--", lw=0.8, label="ideal")
        ax.set(title=t, xlabel="true level", xlim=(0, 100), ylim=(-2, 102))
        if k == 0:
            ax.set_ylabel("predicted level")
        ax.legend(loc="upper left", fontsize=8)
    fig.suptitle("Fig. 7: predicted vs true degradation level" + figure_note(results))
    return _save(fig, out)


def figure_transfer(predictions: Sequence[Path], metrics: Sequence[Path], out: Path) -> Path:
    """Beyond the paper: per-photo level curves of the transfer set (``zephir evaluate
    --transfer``). One row per model, one column per type; in each panel one line per photo,
    predicted against true level in order of the true level, with that photo's SROCC (a set of
    more than :data:`NAMED_PHOTOS` photos names its worst ones and greys the others)."""
    results = [_result(m) for m in metrics]
    tables = [pd.read_csv(p, dtype={"source": str}) for p in predictions]  # "0801" stays
    types = [c.removesuffix("_true") for c in tables[0].columns if c.endswith("_true")]
    fig, axes = plt.subplots(len(tables), len(types), figsize=(3.6 * len(types),
                                                               3.4 * len(tables)),
                             sharex=True, sharey=True, squeeze=False, layout="constrained")
    for i, (r, table) in enumerate(zip(results, tables)):
        per_photo = r["metrics"].get("per_photo", {})
        for k, t in enumerate(types):
            ax = axes[i, k]
            single = table[table["types"] == t]
            modelled = not single[f"{t}_pred"].isna().all()
            if not modelled:
                ax.text(0.5, 0.5, "not modelled", ha="center", va="center",
                        transform=ax.transAxes)
            rhos = per_photo.get(t, {})
            named = _named_photos(rhos)
            for photo, part in single.groupby("source", sort=True) if modelled else ():
                part = part.sort_values(f"{t}_true")
                if photo in named:
                    ax.plot(part[f"{t}_true"], part[f"{t}_pred"], marker=".", ms=3, lw=1,
                            label=f"{photo} ({rhos.get(photo, float('nan')):.2f})")
                else:  # a large set: the others as thin grey lines
                    ax.plot(part[f"{t}_true"], part[f"{t}_pred"], color="0.7", lw=0.5)
            ax.plot([0, 100], [0, 100], "k--", lw=0.8)
            ax.set(xlim=(0, 100), ylim=(-2, 102))
            if i == 0:
                ax.set_title(t)
            if i == len(tables) - 1:
                ax.set_xlabel("true level")
            if k == 0:
                ax.set_ylabel(f"{LABELS[r['method']]}\npredicted level")
            if modelled and len(single):
                more = len(rhos) - len(named)
                ax.legend(loc="upper left", fontsize=6, title_fontsize=6,
                          title="photo (SROCC)" + (f"; {more} more in grey" if more > 0 else ""))
    fig.suptitle("Transfer evaluation: per-photo level curves (second implementation of the "
                 "operators)" + figure_note(results))
    return _save(fig, out)


#: Photos the transfer figure names per panel; a larger set shows its worst ones by name.
NAMED_PHOTOS = 8


def _named_photos(rhos: dict) -> set:
    """All photos of a small set; of a larger one the :data:`NAMED_PHOTOS` with the lowest
    SROCC (NaN first), which the figure is there to show."""
    if len(rhos) <= NAMED_PHOTOS:
        return set(rhos)
    order = sorted(rhos, key=lambda p: (not np.isnan(rhos[p]), rhos[p]))
    return set(order[:NAMED_PHOTOS])


def _log_spectrum(img: np.ndarray) -> np.ndarray:
    gray = img @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return np.log1p(np.abs(np.fft.fftshift(np.fft.fft2(gray - gray.mean()))))


def figure8(sources: Path, out: Path, *, image: str | None = None, level: float = 80.0,
            size: int = 256, seed: int = 0) -> Path:
    """Fig. 8: log-magnitude spectra of a clean crop and of each degradation at ``level``."""
    files = zdata.image_list(sources)
    path = next((f for f in files if f.stem == image), None) if image else files[0]
    if path is None:
        raise ValueError(f"{sources}: no image named {image!r}")
    px = zio.to_float(zio.load_image(path).pixels)
    h, w = px.shape[:2]
    s = min(size, h, w)
    clean = px[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    panels = [("clean", clean)]
    for t in dlevels.LABEL_ORDER:
        value, _ = dlevels.realizable(t, level)
        img = ops.apply(clean, {t: value}, np.random.default_rng(seed))
        panels.append((f"{t}, {dlevels.get(t).parameter} {value:g}", img))
    spectra = [_log_spectrum(p) for _, p in panels]
    vmax = max(float(sp.max()) for sp in spectra)
    fig, axes = plt.subplots(2, len(panels), figsize=(3.2 * len(panels), 6.6))
    for i, ((name, img), sp) in enumerate(zip(panels, spectra)):
        axes[0, i].imshow(img)
        axes[0, i].set_title(name, fontsize=9)
        im = axes[1, i].imshow(sp, cmap="magma", vmin=0, vmax=vmax)
        axes[1, i].set_xlabel("horizontal frequency")
        axes[1, i].set_ylabel("vertical frequency")
        axes[0, i].axis("off")
        axes[1, i].set_xticks([])
        axes[1, i].set_yticks([])
    fig.colorbar(im, ax=axes[1], label="log(1 + |F|)", shrink=0.8)
    fig.suptitle(f"Fig. 8: log-magnitude spectra, {path.name}, level {level:g}")
    return _save(fig, out)


def _describe(params: dict) -> str:
    return "\n".join(f"{t} {dlevels.get(t).parameter}={v:.3g}" for t, v in params.items()) or "-"


def figure9(predictions: Path, metrics: Path, manifest: Path, sources: Path, out: Path, *,
            per_type: int = 1, mixtures: int = 2, threshold: float = 0.5, seed: int = 0) -> Path:
    """Fig. 9: the inverse check. Degradations predicted from an LQ image (the types whose
    confidence passes ``threshold``, at their predicted levels) are re-applied to its clean
    crop and shown beside the real LQ; captions give the true and predicted parameters."""
    table = pd.read_csv(predictions)
    rows = {r["path"]: r for r in read_manifest(manifest)}
    by_name = {p.name: p for p in zdata.image_list(sources)}
    types = [c.removesuffix("_true") for c in table.columns if c.endswith("_true")]
    picks = []
    for t in types:  # a strong sample of each type
        single = table[table["types"] == t]
        picks += list(single.sort_values(f"{t}_true").index[-per_type:])
    picks += list(table[table["types"].str.contains(r"\+")].index[:mixtures])
    fig, axes = plt.subplots(len(picks), 3, figsize=(9, 3.6 * len(picks)), squeeze=False,
                             layout="constrained")
    r = np.random.default_rng(seed)
    for row_axes, i in zip(axes, picks):
        rec = table.loc[i]
        m = rows[rec["path"]]
        clean = clean_crop(zio.to_float(zio.load_image(by_name[m["source"]]).pixels), m)
        lq = zio.to_float(zio.load_image(Path(manifest).parent / rec["path"]).pixels)
        true = {t: float(m[f"{t}_value"]) for t in types if m[f"{t}_value"]}
        chosen = [t for t in types if rec[f"{t}_score"] >= threshold] or [rec["pred_type"]]
        pred = {t: dlevels.realizable(t, float(np.clip(rec[f"{t}_pred"], 0, 100)))[0]
                for t in chosen}
        redo = ops.apply(clean, pred, r)
        for ax, img, title in zip(row_axes, (clean, lq, redo),
                                  ("clean crop", f"real LQ, true:\n{_describe(true)}",
                                   f"re-degraded, predicted:\n{_describe(pred)}")):
            ax.imshow(img)
            ax.set_title(title, fontsize=8)
            ax.axis("off")
    fig.suptitle("Fig. 9: predicted degradations re-applied to the clean image"
                 + figure_note([_result(metrics)]), fontsize=10)
    return _save(fig, out)


def figure10(arrays: Sequence[Path], metrics: Sequence[Path], out: Path, *, kind: str = "blur"
             ) -> Path:
    """Fig. 10: cosine similarity among the level anchors of one type, loss ablations A-D."""
    results = [_result(m) for m in metrics]
    order = sorted(range(len(results)), key=lambda i: losses_of(results[i]))
    sims, bins = [], None
    for i in order:
        a = _arrays(arrays[i])
        anchors = a["anchors"][[str(t) for t in a["types"]].index(kind)]
        sims.append(anchors @ anchors.T)
        bins = a["bins"]
    low = min(float(sim.min()) for sim in sims)  # one colour scale, so panels compare
    fig, axes = plt.subplots(1, len(order), figsize=(4.2 * len(order), 4), squeeze=False,
                             sharey=True, layout="constrained")
    for n, (ax, i, sim) in enumerate(zip(axes[0], order, sims)):
        im = ax.imshow(sim, cmap="viridis", vmin=low, vmax=1, origin="lower",
                       extent=[bins[0], bins[-1], bins[0], bins[-1]])
        ax.set(title=f"({losses_of(results[i])})", xlabel="level")
        if n == 0:
            ax.set_ylabel("level")
    fig.colorbar(im, ax=axes[0], label="cosine similarity", shrink=0.85)
    fig.suptitle(f"Fig. 10: similarity of the {kind} level anchors, loss ablations"
                 + figure_note(results))
    return _save(fig, out)


#: Fig. 1's prompts, "<type> with <value>" as the paper's introduction writes them ("blur with
#: sigma 2.0"); ``{v}`` is the native value the operator applies at the level.
FIGURE1_PROMPTS = {
    "blur": "blur with sigma {v:.1f}",
    "noise": "noise with sigma {v:.0f}",
    "jpeg": "JPEG with quality {v:.0f}",
    "downsample": "downsample with scale {v:.1f}",
}


def figure1_matrices(model, kind: str) -> dict:
    """Fig. 1's two J x J cosine-similarity matrices for degradation type ``kind`` of a trained
    HD-CLIP ``model``: its frozen CLIP text tower on the prompts at the bin centres, and its
    composition ordinal anchors (eq. 2-3, :meth:`zephir.hdclip.model.HDCLIP.anchors`).
    Returns the levels, the prompts and both matrices (numpy)."""
    import torch

    types = list(model.cfg.types)
    if kind not in types:
        raise ValueError(f"figure 1: type {kind!r} is not one of the model's ({', '.join(types)})")
    if kind not in FIGURE1_PROMPTS:
        raise ValueError(f"figure 1: no prompt for type {kind!r} (FIGURE1_PROMPTS has "
                         f"{', '.join(FIGURE1_PROMPTS)})")
    levels = [float(b) for b in model.bins.tolist()]
    prompts = [FIGURE1_PROMPTS[kind].format(v=dlevels.realizable(kind, lv)[0]) for lv in levels]
    with torch.no_grad():
        text = model.encode_text(prompts).double()
        anchors = model.anchors()[types.index(kind)].double()
    return {"levels": np.array(levels), "prompts": prompts,
            "clip": (text @ text.T).cpu().numpy(), "anchors": (anchors @ anchors.T).cpu().numpy()}


def figure1(checkpoint: Path, out: Path, *, kind: str = "blur") -> Path:
    """Fig. 1: CLIP's text tower is blind to numbers. Cosine similarity between the CLIP text
    embeddings of "<type> with <value>" prompts across levels (left), beside the same matrix
    for the trained HD-CLIP's composition ordinal anchors of that type (right, eq. 2-3)."""
    from zephir.checkpoints import load_pretrained

    model, ckpt = load_pretrained(checkpoint)
    if not hasattr(model, "anchors"):
        raise ValueError(f"{checkpoint}: figure 1 needs an HD-CLIP checkpoint (method "
                         f"{ckpt.get('method')!r} has no composition anchors)")
    m = figure1_matrices(model, kind)
    note = figure_note([{"hdclip": {"arch": model.cfg.arch,
                                    "random_init": model.cfg.random_init}}])
    low = min(float(m["clip"].min()), float(m["anchors"].min()))
    lv = m["levels"]
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.2), sharey=True, layout="constrained")
    first, last = m["prompts"][0], m["prompts"][-1]
    titles = (f"CLIP text: \"{first}\" ... \"{last}\"", "HD-CLIP composition anchors (eq. 2)")
    for ax, key, title in zip(axes, ("clip", "anchors"), titles):
        im = ax.imshow(m[key], cmap="viridis", vmin=low, vmax=1, origin="lower",
                       extent=[lv[0], lv[-1], lv[0], lv[-1]])
        ax.set(title=title, xlabel=f"{kind} level")
        ax.title.set_fontsize(8)
    axes[0].set_ylabel(f"{kind} level")
    fig.colorbar(im, ax=axes, label="cosine similarity", shrink=0.85)
    fig.suptitle("Fig. 1: similarity across levels, CLIP prompts vs HD-CLIP anchors" + note)
    return _save(fig, out)


# ------------------------------------------- restoration: figures 6, 11, 21, comparisons

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


def _restored_note(dones: Sequence[dict]) -> str:
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
    dones = [_done(p) for p in restored]
    rows_in = blind_manifest(blind)[:images]
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
    return _grid(rows, titles, cols, "Fig. 6: restorations" + _restored_note(dones), out)


def figure11(restored: Sequence[Path], blind: Path, out: Path, *, crop: int = 96) -> Path:
    """Fig. 11: CFPG over the w_orth x w_par sweep, crops of the first image of the set, one
    row per w_orth and one column per w_par."""
    dones = [_done(p) for p in restored]
    stem = Path(blind_manifest(blind)[0]["lq"]).stem
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
                 f"Fig. 11: CFPG weights on {stem}" + _restored_note(dones), out)


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
    lq = Path(lq)
    with lq.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or "hq" not in rows[0]:
        return {}
    return {Path(r["lq"]).stem: lq.parent / r["hq"] for r in rows}


def _comparison_row(restored: Sequence[Path], stem: str, lq_path: Path, hq: Path | None,
                    crop: int) -> list[np.ndarray]:
    outs = [zio.load_image(Path(p).parent / f"{stem}.png").pixels for p in restored]
    lq = _upscale_nearest(zio.load_image(lq_path).pixels, outs[0].shape[:2])
    y, x = disagreement_crop(outs, crop)
    s = min(crop, *outs[0].shape[:2])
    panels = [lq, *outs] + ([zio.load_image(hq).pixels] if hq is not None else [])
    return [p[y:y + s, x:x + s] for p in panels]


def _restored_stems(restored: Sequence[Path], lq: Path) -> list[tuple[str, Path]]:
    return [(stem, path) for stem, path in zdata.lq_inputs(lq).items()
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
                 f"{_set_name(lq)}, {backbone}: crops where the runs differ most"
                 + _restored_note(dones),
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
                 "runs differ most" + _restored_note(dones), out)
