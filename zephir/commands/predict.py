"""``zephir predict``: a trained HD-CLIP's (or baseline's) reading of images, type and level."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from zephir.commands import options


def register(sub) -> None:
    pr = sub.add_parser("predict", help="estimate degradation types and levels of images",
                        description="Per image: the most confident type and, per type, the "
                        "confidence, the 0..100 level and the native value (blur sigma, noise "
                        "sigma on 0..255, JPEG quality, downsample scale).")
    pr.add_argument("images", nargs="+", type=Path, metavar="IMAGE", help="image files")
    pr.add_argument("--checkpoint", required=True, type=Path,
                    help="folder of a trained HD-CLIP or baseline (model.safetensors, "
                    "config.json)")
    options.shared(pr, device="cpu")
    pr.add_argument("--json", action="store_true", help="one JSON object per line and image")
    pr.add_argument("--batch", type=int, default=64, help="crops per forward pass")
    pr.set_defaults(func=predict)


def predict(args: argparse.Namespace) -> int:
    from zephir import checkpoints
    from zephir.estimator_interface import level_scale
    from zephir.hdclip import predict as hdpredict

    model, ckpt = checkpoints.load_pretrained(args.checkpoint, args.device)
    results, errors = hdpredict.predict_files(model, args.images, args.device, args.batch)
    random_init = bool(ckpt.get("random_init", True))
    method = ckpt.get("method", "hdclip")
    if args.json:
        for r in results:
            print(json.dumps({**r, "method": method, "random_init": random_init,
                              "level_scale": level_scale(model)}))
    else:
        notes = []
        if random_init:
            notes.append(f"note: this checkpoint's encoder ({ckpt['hdclip']['arch']}) was "
                         "trained from random init; its numbers are not the paper's.")
        if not level_scale(model):
            notes.append(f"note: {method} models {', '.join(results[0]['degradations'])} "
                         "only; its p and levels are 100 x a degree learned from order alone: "
                         "they rank images, they are not probabilities or 0..100 levels."
                         if results else f"note: {method}'s levels are degrees, not levels.")
        print(hdpredict.format_table(results, model.cfg.types, "\n".join(notes)))
    for line in errors:
        print(f"zephir predict: skipped {line}", file=sys.stderr)
    if errors:
        print(f"zephir predict: {len(errors)} of {len(args.images)} file(s) could not be read",
              file=sys.stderr)
    return 1 if errors else 0
