"""Image quality of restored images: the seven metrics of tables 1, 5 and 7, through pyiqa.

PSNR, SSIM, LPIPS, MUSIQ and Q-Align (tables 1 and 5) and NIQE and BRISQUE (table 7) are
computed by ``pyiqa.create_metric``; nothing here reimplements a metric. What this module adds:

- the conventions, fixed once (:data:`METRICS` holds the pyiqa options, :data:`CONVENTIONS`
  says them in words, docs/metrics.md cites the pyiqa source lines). The paper does not state
  them; PSNR and SSIM take the setting of public Real-ISR evaluation scripts,
  ``test_y_channel=True, color_space='ycbcr'`` (**choice**), the other five pyiqa's defaults;
- the weights: every learned metric reads its files from the ``weights:`` config section
  (:mod:`zephir.weights`), checked by :func:`available` before pyiqa is called, so that a
  missing file never reaches pyiqa's downloader (which would wait on the network). Such a
  metric gives NaN for every image, "n/a (weights missing)" in the summary, and one line on
  stderr that names the file and how to get it;
- weights as data: pyiqa reads a ``.pth`` weights file with ``torch.load(weights_only=False)``
  (pyiqa/archs/arch_util.py, ``load_pretrained_network``), which would run any code pickled in
  it; :func:`create` first reads the file with :func:`zephir.safe_load.safe_torch_load` and
  refuses one that holds anything but tensors and plain values;
- Q-Align on transformers 5 (:func:`_qalign_on_transformers5`);
- folder scoring: restored and reference images matched by file stem, read through
  :func:`zephir.io.load_image` (RGB uint8), handed to pyiqa as RGB float tensors in [0, 1].
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from zephir import extras
from zephir import io as zio
from zephir import weights

#: What :func:`summarize` shows for a metric whose weights are missing.
NOT_AVAILABLE = "n/a (weights missing)"

_Y_YCBCR = {"test_y_channel": True, "color_space": "ycbcr"}


@dataclass(frozen=True)
class Metric:
    """One metric: the paper's column label, pyiqa's name and options, its direction and the
    :mod:`zephir.weights` keys it needs (``model_file`` goes to ``pretrained_model_path``)."""

    label: str
    pyiqa: str
    full_reference: bool
    lower_better: bool
    weights: tuple[str, ...] = ()
    model_file: str | None = None
    options: dict = field(default_factory=dict)


#: name -> metric, in the order of the paper's tables.
METRICS: dict[str, Metric] = {
    "psnr": Metric("PSNR", "psnr", True, False, options=_Y_YCBCR),
    "ssim": Metric("SSIM", "ssim", True, False, options=_Y_YCBCR),
    "lpips": Metric("LPIPS", "lpips", True, True, ("lpips_alexnet", "lpips"), "lpips"),
    "musiq": Metric("MUSIQ", "musiq", False, False, ("musiq",), "musiq"),
    "qalign": Metric("Q-Align", "qalign", False, False, ("qalign",)),
    "niqe": Metric("NIQE", "niqe", False, True, ("niqe",), "niqe"),
    "brisque": Metric("BRISQUE", "brisque", False, True, ("brisque",), "brisque"),
}

#: name -> a short caption of how the metric is computed (pyiqa 0.1.16 source).
CONVENTIONS: dict[str, str] = {
    "psnr": "PSNR (dB, higher is better) on Y of YCbCr, ITU-R BT.601 "
            "(Y = (16 + 65.481 R + 128.553 G + 24.966 B) / 255 for RGB in [0, 1], not rounded), "
            "data range 1, mean squared error over the whole image, no border crop.",
    "ssim": "SSIM (higher is better) on Y of YCbCr (BT.601) on the 0-255 scale, rounded to "
            "integers; 11x11 Gaussian window, sigma 1.5, 'valid' filtering, K1 = 0.01, "
            "K2 = 0.03, data range 255, no downsampling, no border crop, float64.",
    "lpips": "LPIPS v0.1 (lower is better), AlexNet trunk, RGB in [0, 1] mapped to [-1, 1], "
             "layer distances averaged over space.",
    "musiq": "MUSIQ trained on KonIQ-10k (about 0-100, higher is better), RGB, the full "
             "image plus copies resized to longer side 224 and 384.",
    "qalign": "Q-Align quality score (1-5, higher is better) of q-future/one-align in fp16, "
              "RGB padded to a square with the CLIP mean colour.",
    "niqe": "NIQE (lower is better) with pyiqa's pristine model (niqe_modelparameters.mat), "
            "on Y of YIQ (0.299 R + 0.587 G + 0.114 B) on the 0-255 scale, rounded; 96x96 "
            "blocks (an image needs at least 96 px a side), no border crop.",
    "brisque": "BRISQUE (lower is better), pyiqa's 'original' SVR (gamma 0.05, rho -153.591), "
               "on Y of YIQ on the 0-255 scale, rounded; 7x7 Gaussian, sigma 7/6.",
}


def _metric(name: str) -> Metric:
    if name not in METRICS:
        raise ValueError(f"unknown metric {name!r}; expected one of {', '.join(METRICS)}")
    return METRICS[name]


def available(name: str, weights_section: dict | None) -> tuple[bool, str]:
    """Whether metric ``name`` can run: its weights files are on disk (checked with a stat,
    before pyiqa is imported). The reason names each missing file and how to get it."""
    metric = _metric(name)
    missing = [w for w in (weights.entry(weights_section, k) for k in metric.weights)
               if not w.present()]
    if missing:
        return False, "; ".join(weights.missing_message(w) for w in missing)
    return True, "weights found" if metric.weights else "no weights needed"


@contextlib.contextmanager
def _offline_loading(torch_hub: Path) -> Iterator[None]:
    """While pyiqa builds a metric: torch.hub reads ``torch_hub`` (torchvision's AlexNet of
    LPIPS lies in ``torch_hub/checkpoints``) and the Hugging Face hub is offline (Q-Align
    loads from the cache without asking the network for a newer revision)."""
    import torch.hub
    from huggingface_hub import constants

    hub_before, offline_before = torch.hub.get_dir(), constants.HF_HUB_OFFLINE
    torch.hub.set_dir(str(torch_hub))
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        torch.hub.set_dir(hub_before)
        constants.HF_HUB_OFFLINE = offline_before


def _qalign_on_transformers5() -> None:
    """Give pyiqa's Q-Align abstractor the ``invert_attention_mask`` transformers 5 removed.

    pyiqa 0.1.16 (and its main branch, 2026-03) calls ``self.invert_attention_mask`` in
    ``MplugOwlVisualAbstractorModel.forward`` (pyiqa/archs/q_align/visual_encoder.py, line
    918), a method of transformers 4's ``ModuleUtilsMixin`` that transformers 5 no longer has,
    so Q-Align fails on its first image. The method it needs turns a (B, S) or (B, S, S) mask of
    ones (attend) and zeros into an additive one: 0 where attended, the dtype's lowest value
    elsewhere, shaped (B, 1, 1, S) or (B, 1, S, S). Added only where the class lacks it.
    """
    import torch
    from pyiqa.archs.q_align import visual_encoder

    cls = visual_encoder.MplugOwlVisualAbstractorModel
    if hasattr(cls, "invert_attention_mask"):
        return

    def invert_attention_mask(self, mask: torch.Tensor) -> torch.Tensor:
        ext = mask[:, None, None, :] if mask.dim() == 2 else mask[:, None, :, :]
        ext = ext.to(self.dtype)
        return (1.0 - ext) * torch.finfo(self.dtype).min

    cls.invert_attention_mask = invert_attention_mask


def _tensors_only(path: Path, name: str, weights_section: dict | None) -> None:
    """Read a ``.pth`` weights file as data before pyiqa unpickles it (see the module doc):
    :class:`zephir.safe_load.CheckpointError`, naming the file, for one that holds code."""
    from zephir.safe_load import safe_torch_load

    source = weights.entry(weights_section, METRICS[name].model_file).source
    safe_torch_load(path, what=f"{METRICS[name].label} weights file",
                    remedy=f"Replace it with the file of the original source: {source}")


def create(name: str, *, device: str, weights_section: dict | None):
    """The pyiqa metric ``name`` with zephir's options and local weights, on ``device``.

    Raises FileNotFoundError (naming the file and how to get it) when a weight is missing, and
    :class:`zephir.safe_load.CheckpointError` when a ``.pth`` file holds more than tensors.
    """
    import torch

    pyiqa = extras.require("pyiqa")
    metric = _metric(name)
    ok, reason = available(name, weights_section)
    if not ok:
        raise FileNotFoundError(reason)
    options = dict(metric.options)
    if metric.model_file is not None:
        path = weights.resolve(weights_section, metric.model_file)
        if path.suffix == ".pth":
            _tensors_only(path, name, weights_section)
        options["pretrained_model_path"] = str(path)
    if name == "qalign":
        _qalign_on_transformers5()
    torch_hub = weights.entry(weights_section, "lpips_alexnet").path.parent.parent
    with _offline_loading(torch_hub):
        return pyiqa.create_metric(metric.pyiqa, device=torch.device(device), **options)


def _by_stem(folder: Path) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for path in zio.list_images(folder):
        if path.stem in files:
            raise ValueError(f"{folder}: two images share the name {path.stem!r} "
                             f"({files[path.stem].name}, {path.name})")
        files[path.stem] = path
    return files


def match_images(restored_dir: str | os.PathLike,
                 reference_dir: str | os.PathLike | None) -> list[tuple[Path, Path | None]]:
    """(restored, reference) pairs matched by file stem, sorted by name; reference is None
    without ``reference_dir``. Every restored image needs its reference and the reverse."""
    restored = _by_stem(Path(restored_dir))
    if reference_dir is None:
        return [(restored[s], None) for s in sorted(restored)]
    reference = _by_stem(Path(reference_dir))
    for extra, folder, other in ((sorted(set(restored) - set(reference)), restored_dir,
                                  reference_dir),
                                 (sorted(set(reference) - set(restored)), reference_dir,
                                  restored_dir)):
        if extra:
            raise ValueError(f"{len(extra)} image(s) of {folder} have no image of the same "
                             f"name in {other}: {', '.join(extra[:5])}")
    return [(restored[s], reference[s]) for s in sorted(restored)]


def _tensor(pixels: np.ndarray, device: str):
    import torch

    return (torch.from_numpy(pixels).permute(2, 0, 1)[None].to(device=device,
                                                                dtype=torch.float32) / 255.0)


def score_folder(restored_dir: str | os.PathLike, reference_dir: str | os.PathLike | None,
                 metrics: Sequence[str], *, device: str = "cpu",
                 weights_section: dict | None = None) -> pd.DataFrame:
    """One row per restored image: ``image`` (file name), then one column per metric.

    Full-reference metrics need ``reference_dir`` (images matched by stem, equal sizes). A
    metric whose weights are missing is NaN in every row, listed with its reason in
    ``df.attrs["unavailable"]`` and reported by one line on stderr.
    """
    names = list(dict.fromkeys(metrics))
    specs = {n: _metric(n) for n in names}
    if reference_dir is None and any(m.full_reference for m in specs.values()):
        fr = [n for n, m in specs.items() if m.full_reference]
        raise ValueError(f"metrics {', '.join(fr)} compare with a reference: give the "
                         "reference folder")
    pairs = match_images(restored_dir, reference_dir)
    unavailable, models = {}, {}
    for name in names:
        ok, reason = available(name, weights_section)
        if ok:
            models[name] = create(name, device=device, weights_section=weights_section)
        else:
            unavailable[name] = reason
            print(f"zephir metrics: {specs[name].label} {NOT_AVAILABLE}: {reason}",
                  file=sys.stderr)
    rows = []
    for restored, reference in pairs:
        x = zio.load_image(restored).pixels
        y = None if reference is None else zio.load_image(reference).pixels
        if y is not None and x.shape != y.shape:
            raise ValueError(f"size mismatch: {restored} is {x.shape[1]}x{x.shape[0]}, "
                             f"{reference} is {y.shape[1]}x{y.shape[0]}")
        xt = _tensor(x, device) if models else None
        yt = _tensor(y, device) if models and y is not None else None
        row = {"image": restored.name}
        for name in names:
            if name in unavailable:
                row[name] = math.nan
            elif specs[name].full_reference:
                row[name] = float(models[name](xt, yt).flatten()[0])
            else:
                row[name] = float(models[name](xt).flatten()[0])
        rows.append(row)
    df = pd.DataFrame(rows, columns=["image", *names])
    df.attrs["unavailable"] = unavailable
    return df


def summarize(df: pd.DataFrame) -> dict:
    """Mean of each metric column; "n/a (weights missing)" for a metric without weights.

    A NaN score of an available metric is kept (the mean is NaN), never skipped."""
    unavailable = df.attrs.get("unavailable", {})
    return {name: NOT_AVAILABLE if name in unavailable else float(df[name].mean(skipna=False))
            for name in df.columns if name != "image"}


def write_scores(df: pd.DataFrame, out_csv: str | os.PathLike, *,
                 meta: dict) -> tuple[Path, Path]:
    """Write the per-image table (CSV) and ``<stem>.json`` beside it (means, number of images,
    conventions, unavailable metrics and their reasons, ``meta``), each atomically."""
    out_csv = Path(out_csv)
    names = [c for c in df.columns if c != "image"]
    means = {k: (None if isinstance(v, float) and math.isnan(v) else v)
             for k, v in summarize(df).items()}
    summary = {"n_images": len(df), "means": means,
               "labels": {n: METRICS[n].label for n in names},
               "lower_better": {n: METRICS[n].lower_better for n in names},
               "conventions": {n: CONVENTIONS[n] for n in names},
               "unavailable": df.attrs.get("unavailable", {}), "meta": meta}
    out_json = out_csv.with_suffix(".json")
    zio.write_text(out_csv, df.to_csv(index=False, na_rep="NaN"))
    zio.write_text(out_json, json.dumps(summary, indent=2, sort_keys=False) + "\n")
    return out_csv, out_json
