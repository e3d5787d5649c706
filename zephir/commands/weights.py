"""``zephir weights check``: which pretrained weights a config needs, and where they go."""
from __future__ import annotations

import argparse

from zephir import config as zconfig
from zephir.commands import options


def register(sub) -> None:
    wt = sub.add_parser("weights", help="which pretrained weights a config needs, and where",
                        description="List every weight of the config's weights section, and "
                        "the CLIP weights files its estimators load (hdclip.model, "
                        "estimation.daclip_model, estimation.daclip_weights): found or missing, "
                        "where it goes and where to get it. Exit 1 when one is missing.")
    wsub = wt.add_subparsers(dest="weights_command", required=True, metavar="ACTION")
    wc = wsub.add_parser("check", help="found or missing, for each weight")
    options.shared(wc, config="config file")
    wc.set_defaults(func=check)


def check(args: argparse.Namespace) -> int:
    from zephir import weights

    cfg = zconfig.load(args.config)
    rows = weights.check(cfg["weights"], extra=weights.config_weights(cfg))
    print(weights.format_check(rows))
    return 0 if all(r["status"] == "found" for r in rows) else 1
