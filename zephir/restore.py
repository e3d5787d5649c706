"""Restoration with HD-CLIP guidance: one image (:func:`restore_image`), or one shard of a set
(:func:`restore_folder`, the workflow's job).

One image, in a few lines (docs/restoration.md)::

    from zephir import checkpoints, io as zio
    from zephir.backbones import load
    from zephir.restore import restore_image

    hd_model, _ = checkpoints.load_pretrained("results/embedded/hdclip")
    backbone = load("tiny")
    out, record = restore_image(zio.load_image("lq.png").pixels, backbone=backbone,
                                hd_model=hd_model, mode="cfpg", bridge="prompt")

The steps: the backbone's own prompts (``compose_prompts``: the user's prompt with the
repository's added and negative prompts); HD-CLIP's embedding of the whole LQ image
(``zephir.hdclip.predict.embed``, crops, never resized); the bridge's HD-CLIP-conditioned pair
(``zephir.bridge``); the backbone in the chosen mode (``baseline``, ``cfg``, ``cfpg``).
``baseline`` needs no HD-CLIP model.

A shard's job is resumable: every output PNG has a sidecar record ``<stem>.json`` written after
it, carrying the settings fingerprint (:func:`fingerprint`); a rerun keeps an image only when
its record's fingerprint equals the current one and the PNG's sha1 equals the recorded one, so
a changed setting redoes the image and a killed run resumes. Files are written atomically: an
interrupted write leaves no partial PNG.
"""
from __future__ import annotations

import csv
import glob
import hashlib
import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from zephir import data
from zephir import io as zio
from zephir import weights as zweights
from zephir.backbones import BACKBONES, CFG_RATIO, MODES, Backbone, canonical, load
from zephir.backbones.base import as_ratio, check_lq
from zephir.backbones.registry import WEIGHT_KEYS
from zephir.bridge import BRIDGES, Bridge, BridgeOptions
from zephir.guidance import W_ORTH, W_PAR

FORMAT_VERSION = 1
"""Part of every fingerprint: bump it when what a restoration writes or computes changes."""


def hdclip_info(hd_model, checkpoint: dict | None = None, path: str | Path | None = None
                ) -> dict:
    """What an output's record says of the HD-CLIP model: its checkpoint (path, method, step),
    its architecture, and ``random_init`` (trained from a random-init CLIP)."""
    if checkpoint is not None:
        random_init = bool(checkpoint.get("random_init", True))
    else:
        random_init = bool(hd_model.cfg.random_init)
    return {"checkpoint": None if path is None else str(path),
            "method": (checkpoint or {}).get("method", "hdclip"),
            "step": (checkpoint or {}).get("step"), "arch": hd_model.cfg.arch,
            "random_init": random_init, "trained": checkpoint is not None}


