"""Figures 3, 7, 8, 9 and 10 of the paper, one function each, drawn from results files.

Each function reads what the evaluation wrote (predictions.csv, arrays.npz) or the source
images, and writes one PNG atomically; restyling a figure never retrains a model. Titles say
when the encoder was trained from random init or is a tiny architecture. Which inputs and
options each figure takes is declared in :mod:`zephir.report.registry`.
"""
from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from zephir import data as zdata  # noqa: E402
from zephir import io as zio  # noqa: E402
from zephir.degrade import levels as dlevels  # noqa: E402
from zephir.degrade import ops  # noqa: E402
from zephir.degrade.synth import clean_crop, read_manifest  # noqa: E402
from zephir.report.captions import figure_note  # noqa: E402
from zephir.report.results import LABELS, losses_of  # noqa: E402


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
