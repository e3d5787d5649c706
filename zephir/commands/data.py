"""``zephir data check | embedded | index``: the datasets a config names."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from zephir import config as zconfig
from zephir.commands import options


def register(sub) -> None:
    d = sub.add_parser("data", help="datasets: check the paper's, write the embedded ones",
                       description="Dataset utilities.")
    dsub = d.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    c = dsub.add_parser("check", help="report, per dataset, found / missing and file counts",
                        description="Report found / incomplete / missing and file counts for "
                        "every dataset of a config. Exit status 1 when any is not found.")
    options.shared(c, config="config file")
    c.add_argument("--root", type=Path, default=Path("."), help="repository root")
    c.add_argument("--json", action="store_true", help="one JSON object per dataset")
    c.set_defaults(func=check)
    e = dsub.add_parser("embedded", help="write the photos bundled in scikit-image/-learn",
                        description="Write bundled photos as PNG files.")
    options.shared(e, out="output folder", out_required=False,
                   config="take the names from this config's dataset", config_required=False)
    e.add_argument("--names", nargs="+", help="photos to write (default: all, or the config's)")
    e.add_argument("--dataset", default="embedded", help="dataset key in --config")
    e.add_argument("--list", action="store_true", help="list the bundled photos and exit")
    e.set_defaults(func=embedded)
    i = dsub.add_parser("index", help="index a dataset folder (path, size, sha1 per image)",
                        description="Write a CSV index of the images under a folder; fails with "
                        "a clear message when the folder is missing.")
    i.add_argument("--images", required=True, type=Path, help="dataset folder")
    options.shared(i, out="index CSV to write")
    i.add_argument("--url", help="where the dataset can be obtained (for the error message)")
    i.set_defaults(func=index)


def check(args: argparse.Namespace) -> int:
    from zephir import datasets

    cfg = zconfig.load(args.config)
    rows = datasets.check(cfg, root=args.root)
    if args.json:
        for row in rows:
            print(json.dumps(row))
    else:
        width = max(len(r["dataset"]) for r in rows)
        for r in rows:
            exp = f"/{r['expected']}" if r["expected"] != "" else ""
            line = (f"{r['dataset']:<{width}}  {r['status']:<10}  {r['files']}{exp} files  "
                    f"{r['path']}")
            if r["status"] != "found" and r["url"]:
                line += f"  (get it from {r['url']}, see README 'Datasets')"
            if r["status"] != "found" and r.get("hint"):
                line += f"\n  {r['hint']}"
            print(line)
    return 0 if all(r["status"] == "found" for r in rows) else 1


def embedded(args: argparse.Namespace) -> int:
    from zephir import datasets

    if args.list:
        print("\n".join(datasets.EMBEDDED))
        return 0
    if args.out is None:
        raise ValueError("--out is required (or use --list)")
    names = args.names
    if args.config:
        cfg = zconfig.load(args.config)
        ds = cfg["datasets"].get(args.dataset)
        if ds is None or ds["kind"] != "embedded":
            raise ValueError(f"{args.config}: datasets.{args.dataset} is not an embedded dataset")
        names = names or ds["images"]
    paths = datasets.write_embedded(args.out, names or list(datasets.EMBEDDED))
    print(f"wrote {len(paths)} bundled photo(s) to {args.out}")
    return 0


def index(args: argparse.Namespace) -> int:
    from zephir import datasets

    n = datasets.index_folder(args.images, args.out, url=args.url or "")
    print(f"indexed {n} image(s) of {args.images} into {args.out}")
    return 0