def restore_image(lq: np.ndarray, *, backbone: Backbone, hd_model=None, mode: str = "cfpg",
                  bridge: str | Bridge = "prompt", w_par: float = W_PAR,
                  w_orth: float = W_ORTH, cfg_ratio: float | Sequence[float] = CFG_RATIO,
                  seed: int = 0, steps: int | None = None, scale: float | None = None,
                  prompt: str = "", negative_prompt: str | None = None,
                  bridge_options: BridgeOptions | dict | None = None,
                  hdclip: dict | None = None) -> tuple[np.ndarray, dict]:
    """Restore one LQ image (RGB uint8) with ``backbone``; the output and its record.

    Args:
        lq: the LQ image, RGB uint8 (H, W, 3).
        backbone: a loaded backbone (zephir.backbones.load).
        hd_model: a trained HD-CLIP (zephir.checkpoints.load_pretrained); not needed by
            ``baseline``.
        mode: ``baseline``, ``cfg`` (HD-CLIP embeddings added with ``cfg_ratio``) or ``cfpg``.
        bridge: ``prompt`` or ``linear`` (zephir.bridge), or a built :class:`Bridge`.
        w_par, w_orth: CFPG's weights (eq. 14). cfg_ratio: the ``cfg`` mode's ratio(s).
        seed, steps, scale: the sampler's seed, steps and CFG scale (default: the backbone's).
        prompt, negative_prompt: the user's prompt (the backbone adds its own words) and a
            negative prompt replacing the backbone's.
        bridge_options: zephir.bridge.BridgeOptions (or a dict of them).
        hdclip: what the record says of the HD-CLIP model (default: :func:`hdclip_info`).

    Returns:
        ``(image, record)``: the upscaled image (RGB uint8) and a JSON-ready dict of what
        produced it (mode, prompts, weights, seed, steps, scale, bridge words, HD-CLIP's
        reading of the degradations, ``random_init`` of backbone and HD-CLIP).
    """
    from zephir.hdclip.predict import describe, embed

    if mode not in MODES:
        raise ValueError(f"mode: expected one of {', '.join(MODES)}, got {mode!r}")
    lq = check_lq(lq)
    positive, negative = backbone.compose_prompts(lq, prompt, negative_prompt)
    steps = int(backbone.defaults.steps if steps is None else steps)
    scale = float(backbone.defaults.scale if scale is None else scale)
    record: dict = {"mode": mode, "seed": int(seed), "steps": steps, "scale": scale,
                    "user_prompt": prompt, "prompt": positive, "negative_prompt": negative,
                    **backbone.record()}
    if mode == "cfpg":
        record.update(w_par=float(w_par), w_orth=float(w_orth))
    if mode == "cfg":
        record["cfg_ratio"] = list(as_ratio(cfg_ratio))
    hd_pair = None
    if mode != "baseline":
        if hd_model is None:
            raise ValueError(f"mode {mode!r} needs an HD-CLIP model (hd_model)")
        if not isinstance(bridge, Bridge):
            bridge = Bridge(bridge, hd_model, backbone, bridge_options)
        device = next(hd_model.parameters()).device
        emb = embed(hd_model, [lq], device, semantic=True)[0]
        hd_pair, bridge_record = bridge.pair(emb, prompt=positive, negative_prompt=negative)
        record.update(hdclip=hdclip or hdclip_info(hd_model),
                      degradation=describe(hd_model, emb), **bridge_record)
    out = backbone.restore(lq, prompt=positive, negative_prompt=negative, hd_pair=hd_pair,
                           mode=mode, w_par=w_par, w_orth=w_orth, cfg_ratio=cfg_ratio,
                           steps=steps, scale=scale, seed=seed)
    record["size"] = {"lq": list(lq.shape[:2]), "output": list(out.shape[:2])}
    return out, record


# --------------------------------------------------------------------------- a shard of a set

def _read_inputs(source: str | Path) -> list[tuple[str, Path]]:
    """``(stem, LQ path)`` of every image of a blind manifest (its ``lq`` column, relative to
    the manifest's folder), an image folder or an index CSV, sorted by stem; two files with
    one stem are a ValueError (outputs are named by it)."""
    source = Path(source)
    files: list[Path]
    header: list[str] = []
    if source.is_file() and source.suffix.lower() == ".csv":
        with source.open(newline="", encoding="utf-8") as fh:
            header = next(csv.reader(fh), [])
    if "lq" in header:
        from zephir.degrade.blind import read_manifest

        files = [source.parent / row["lq"] for row in read_manifest(source)]
    else:
        files = data.image_list(source)
    return sorted(data.by_stem(files).items())


def shard_of(stems: Sequence[str], shard: int, shards: int) -> list[str]:
    """The stems of shard ``shard`` of ``shards``: by sorted name, the i-th goes to shard
    ``i % shards`` (stable as long as the set is)."""
    if shards < 1 or not 0 <= shard < shards:
        raise ValueError(f"shard {shard} of {shards}: need 0 <= shard < shards")
    return [s for i, s in enumerate(sorted(stems)) if i % shards == shard]


def job_settings(*, backbone_name: str, settings: dict | None, weights: dict | None,
                 hdclip_sha1: str | None, mode: str, bridge: str,
                 bridge_options: BridgeOptions, w_par: float, w_orth: float,
                 cfg_ratio: float | Sequence[float], seed: int, steps: int | None,
                 scale: float | None, prompt: str, negative_prompt: str | None) -> dict:
    """Everything a restored image depends on besides its LQ file, as a JSON-ready dict.

    Only what the mode uses is in it: ``baseline`` has no HD-CLIP, bridge or weights of eq. 14;
    ``cfg`` has the bridge and ``cfg_ratio``; ``cfpg`` the bridge, ``w_par`` and ``w_orth``.
    Weights enter by their configured paths (not their bytes), HD-CLIP by its checkpoint's
    sha1.
    """
    name = canonical(backbone_name)
    cls = BACKBONES[name]
    settings = dict(settings or {})
    defaults = cls.resolve_defaults(settings)
    out = {"format": FORMAT_VERSION, "backbone": name, "settings": settings,
           "defaults": defaults.to_dict(),
           "weights": {k: str(zweights.entry(weights, k).path) for k in WEIGHT_KEYS[name]},
           "mode": mode, "seed": int(seed),
           "steps": int(defaults.steps if steps is None else steps),
           "scale": float(defaults.scale if scale is None else scale),
           "prompt": prompt, "negative_prompt": negative_prompt}
    if mode != "baseline":
        out.update(hdclip_sha1=hdclip_sha1, bridge=bridge,
                   bridge_options=bridge_options.to_dict())
    if mode == "cfpg":
        out.update(w_par=float(w_par), w_orth=float(w_orth))
    if mode == "cfg":
        out["cfg_ratio"] = list(as_ratio(cfg_ratio))
    return out


