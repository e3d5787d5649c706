"""Restoration with HD-CLIP guidance: one image (:func:`restore_image`), or one shard of a set
(:func:`restore_folder`, the workflow's job).

HD-CLIP does not run here: ``zephir embed`` (zephir.embed) writes each set's conditioning file
once, in the main environment, and every restore job reads it, inside its backbone's own
environment (SeeSR and PASD pin old torch and diffusers releases; workflow/envs/). What runs
here is the bridge's map (zephir.bridge), the guidance (zephir.guidance) and the adapter.

One image, in a few lines (docs/restoration.md)::

    from zephir import conditioning, io as zio
    from zephir.backbones import load
    from zephir.bridge import Bridge
    from zephir.restore import restore_image

    emb = conditioning.read("results/embedded/restore/held_out/hdclip-embeddings.safetensors")
    backbone = load("tiny")
    bridge = Bridge("embedding", backbone, emb.text_embeddings)
    out, record = restore_image(zio.load_image("lq.png").pixels, backbone=backbone,
                                conditioning=emb.conditioning("lq"), bridge=bridge,
                                mode="cfpg")

The steps: the backbone's own prompts (``compose_prompts``: the user's prompt with the
repository's added and negative prompts); the bridge's HD-CLIP-conditioned pair from the
image's conditioning; the backbone in the chosen mode (``baseline``, ``cfg``, ``cfpg``).
``baseline`` needs no HD-CLIP.

Seeding, as the upstream test scripts seed (each backbone's ``seed_scope``): ``"folder"``
(SeeSR, PASD: one generator made from the job's seed serves the shard's images in sorted
order) or ``"image"`` (FaithDiff and the diffusers pipelines: the generator is re-made from the
seed for every image). The start noise and the VAE's posterior sample both come from it
(zephir.backbones.base), so baseline, CFG and CFPG of one image start from the same noise.

A shard's job is resumable: every output PNG has a sidecar record ``<stem>.json`` written after
it, carrying the settings fingerprint (:func:`fingerprint`); a rerun keeps an image only when
its record's fingerprint equals the current one and the PNG's sha1 equals the recorded one, so
a changed setting redoes the image and a killed run resumes. With a folder-scope generator the
fingerprint also holds the generator's state before the image and the record its state after,
so a resumed shard draws exactly the noise of an uninterrupted one. Files are written
atomically: an interrupted write leaves no partial PNG.
"""
from __future__ import annotations

import base64
import glob
import hashlib
import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from zephir import conditioning as zcond
from zephir import datasets
from zephir import io as zio
from zephir import weights as zweights
from zephir.backbones import BACKBONES, CFG_RATIO, MODES, Backbone, canonical, load
from zephir.backbones.base import as_ratio, check_lq
from zephir.backbones.registry import WEIGHT_KEYS
from zephir.bridge import BRIDGES, Bridge, BridgeOptions
from zephir.guidance import W_ORTH, W_PAR
from zephir.guidance.wrap import CONTROLNET_MODES

FORMAT_VERSION = 2
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


def generator_state(generator: torch.Generator) -> str:
    """A CPU generator's state as text (base64), for a record."""
    return base64.b64encode(generator.get_state().numpy().tobytes()).decode("ascii")


def set_generator_state(generator: torch.Generator, state: str) -> torch.Generator:
    """``generator`` set to a state written by :func:`generator_state`."""
    raw = np.frombuffer(base64.b64decode(state), dtype=np.uint8).copy()
    generator.set_state(torch.from_numpy(raw))
    return generator


