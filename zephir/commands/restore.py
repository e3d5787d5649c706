"""``zephir restore``: one shard of a set of LQ images restored by a diffusion SR backbone in
one mode (baseline, CFG, CFPG; paper, section 3.2).

Runs inside the backbones' own environments too (old torch and diffusers): what it imports is
the restore path only (``tests/test_backbone_envs.py``), never HD-CLIP, open_clip or training.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from zephir import config as zconfig
from zephir.commands import options


def register(sub) -> None:
    r = sub.add_parser("restore", help="restore LQ images with a backbone: baseline, CFG, CFPG",
                       description="Restore one shard of a set of LQ images (a blind manifest, "
                       "a folder or an index CSV) with a diffusion SR backbone, guided by "
                       "HD-CLIP (paper, section 3.2), with the restoration section of "
                       "--config. Writes <stem>.png and a <stem>.json record per image and "
                       "shard-<i>-of-<n>.done.json; a rerun keeps images finished under the "
                       "same settings.")
    options.shared(r, config="config file", lq=True, out="output folder", device="cpu",
                   quiet="progress bar")
    r.add_argument("--backbone", default="tiny", help="tiny, sd-x4-upscaler, faithdiff, ...")
    r.add_argument("--dataset", help="the set's key in datasets: an hq false set (RealDeg) takes "
                   "restoration.realworld.settings over restoration.settings")
    r.add_argument("--mode", default="cfpg", choices=["baseline", "cfg", "cfpg"])
    r.add_argument("--embeddings", type=Path,
                   help="the set's HD-CLIP embeddings, written by `zephir embed` (cfg, cfpg)")
    r.add_argument("--w-orth", type=float, help="override restoration.w_orth (eq. 14)")
    r.add_argument("--w-par", type=float, help="override restoration.w_par (eq. 14)")
    r.add_argument("--shard", type=int, default=0, help="this job's shard (0-based)")
    r.add_argument("--shards", type=int, default=1, help="number of shards of the set")
    r.set_defaults(func=restore)


def restore(args: argparse.Namespace) -> int:
    from zephir import restore as zrestore

    cfg = zconfig.load(args.config)
    r = cfg["restoration"]
    w_orth = r["w_orth"] if args.w_orth is None else args.w_orth
    w_par = r["w_par"] if args.w_par is None else args.w_par
    settings = zconfig.backbone_settings(cfg, args.backbone, args.dataset)
    done = zrestore.restore_folder(
        args.lq, args.out, backbone_name=args.backbone, settings=settings,
        weights=cfg["weights"], embeddings=args.embeddings,
        mode=args.mode, bridge=r["bridge"], bridge_options=r["bridge_options"], w_par=w_par,
        w_orth=w_orth, cfg_ratio=r["cfg_ratio"], seed=r["seed"], steps=r["steps"],
        prompt=r["prompt"], controlnet=r["controlnet"], shard=args.shard, shards=args.shards,
        device=args.device,
        progress=not args.quiet)
    kept = sum(i["resumed"] for i in done["images"])
    print(f"restored {len(done['images']) - kept} image(s), kept {kept} finished under the same "
          f"settings, refused {len(done['refused'])} -> {args.out}")
    for stem, why in done["refused"].items():
        print(f"refused {stem}: {why}", file=sys.stderr)
    return 1 if done["refused"] else 0
