"""HD-CLIP's conditioning of a set of LQ images, computed once and read by every restore job.

Restoration conditions a backbone on what HD-CLIP sees in each LQ image (paper, section 3.2):
its semantic embedding (the positive cue) and its degradation embeddings with their presences
and levels (the negative cue). HD-CLIP runs once per image, in the main environment
(``zephir embed``, :func:`zephir.hdclip.predict.embed`), and writes one file per set; the
restore jobs read it inside the backbone's own environment (SeeSR's torch 2.0.1, PASD's
2.3.1), where neither open_clip nor HD-CLIP's code is needed. The file is data: a
``.safetensors`` file (no pickle), tensors per image stem ``S``

* ``S/semantic`` (d,): the unit semantic embedding;
* ``S/embeddings`` (K, d): the unit per-type degradation embeddings e_k (eq. 4);
* ``S/present`` (K,): presence probabilities; ``S/levels`` (K,): 0..100 levels (eq. 6);

and once per file ``text`` (V, d): HD-CLIP's unit text embeddings of the bridge's texts
(zephir.bridge.hdclip_texts), so that the bridge can fit its map without HD-CLIP. Its string
metadata has one key, ``zephir``: a JSON object (keys sorted) of ``types`` (K names), ``texts``
(V strings), ``hdclip`` (what produced it: checkpoint, sha1, method, step, arch,
``random_init``), ``lq_sha1`` ({stem: sha1 of the LQ file}) and ``format``. One key, because
safetensors writes the metadata map in a per-process random order (a Rust hash map): with one
key the same conditioning gives the same bytes, so DVC and a Slurm run agree with a local one.

This module imports torch, safetensors and the level maps (zephir.degrade.levels, NumPy) only.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from zephir.degrade import levels as dlevels

FORMAT = 2
"""Version of the file's layout (1: one metadata key per field); a file of another version is
refused by name."""
FIELDS = ("semantic", "embeddings", "present", "levels")


def describe_levels(types: Sequence[str], present: torch.Tensor, levels: torch.Tensor) -> dict:
    """{"type", "degradations": {type: {"present", "level", "value"}}} of one image from its
    (K,) presence and levels; a type the estimator does not model (NaN) is left out, and "type"
    is the most confident type, or None when the estimator does not model them all (as the
    evaluation's ``pred_type``). ``value`` is the rounded level in the type's native unit."""
    degs, scores = {}, {}
    for k, t in enumerate(types):
        if math.isnan(float(levels[k])) or math.isnan(float(present[k])):
            continue
        level = round(float(levels[k]), 2)  # the value below is the rounded level's
        degs[t] = {"present": round(float(present[k]), 4), "level": level,
                   "value": round(float(dlevels.denormalize(t, level)), 4)}
        scores[t] = float(present[k])
    typed = len(scores) == len(types)
    return {"type": max(scores, key=scores.get) if typed else None, "degradations": degs}


@dataclass(frozen=True)
class Conditioning:
    """HD-CLIP's view of one LQ image: what the bridge turns into backbone conditioning.

    ``semantic`` (d,) unit semantic embedding; ``embeddings`` (K, d) unit per-type degradation
    embeddings e_k (eq. 4); ``present`` (K,) presence probabilities; ``levels`` (K,) 0..100
    levels (eq. 6); ``types`` the K type names, in that order.
    """

    semantic: torch.Tensor
    embeddings: torch.Tensor
    present: torch.Tensor
    levels: torch.Tensor
    types: tuple[str, ...]

    def __post_init__(self) -> None:
        k, d = len(self.types), self.semantic.shape[-1]
        assert self.semantic.shape == (d,), self.semantic.shape
        assert self.embeddings.shape == (k, d), (self.embeddings.shape, k, d)
        assert self.present.shape == (k,) and self.levels.shape == (k,), (
            self.present.shape, self.levels.shape)

    def describe(self) -> dict:
        """HD-CLIP's reading of the image (:func:`describe_levels`), for records."""
        return describe_levels(self.types, self.present, self.levels)

    def sha1(self) -> str:
        """sha1 of the tensors' float32 bytes: part of a restored image's fingerprint."""
        h = hashlib.sha1()
        for name in FIELDS:
            h.update(getattr(self, name).detach().to(torch.float32).contiguous().numpy()
                     .tobytes())
        h.update(json.dumps(list(self.types)).encode())
        return h.hexdigest()


@dataclass(frozen=True)
class Embeddings:
    """A set's conditioning file, read: per-image :class:`Conditioning`, HD-CLIP's text
    embeddings of ``texts`` (V, d), what produced it (``hdclip``) and each LQ file's sha1."""

    images: dict[str, Conditioning]
    texts: tuple[str, ...]
    text: torch.Tensor
    hdclip: dict
    lq_sha1: dict[str, str]
    path: Path | None = None

    def text_embeddings(self, texts: Sequence[str]) -> torch.Tensor:
        """(N, d) rows of :attr:`text` for ``texts``; a text the file lacks is a KeyError that
        names the file and says to recompute it."""
        index = {t: i for i, t in enumerate(self.texts)}
        missing = [t for t in texts if t not in index]
        if missing:
            raise KeyError(f"{self.path}: no HD-CLIP text embedding of {missing[:3]!r} "
                           f"({len(missing)} missing); recompute it with `zephir embed`")
        return self.text[[index[t] for t in texts]]

    def conditioning(self, stem: str, lq_sha1: str | None = None) -> Conditioning:
        """The conditioning of image ``stem``; when ``lq_sha1`` is given it must equal the
        sha1 the file was computed from (else the file is stale: a ValueError naming both)."""
        if stem not in self.images:
            raise KeyError(f"{self.path}: no HD-CLIP embedding of image {stem!r}; recompute "
                           "it with `zephir embed` over the same LQ images")
        if lq_sha1 is not None and self.lq_sha1.get(stem) != lq_sha1:
            raise ValueError(f"{self.path}: image {stem!r} was embedded from another LQ file "
                             f"(sha1 {self.lq_sha1.get(stem)} vs {lq_sha1} now); recompute it "
                             "with `zephir embed`")
        return self.images[stem]


def write(path: str | Path, images: Mapping[str, Conditioning], *, texts: Sequence[str],
          text: torch.Tensor, hdclip: dict, lq_sha1: Mapping[str, str]) -> Path:
    """Write a set's conditioning file atomically (a temporary file, then renamed)."""
    from safetensors.torch import save_file

    path = Path(path)
    types = {c.types for c in images.values()}
    if len(types) > 1:
        raise ValueError(f"{path}: the images' conditionings disagree on the types: {types}")
    assert text.ndim == 2 and text.shape[0] == len(texts), (text.shape, len(texts))
    tensors = {"text": text.detach().float().contiguous().cpu()}
    for stem, c in images.items():
        for name in FIELDS:
            tensors[f"{stem}/{name}"] = getattr(c, name).detach().float().contiguous().cpu()
    meta = {"zephir": json.dumps({"format": FORMAT, "types": list(next(iter(types), ())),
                                  "texts": list(texts), "hdclip": hdclip,
                                  "lq_sha1": dict(lq_sha1)}, sort_keys=True)}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=meta)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def read(path: str | Path) -> Embeddings:
    """Read a conditioning file written by :func:`write`; anything else is a ValueError that
    names the file and what is wrong (not safetensors, another format, missing tensors)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such HD-CLIP embeddings file (write it with "
                                "`zephir embed --hdclip <checkpoint> --lq <images> --out "
                                f"{path}`)")
    try:
        with safe_open(str(path), framework="pt") as fh:
            header = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
    except Exception as exc:  # noqa: BLE001 (SafetensorError has no stable import path)
        raise ValueError(f"{path}: not a readable safetensors file ({exc})") from None
    try:
        meta = json.loads(header["zephir"])
    except (KeyError, ValueError):
        meta = {"format": header.get("format")}
    if not isinstance(meta, dict) or str(meta.get("format")) != str(FORMAT):
        found = meta.get("format") if isinstance(meta, dict) else None
        raise ValueError(f"{path}: embeddings format {found!r}, this zephir reads {FORMAT}; "
                         "recompute it with `zephir embed`")
    try:
        types, texts = tuple(meta["types"]), tuple(meta["texts"])
        hdclip, lq_sha1 = meta["hdclip"], meta["lq_sha1"]
        images = {stem: Conditioning(*(tensors[f"{stem}/{n}"] for n in FIELDS), types=types)
                  for stem in lq_sha1}
        text = tensors["text"]
    except (KeyError, ValueError, AssertionError) as exc:
        raise ValueError(f"{path}: incomplete HD-CLIP embeddings file ({exc!r}); recompute it "
                         "with `zephir embed`") from None
    return Embeddings(images=images, texts=texts, text=text, hdclip=hdclip, lq_sha1=lq_sha1,
                      path=path)
