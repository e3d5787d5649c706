"""Results files as the report reads them, and the names tables, figures and captions give them.

The report's leaf: it imports no other module of :mod:`zephir.report`. Light on purpose (no
pandas, no matplotlib): the registry, the command line and the workflow import it to list and
describe tables and figures.
"""
from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

from zephir.config import LOSS_ABLATIONS

#: How tables and figures name each method of :data:`zephir.estimator_registry.METHODS`.
LABELS = {"hdclip": "HD-CLIP", "clip_zeroshot": "CLIP (zero-shot)",
          "daclip_style": "DA-CLIP-style", "daclip_released": "DA-CLIP (released weights)",
          "mmrealsr_style": "MM-RealSR-style"}


def read_json(paths: Sequence[Path], what: str = "results", made_by: str = "") -> list[dict]:
    """One JSON results file per path, with a clear error naming a missing file."""
    out = []
    for p in map(Path, paths):
        if not p.is_file():
            hint = f" (run `{made_by}`)" if made_by else ""
            raise FileNotFoundError(f"{p}: no {what}{hint}")
        out.append(json.loads(p.read_text()))
    return out


def read_scores(paths: Sequence[Path]) -> list[dict]:
    """The score files of restorations (``<run>.json`` of ``zephir score``: one per set x
    backbone x run, with the metric means, their labels and directions, and what was restored:
    the job's settings and whether the backbone and HD-CLIP were random-init)."""
    return read_json(paths, "scores", "zephir score")


def read_results(paths: Sequence[Path]) -> list[dict]:
    """The ``metrics.json`` of each evaluated model (written by ``zephir evaluate``).

    A transfer evaluation (``samples: transfer``, ``zephir evaluate --transfer``) is not a
    result of its own: it is attached to its model's validation result (same checkpoint) as
    ``result["transfer"]``, which the tables beside table 2 read.
    """
    results = read_json(paths, "evaluation results", "zephir evaluate")
    own = [r for r in results if r.get("samples") != "transfer"]
    by_checkpoint = {_same_file(r["checkpoint"]): r for r in own}
    for path, r in zip(paths, results):
        if r.get("samples") != "transfer":
            continue
        host = by_checkpoint.get(_same_file(r["checkpoint"]))
        if host is None:
            raise ValueError(f"{path}: transfer results of {r['checkpoint']}, whose validation "
                             "metrics.json was not given (given: "
                             f"{', '.join(x['checkpoint'] for x in own) or 'none'})")
        if "transfer" in host:
            raise ValueError(f"{path}: a second transfer result of {r['checkpoint']}")
        host["transfer"] = r
    return own


def _same_file(path: str) -> str:
    """A checkpoint path as one spelling (relative or absolute, ./ or not)."""
    return str(Path(path).resolve())


def _walk(node, key: str, skip: str) -> Iterator:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == key:
                yield v
            elif k != skip:
                yield from _walk(v, key, skip)


def meta(result: dict, key: str) -> list:
    """Every value of ``key`` in a result's metadata, at any depth (the measured numbers under
    ``metrics`` are not metadata). Lets a caption read, say, ``arch`` or ``random_init`` from
    an evaluation's ``metrics.json`` as from a restoration's score file, wherever it sits."""
    return list(_walk(result, key, skip="metrics"))


def random_init(results: Sequence[dict]) -> bool:
    """Whether any result comes from an encoder trained from random init."""
    return any(any(bool(v) for v in meta(r, "random_init")) for r in results)


def tiny_archs(results: Sequence[dict]) -> list[str]:
    """The tiny stand-in architectures (``zephir-tiny-*``) behind any of the results."""
    return sorted({v for r in results for v in meta(r, "arch")
                   if isinstance(v, str) and v.startswith("zephir-tiny")})


def losses_of(result: dict) -> str:
    """The table 3 letter of a model's loss configuration."""
    flags = (bool(result["train"]["use_level"]), bool(result["train"]["use_slerp"]))
    return next(k for k, v in LOSS_ABLATIONS.items() if v == flags)


#: How tables and figures name each restoration run.
MODES = {"baseline": "baseline", "cfg": "CFG", "cfpg": "CFPG"}


def run_label(result: dict) -> str:
    """A score file's run: ``CFPG``, ``CFG``, ``baseline``, or ``CFPG w_orth=0.6 w_par=1`` for
    a run of the sweep."""
    run = result["meta"]["run"]
    if run in MODES:
        return MODES[run]
    w_orth, w_par = run.removeprefix("cfpg-wo").split("-wp")
    return f"CFPG w_orth={w_orth} w_par={w_par}"


def metric_label(result: dict, metric: str) -> str:
    """A metric as a score file labels it (``PSNR`` for ``psnr``)."""
    return result["labels"].get(metric, metric)


def topk_label(k) -> str:
    """Top-k of eq. 6 as tables show it: a number, or ``all``."""
    return "all" if k is None else str(k)