def restore_image(lq: np.ndarray, *, backbone: Backbone,
                  conditioning: zcond.Conditioning | None = None, bridge: Bridge | None = None,
                  mode: str = "cfpg", w_par: float = W_PAR, w_orth: float = W_ORTH,
                  cfg_ratio: float | Sequence[float] = CFG_RATIO, seed: int = 0,
                  generator: torch.Generator | None = None, steps: int | None = None,
                  scale: float | None = None, prompt: str = "",
                  negative_prompt: str | None = None, hdclip: dict | None = None,
                  controlnet: str = "rerun") -> tuple[np.ndarray, dict]:
    """Restore one LQ image (RGB uint8) with ``backbone``; the output and its record.

    Args:
        lq: the LQ image, RGB uint8 (H, W, 3).
        backbone: a loaded backbone (zephir.backbones.load).
        conditioning: HD-CLIP's conditioning of this image (zephir.conditioning); not needed
            by ``baseline``.
        bridge: the :class:`~zephir.bridge.Bridge` into the backbone's text space (``cfg``,
            ``cfpg``).
        mode: ``baseline``, ``cfg`` (HD-CLIP embeddings added with ``cfg_ratio``) or ``cfpg``.
        w_par, w_orth: CFPG's weights (eq. 14). cfg_ratio: the ``cfg`` mode's ratio(s).
        seed, generator: the sampler's noise: ``generator`` (a CPU torch.Generator, advanced by
            the call) or, when None, one made from ``seed``.
        steps, scale: sampling steps and CFG scale (default: the backbone's).
        prompt, negative_prompt: the user's prompt (the backbone adds its own words) and a
            negative prompt replacing the backbone's.
        hdclip: what the record says of the HD-CLIP model (the conditioning file's).
        controlnet: ``cfpg`` on ControlNet backbones: ``rerun`` (default: the ControlNet runs
            on the HD pair too) or ``reuse`` (the HD pass reuses the text pass's residuals).

    Returns:
        ``(image, record)``: the upscaled image (RGB uint8) and a JSON-ready dict of what
        produced it (mode, prompts, weights, seed, steps, scale, what the bridge used and the
        norms it added, HD-CLIP's reading of the degradations, ``random_init`` of backbone and
        HD-CLIP).
    """
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {', '.join(MODES)}, got {mode!r}")
    lq = check_lq(lq)
    positive, negative = backbone.compose_prompts(lq, prompt, negative_prompt)
    steps = int(backbone.defaults.steps if steps is None else steps)
    scale = float(backbone.defaults.scale if scale is None else scale)
    if generator is None:
        generator = torch.Generator(device="cpu").manual_seed(int(seed))
    record: dict = {"mode": mode, "seed": int(seed), "steps": steps, "scale": scale,
                    "user_prompt": prompt, "prompt": positive, "negative_prompt": negative,
                    "noise_state_sha1": hashlib.sha1(generator.get_state().numpy().tobytes())
                    .hexdigest(), **backbone.record()}
    if mode == "cfpg":
        record.update(w_par=float(w_par), w_orth=float(w_orth), controlnet=controlnet)
    if mode == "cfg":
        record["cfg_ratio"] = list(as_ratio(cfg_ratio))
    hd_pair = None
    if mode != "baseline":
        if conditioning is None or bridge is None:
            raise ValueError(f"mode {mode!r} needs the image's HD-CLIP conditioning and a "
                             "bridge (conditioning=, bridge=)")
        hd_pair, bridge_record = bridge.pair(conditioning, prompt=positive,
                                             negative_prompt=negative)
        record.update(hdclip=hdclip or {}, degradation=conditioning.describe(),
                      **bridge_record)
    out = backbone.restore(lq, prompt=positive, negative_prompt=negative, hd_pair=hd_pair,
                           mode=mode, w_par=w_par, w_orth=w_orth, cfg_ratio=cfg_ratio,
                           steps=steps, scale=scale, generator=generator,
                           controlnet=controlnet)
    record["size"] = {"lq": list(lq.shape[:2]), "output": list(out.shape[:2])}
    return out, record


