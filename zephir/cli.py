"""The ``zephir`` command line: one sub-command per step of the paper's pipeline.

Each sub-command declares its arguments beside its handler in a module of
:mod:`zephir.commands` (as diffusers' ``commands/``); this module gathers them into one parser
and runs the handler the arguments name.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from zephir import extras
from zephir.commands import COMMANDS


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="zephir", description=(
        "ZePHiR: HD-CLIP degradation representation and classifier-free projection guidance "
        "for diffusion super-resolution."))
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"zephir.commands.{name}").register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, OSError) as exc:  # ImageError and ConfigError are ValueErrors
        print(f"zephir: error: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:  # a workflow command run with the bare package
        message = extras.missing(exc)
        if message is None:
            raise
        print(f"zephir {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
