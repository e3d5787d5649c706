"""``zephir embed``: HD-CLIP's conditioning of a set of LQ images, once per set, for every
backbone and mode of ``zephir restore``."""
from __future__ import annotations

import argparse
from pathlib import Path

from zephir.commands import options


def register(sub) -> None:
    e = sub.add_parser("embed", help="HD-CLIP's conditioning of a set of LQ images",
                       description="Run HD-CLIP once per LQ image (a blind manifest, a folder "
                       "or an index CSV) and write the set's conditioning file (safetensors: "
                       "semantic and degradation embeddings, presences, levels, and HD-CLIP's "
                       "text embeddings of the bridge's texts) that `zephir restore "
                       "--embeddings` reads in every mode and backbone.")
    e.add_argument("--hdclip", required=True, type=Path,
                   help="trained HD-CLIP's folder (model.safetensors, config.json)")
    options.shared(e, lq=True, out="the .safetensors file to write", device="cpu",
                   quiet="progress lines")
    e.set_defaults(func=embed)


def embed(args: argparse.Namespace) -> int:
    from zephir.embed import embed_set

    emb = embed_set(args.hdclip, args.lq, args.out, device=args.device,
                    progress=not args.quiet)
    label = " (random-init HD-CLIP)" if emb.hdclip.get("random_init") else ""
    print(f"embedded {len(emb.images)} image(s) with {args.hdclip}{label} -> {args.out}")
    return 0