# --------------------------------------------------------------------------- a shard of a set

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
                 scale: float | None, prompt: str, negative_prompt: str | None,
                 controlnet: str = "rerun") -> dict:
    """Everything a restored image depends on besides its LQ file (and, in modes with HD-CLIP,
    its conditioning), as a JSON-ready dict.

    Only what the mode uses is in it: ``baseline`` has no HD-CLIP, bridge or weights of eq. 14;
    ``cfg`` has the bridge and ``cfg_ratio``; ``cfpg`` the bridge, ``w_par`` and ``w_orth``.
    Weights enter by their configured paths (not their bytes), HD-CLIP by its checkpoint's
    sha1 (as the conditioning file records it).
    """
    name = canonical(backbone_name)
    cls = BACKBONES[name]
    settings = dict(settings or {})
    defaults = cls.resolve_defaults(settings)
    out = {"format": FORMAT_VERSION, "backbone": name, "settings": settings,
           "defaults": defaults.to_dict(), "seed_scope": cls.seed_scope,
           "weights": {k: str(zweights.entry(weights, k).path) for k in WEIGHT_KEYS[name]},
           "mode": mode, "seed": int(seed),
           "steps": int(defaults.steps if steps is None else steps),
           "scale": float(defaults.scale if scale is None else scale),
           "prompt": prompt, "negative_prompt": negative_prompt}
    if mode != "baseline":
        out.update(hdclip_sha1=hdclip_sha1, bridge=bridge,
                   bridge_options=bridge_options.to_dict())
    if mode == "cfpg":
        out.update(w_par=float(w_par), w_orth=float(w_orth), controlnet=controlnet)
    if mode == "cfg":
        out["cfg_ratio"] = list(as_ratio(cfg_ratio))
    return out