def fingerprint(job: dict, stem: str, lq_sha1: str) -> str:
    """The settings fingerprint of one output: the job's settings, the image's stem and the
    sha1 of its LQ file. An output is reused only under an equal fingerprint."""
    blob = json.dumps({**job, "stem": stem, "lq_sha1": lq_sha1}, sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def _reusable(out_dir: Path, stem: str, fp: str) -> dict | None:
    """The sidecar record of ``stem`` when it carries ``fp`` and its PNG is intact."""
    try:
        record = json.loads((out_dir / f"{stem}.json").read_text())
        if not isinstance(record, dict) or record.get("fingerprint") != fp:
            return None
        if zio.file_sha1(out_dir / f"{stem}.png") != record.get("png_sha1"):
            return None
    except (OSError, ValueError):
        return None
    return record


def _clear_leftovers(out_dir: Path, stem: str) -> None:
    """Temporary files of an interrupted atomic write of ``stem``'s outputs."""
    name = glob.escape(stem)
    for pattern in (f".{name}.png.*.tmp", f".{name}.json.*.tmp"):
        for tmp in out_dir.glob(pattern):
            tmp.unlink(missing_ok=True)


def done_path(out_dir: str | Path, shard: int, shards: int) -> Path:
    """The file a finished shard writes (the workflow's output of the job)."""
    return Path(out_dir) / f"shard-{shard}-of-{shards}.done.json"


def restore_folder(manifest_or_folder: str | Path, out_dir: str | Path, *,
                   backbone_name: str = "tiny", settings: dict | None = None,
                   weights: dict | None = None, hdclip_checkpoint: str | Path | None = None,
                   mode: str = "cfpg", bridge: str = "prompt", w_par: float = W_PAR,
                   w_orth: float = W_ORTH, cfg_ratio: float | Sequence[float] = CFG_RATIO,
                   seed: int = 0, shard: int = 0, shards: int = 1,
                   device: str | torch.device = "cpu", steps: int | None = None,
                   scale: float | None = None, prompt: str = "",
                   negative_prompt: str | None = None,
                   bridge_options: BridgeOptions | dict | None = None,
                   progress: bool = False) -> dict:
    """Restore the images of one shard of a set into ``out_dir``; returns the done record.

    Input: a blind manifest (``zephir blind``; its ``lq`` images), or a folder / index CSV of
    LQ images as they are (``hq: false`` sets such as RealDeg). The shard's images (sorted by
    name, the i-th to shard ``i % shards``) become ``out_dir/<stem>.png`` with a sidecar
    record ``out_dir/<stem>.json``; images whose record matches the current fingerprint are
    kept, the others (re)computed. The backbone and HD-CLIP are loaded once, and only when an
    image needs computing. Every image's seed is ``seed`` (the same noise for every image, as
    the upstream test scripts do with one generator per image).

    Writes ``out_dir/shard-<shard>-of-<shards>.done.json`` last: the job's settings, the
    images (stem, png, resumed or not), the ones refused and why, and ``random_init`` of
    backbone and HD-CLIP.
    """
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {', '.join(MODES)}, got {mode!r}")
    if mode != "baseline":
        if bridge not in BRIDGES:
            raise ValueError(f"bridge: expected one of {', '.join(BRIDGES)}, got {bridge!r}")
        if hdclip_checkpoint is None:
            raise ValueError(f"mode {mode!r} needs an HD-CLIP checkpoint (hdclip_checkpoint)")
        if not Path(hdclip_checkpoint).exists():
            raise FileNotFoundError(f"{hdclip_checkpoint}: no such HD-CLIP checkpoint "
                                    "(train one with `zephir train`)")
    out_dir = Path(out_dir)
    options = (bridge_options if isinstance(bridge_options, BridgeOptions)
               else BridgeOptions.from_dict(bridge_options))
    inputs = dict(_read_inputs(manifest_or_folder))
    mine = shard_of(list(inputs), shard, shards)
    if mode != "baseline":
        from zephir.checkpoints import weights_file

        hd_sha1 = zio.file_sha1(weights_file(hdclip_checkpoint))
    else:
        hd_sha1 = None
    job = job_settings(backbone_name=backbone_name, settings=settings, weights=weights,
                       hdclip_sha1=hd_sha1, mode=mode, bridge=bridge, bridge_options=options,
                       w_par=w_par, w_orth=w_orth, cfg_ratio=cfg_ratio, seed=seed, steps=steps,
                       scale=scale, prompt=prompt, negative_prompt=negative_prompt)
    loaded: dict = {}

    def models() -> dict:
        """Backbone, HD-CLIP and bridge, loaded on first need."""
        if not loaded:
            loaded["backbone"] = load(backbone_name, settings, weights, device)
            loaded["hd"] = loaded["bridge"] = loaded["hdclip"] = None
            if mode != "baseline":
                from zephir.checkpoints import load_pretrained

                hd_model, ckpt = load_pretrained(hdclip_checkpoint, device)
                loaded["hd"] = hd_model
                loaded["hdclip"] = {**hdclip_info(hd_model, ckpt, hdclip_checkpoint),
                                    "sha1": hd_sha1}
                loaded["bridge"] = Bridge(bridge, hd_model, loaded["backbone"], options)
        return loaded

    images, refused, restored = [], {}, 0
    started = time.time()
    for n, stem in enumerate(mine):
        path = inputs[stem]
        _clear_leftovers(out_dir, stem)
        try:
            lq_sha1 = zio.file_sha1(path)
        except OSError as exc:
            refused[stem] = f"{path}: cannot read ({exc.strerror or exc})"
            continue
        fp = fingerprint(job, stem, lq_sha1)
        record = _reusable(out_dir, stem, fp)
        if record is None:
            try:
                lq = zio.load_image(path).pixels
            except zio.ImageError as exc:
                refused[stem] = str(exc)
                continue
            (out_dir / f"{stem}.json").unlink(missing_ok=True)  # never vouches for a new PNG
            m = models()
            out, record = restore_image(
                lq, backbone=m["backbone"], hd_model=m["hd"], mode=mode,
                bridge=m["bridge"] or bridge, w_par=w_par, w_orth=w_orth, cfg_ratio=cfg_ratio,
                seed=seed, steps=steps, scale=scale, prompt=prompt,
                negative_prompt=negative_prompt, hdclip=m["hdclip"])
            png = zio.encode_png(out)
            zio.write_bytes(out_dir / f"{stem}.png", png)
            record = {**record, "stem": stem, "lq": str(path), "lq_sha1": lq_sha1,
                      "png": f"{stem}.png", "png_sha1": hashlib.sha1(png).hexdigest(),
                      "fingerprint": fp, "job": job}
            zio.write_text(out_dir / f"{stem}.json",
                           json.dumps(record, indent=1, sort_keys=True) + "\n")
            restored += 1
            resumed = False
        else:
            resumed = True
        images.append({"stem": stem, "png": f"{stem}.png", "record": f"{stem}.json",
                       "resumed": resumed, "random_init": record.get("random_init"),
                       "hdclip_random_init": (record.get("hdclip") or {}).get("random_init")})
        if progress:
            print(f"restore {mode} shard {shard}/{shards}: {n + 1}/{len(mine)} {stem}"
                  f"{' (kept)' if resumed else ''}", flush=True)
    if mine and not images:
        reasons = "; ".join(f"{k}: {v}" for k, v in refused.items())
        raise ValueError(f"no usable image among {len(mine)}: {reasons}")
    done = {"shard": shard, "shards": shards, "job": job,
            "images": images, "refused": refused, "restored": restored,
            "resumed": len(images) - restored, "seconds": round(time.time() - started, 2),
            "random_init": any(bool(i["random_init"]) for i in images),
            "hdclip_random_init": any(bool(i["hdclip_random_init"]) for i in images)}
    zio.write_text(done_path(out_dir, shard, shards),
                   json.dumps(done, indent=1, sort_keys=True) + "\n")
    return done
