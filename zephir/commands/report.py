"""``zephir table``, ``zephir figure``, ``zephir headline``: the paper's tables and figures
from results files (the flags come from :mod:`zephir.report.registry`, which is light: lists,
no pandas or matplotlib), and the numbers ``dvc metrics show`` prints."""
from __future__ import annotations

import argparse
from pathlib import Path

from zephir import config as zconfig
from zephir.commands import options


def register(sub) -> None:
    from zephir.report import registry

    tb = sub.add_parser("table", help="render a table of the paper from results files",
                        description="Build a table from results files and write it as CSV "
                        "(full precision), Markdown and LaTeX (formatted, best in bold). "
                        + " ".join(f"{t.name}: {t.title}" for t in [
                            *registry.TABLES.values(), *registry.CONFIG_TABLES.values()]))
    tb.add_argument("name", choices=[*registry.TABLES, *registry.CONFIG_TABLES])
    for source in registry.table_sources().values():
        tb.add_argument(f"--{source.flag}", nargs="+", type=Path,
                        help=f"{source.help} (" + ", ".join(
                            t.name for t in registry.TABLES.values()
                            if t.source.flag == source.flag) + ")")
    src = tb.add_mutually_exclusive_group(required=True)
    options.add_config(src, required=False,
                       help="the run's config file (its hash goes into the caption)")
    src.add_argument("--config-hash", help="the hash of the run's config, as given")
    options.add_out(tb, help="output path without suffix (an existing folder: <folder>/<name>)")
    tb.set_defaults(func=table)

    fg = sub.add_parser("figure", help="draw a figure of the paper (or beside it) from results "
                        "files",
                        description="Figures " + "; ".join(
                            f"{f.number} ({f.title})" for f in registry.FIGURES.values())
                        + ". Each takes the inputs and options its help names.")
    fg.add_argument("number", type=registry.figure_key, choices=list(registry.FIGURES),
                    help="a figure of the paper by number, or one beyond it by name")
    options.add_out(fg, help="PNG to write")
    for kind in registry.figure_inputs().values():
        fg.add_argument(f"--{kind.flag}", nargs="+" if kind.many else None, type=Path,
                        help=kind.help)
    for option in registry.figure_options().values():
        fg.add_argument(f"--{option.flag}", type=option.type, help=option.help)
    fg.set_defaults(func=figure)

    hl = sub.add_parser("headline", help="the few numbers `dvc metrics show` prints, from "
                        "tables 2 and 1", description="HD-CLIP's type accuracy, MAE, SROCC and "
                        "PCC (table 2) and table 1's mean of each --metrics per backbone and "
                        "mode, as one small JSON file per row in the folder --out.")
    hl.add_argument("--table2", type=Path, help="table2.json of `zephir table table2`")
    hl.add_argument("--table1", type=Path, help="table1.json of `zephir table table1`")
    hl.add_argument("--metrics", nargs="+", default=["psnr", "lpips"],
                    help="table 1's metrics to average over its sets (report.headline.metrics)")
    options.shared(hl, out="folder to write")
    hl.set_defaults(func=headline)


def table(args: argparse.Namespace) -> int:
    from zephir.report import registry

    if args.name in registry.CONFIG_TABLES:  # from the config's architectures (table 6)
        if args.config is None:
            raise ValueError(f"{args.name} is computed from the config: pass --config FILE")
        cfg = zconfig.load(args.config)
        out = args.out / args.name if args.out.is_dir() else args.out
        paths = registry.CONFIG_TABLES[args.name].make(cfg, zconfig.fingerprint(cfg), out)
        print("wrote " + ", ".join(map(str, paths)))
        return 0
    digest = args.config_hash or zconfig.fingerprint(zconfig.load(args.config))
    entry = registry.table(args.name)
    others = [f"--{flag}" for flag, source in registry.table_sources().items()
              if flag != entry.source.flag and getattr(args, source.dest)]
    if others:
        raise ValueError(f"{args.name} reads --{entry.source.flag}, not {', '.join(others)}")
    paths = entry.make(getattr(args, entry.source.dest) or [], digest, args.out)
    print("wrote " + ", ".join(map(str, paths)))
    return 0


def figure(args: argparse.Namespace) -> int:
    from zephir.report import registry

    flags = [*registry.figure_inputs().values(), *registry.figure_options().values()]
    path = registry.draw_figure(args.number, args.out,
                                **{f.dest: getattr(args, f.dest) for f in flags})
    print(f"wrote {path}")
    return 0


def headline(args: argparse.Namespace) -> int:
    from zephir.report import headline as zheadline

    if args.table1 is None and args.table2 is None:
        raise ValueError("headline needs --table2 and/or --table1")
    paths = zheadline.make(args.table2, args.table1, args.metrics, args.out)
    print(f"wrote {len(paths)} file(s) in {args.out}")
    return 0