def fingerprint(job: dict, stem: str, lq_sha1: str, *, conditioning_sha1: str | None = None,
                noise_state: str | None = None) -> str:
    """The settings fingerprint of one output: the job's settings, the image's stem, the sha1
    of its LQ file, of its HD-CLIP conditioning (modes with HD-CLIP) and of the generator's
    state before it (folder-scope seeding). An output is reused only under an equal one."""
    extra = {"conditioning_sha1": conditioning_sha1,
             "noise_state_sha1": None if noise_state is None else
             hashlib.sha1(noise_state.encode()).hexdigest()}
    blob = json.dumps({**job, "stem": stem, "lq_sha1": lq_sha1, **extra}, sort_keys=True)
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
                   weights: dict | None = None, embeddings: str | Path | None = None,
                   mode: str = "cfpg", bridge: str = "embedding", w_par: float = W_PAR,
                   w_orth: float = W_ORTH, cfg_ratio: float | Sequence[float] = CFG_RATIO,
                   seed: int = 0, shard: int = 0, shards: int = 1,
                   device: str | torch.device = "cpu", steps: int | None = None,
                   scale: float | None = None, prompt: str = "",
                   negative_prompt: str | None = None,
                   bridge_options: BridgeOptions | dict | None = None,
                   controlnet: str = "rerun", progress: bool = False) -> dict:
    """Restore the images of one shard of a set into ``out_dir``; returns the done record.

    Input: a blind manifest (``zephir blind``; its ``lq`` images), or a folder / index CSV of
    LQ images as they are (``hq: false`` sets such as RealDeg); in ``cfg`` and ``cfpg`` modes
    the set's HD-CLIP conditioning file ``embeddings`` (``zephir embed``), whose images must be
    these LQ files. The shard's images (sorted by name, the i-th to shard ``i % shards``)
    become ``out_dir/<stem>.png`` with a sidecar record ``out_dir/<stem>.json``; images whose
    record matches the current fingerprint are kept, the others (re)computed. The backbone is
    loaded once, and only when an image needs computing. Noise as the module doc says
    (``seed_scope``).

    Writes ``out_dir/shard-<shard>-of-<shards>.done.json`` last: the job's settings, the
    images (stem, png, resumed or not), the ones refused and why, and ``random_init`` of
    backbone and HD-CLIP.
    """
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {', '.join(MODES)}, got {mode!r}")
    if controlnet not in CONTROLNET_MODES:
        raise ValueError(f"controlnet: expected one of {', '.join(CONTROLNET_MODES)}, got "
                         f"{controlnet!r}")
    emb = None
    if mode != "baseline":
        if bridge not in BRIDGES:
            raise ValueError(f"bridge: expected one of {', '.join(BRIDGES)}, got {bridge!r}")
        if embeddings is None:
            raise ValueError(f"mode {mode!r} needs the set's HD-CLIP embeddings (embeddings=; "
                             "written by `zephir embed`)")
        emb = zcond.read(embeddings)
    out_dir = Path(out_dir)
    options = (bridge_options if isinstance(bridge_options, BridgeOptions)
               else BridgeOptions.from_dict(bridge_options))
    inputs = datasets.lq_inputs(manifest_or_folder)
    mine = shard_of(list(inputs), shard, shards)
    job = job_settings(backbone_name=backbone_name, settings=settings, weights=weights,
                       hdclip_sha1=None if emb is None else emb.hdclip.get("sha1"), mode=mode,
                       bridge=bridge, bridge_options=options, w_par=w_par, w_orth=w_orth,
                       cfg_ratio=cfg_ratio, seed=seed, steps=steps, scale=scale, prompt=prompt,
                       negative_prompt=negative_prompt, controlnet=controlnet)
    folder_scope = BACKBONES[canonical(backbone_name)].seed_scope == "folder"
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    loaded: dict = {}

    def models() -> dict:
        """Backbone and bridge, loaded on first need."""
        if not loaded:
            loaded["backbone"] = load(backbone_name, settings, weights, device)
            loaded["bridge"] = (None if emb is None else
                                Bridge(bridge, loaded["backbone"], emb.text_embeddings, options))
        return loaded

    images, refused, restored = [], {}, 0
    started = time.time()
    for n, stem in enumerate(mine):
        path = inputs[stem]
        _clear_leftovers(out_dir, stem)
        try:
            lq_sha1 = zio.file_sha1(path)
            cond = None if emb is None else emb.conditioning(stem, lq_sha1)
        except OSError as exc:
            refused[stem] = f"{path}: cannot read ({exc.strerror or exc})"
            continue
        except (KeyError, ValueError) as exc:
            refused[stem] = str(exc).strip("'\"")
            continue
        if not folder_scope:
            generator.manual_seed(int(seed))
        state = generator_state(generator) if folder_scope else None
        fp = fingerprint(job, stem, lq_sha1, conditioning_sha1=None if cond is None
                         else cond.sha1(), noise_state=state)
        record = _reusable(out_dir, stem, fp)
        if record is not None and folder_scope and "noise_state_after" not in record:
            record = None
        if record is None:
            try:
                lq = zio.load_image(path).pixels
            except zio.ImageError as exc:
                refused[stem] = str(exc)
                continue
            (out_dir / f"{stem}.json").unlink(missing_ok=True)  # never vouches for a new PNG
            m = models()
            out, record = restore_image(
                lq, backbone=m["backbone"], conditioning=cond, bridge=m["bridge"], mode=mode,
                w_par=w_par, w_orth=w_orth, cfg_ratio=cfg_ratio, seed=seed,
                generator=generator, steps=steps, scale=scale, prompt=prompt,
                negative_prompt=negative_prompt, hdclip=None if emb is None else emb.hdclip,
                controlnet=controlnet)
            png = zio.encode_png(out)
            zio.write_bytes(out_dir / f"{stem}.png", png)
            record = {**record, "stem": stem, "lq": str(path), "lq_sha1": lq_sha1,
                      "png": f"{stem}.png", "png_sha1": hashlib.sha1(png).hexdigest(),
                      "fingerprint": fp, "job": job}
            if folder_scope:
                record["noise_state_after"] = generator_state(generator)
            zio.write_text(out_dir / f"{stem}.json",
                           json.dumps(record, indent=1, sort_keys=True) + "\n")
            restored += 1
            resumed = False
        else:
            if folder_scope:
                set_generator_state(generator, record["noise_state_after"])
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
