"""``zephir dvc``: write (or check) the DVC files from the stages :mod:`zephir.stages` declares."""
from __future__ import annotations

import argparse
from pathlib import Path


def register(sub) -> None:
    dv = sub.add_parser("dvc", help="write dvc.yaml and workflow/dvc/paper/dvc.yaml from "
                        "zephir/stages.py", description="Write the DVC files of the embedded "
                        "default and of the paper from the stages zephir.stages declares. "
                        "With --check, write nothing and exit 1 when a file differs.")
    dv.add_argument("--check", action="store_true", help="compare only (exit 1 if stale)")
    dv.add_argument("--root", type=Path, default=Path("."), help="repository root")
    dv.set_defaults(func=write)


def write(args: argparse.Namespace) -> int:
    from zephir import stages

    stale = stages.write_dvc_files(args.root, check=args.check)
    for path in stale:
        print(f"{path}: {'differs from' if args.check else 'rewritten from'} zephir/stages.py"
              + (" (write it with `zephir dvc`)" if args.check else ""))
    return 1 if args.check and stale else 0
