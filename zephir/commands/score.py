"""``zephir score``: image-quality metrics of restored images (pyiqa; docs/metrics.md)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from zephir import config as zconfig
from zephir.commands import options


def register(sub) -> None:
    sc = sub.add_parser("score", help="image-quality metrics of restored images (pyiqa)",
                        description="Score every image of a folder with pyiqa metrics "
                        "(docs/metrics.md), against same-named reference images when given. "
                        "Writes one row per image (CSV) and the means with the metrics' "
                        "conventions (JSON beside it); a metric whose weights are missing is "
                        "n/a, never a made-up number.")
    options.shared(sc, config="config (its weights section)",
                   out="scores CSV (JSON beside it)", device="cpu")
    sc.add_argument("--restored", required=True, type=Path, help="folder of restored images")
    sc.add_argument("--reference", type=Path, help="folder of reference (HQ) images")
    sc.add_argument("--metrics", required=True, nargs="+",
                    help="psnr ssim lpips musiq qalign niqe brisque")
    sc.add_argument("--meta", nargs="*", default=[], metavar="KEY=VALUE",
                    help="recorded in the JSON (dataset, backbone, mode ...)")
    sc.set_defaults(func=score)


def score(args: argparse.Namespace) -> int:
    from zephir.metrics import iqa

    cfg = zconfig.load(args.config)
    meta = dict(kv.split("=", 1) for kv in args.meta)
    records = sorted(Path(args.restored).glob("shard-*.done.json"))
    if records:  # what restored the images: backbone, mode, random-init flags
        done = json.loads(records[0].read_text())
        meta.update(job=done["job"], random_init=done["random_init"],
                    hdclip_random_init=done["hdclip_random_init"])
    table = iqa.score_folder(args.restored, args.reference, args.metrics, device=args.device,
                             weights_section=cfg["weights"])
    csv_path, json_path = iqa.write_scores(table, args.out, meta=meta)
    print(f"scored {len(table)} image(s) -> {csv_path}, {json_path}")
    return 0
