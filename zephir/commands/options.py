"""The flags several sub-commands share, each declared here once.

``--config``, ``--device``, ``--quiet``, ``--lq`` and ``--out`` mean the same in every command
that takes them; :func:`shared` adds the ones a command takes as its "shared options" group
(``add_<flag>`` adds one to a parser or group: ``zephir table``'s mutually exclusive
``--config`` / ``--config-hash``). :func:`add_clip` and :func:`clip_overrides` are the CLIP a model
is built on (``--arch`` / ``--checkpoint`` / ``--quick-gelu``), for ``zephir train`` and
``zephir import-daclip``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from zephir import config as zconfig


def add_config(parser, *, required: bool = True, help: str = "config file") -> None:
    """``--config FILE``: the run's config (validated against the schema when read)."""
    parser.add_argument("--config", required=required, type=Path, help=help)


def add_device(parser, *, default: str = "cpu") -> None:
    """``--device``: where the model runs (``auto``: CUDA when torch sees it)."""
    choices = "auto, cpu, cuda, cuda:1, ..." if default == "auto" else "cpu, cuda, cuda:1, ..."
    parser.add_argument("--device", default=default, help=f"{choices} (default: {default})")


def add_quiet(parser, *, what: str = "progress bar") -> None:
    """``--quiet``: no progress display (the results are the same)."""
    parser.add_argument("--quiet", action="store_true", help=f"no {what}")


def add_lq(parser) -> None:
    """``--lq``: the LQ images a restoration reads."""
    parser.add_argument("--lq", required=True, type=Path,
                        help="blind manifest.csv, image folder or index CSV of the LQ images")


def add_out(parser, *, help: str = "output folder", required: bool = True) -> None:
    """``--out``: what the command writes."""
    parser.add_argument("--out", required=required, type=Path, help=help)


def shared(parser: argparse.ArgumentParser, *, config: str | None = None,
           config_required: bool = True, lq: bool = False, out: str | None = None,
           out_required: bool = True, device: str | None = None,
           quiet: str | None = None) -> None:
    """Add the shared flags a command takes, as one group: ``config`` / ``out``: their help
    (``None``: the command does not take them); ``device``: its default; ``quiet``: what it
    silences."""
    group = parser.add_argument_group("shared options")
    if config is not None:
        add_config(group, required=config_required, help=config)
    if lq:
        add_lq(group)
    if out is not None:
        add_out(group, help=out, required=out_required)
    if device is not None:
        add_device(group, default=device)
    if quiet is not None:
        add_quiet(group, what=quiet)


def add_clip(parser: argparse.ArgumentParser, *, checkpoint: bool) -> None:
    """--arch / --checkpoint / --quick-gelu: the CLIP a model is built on, over the config's."""
    parser.add_argument("--arch", help="open_clip architecture (over the config's; the DA-CLIP "
                        "methods default to estimation.daclip_model)")
    if checkpoint:
        parser.add_argument("--checkpoint", help="CLIP weights: a file, an open_clip "
                            "pretrained tag, or none (random init)")
    parser.add_argument("--quick-gelu", action=argparse.BooleanOptionalAction, default=None,
                        help="QuickGELU activations (OpenAI's weights need them)")


def clip_overrides(args: argparse.Namespace, cfg: dict, method: str) -> dict:
    """The CLIP (arch, checkpoint, quick_gelu) a model is built on, where it is not
    hdclip.model's: DA-CLIP's own (estimation.daclip_model) for the DA-CLIP methods, then the
    --arch / --checkpoint / --quick-gelu flags (checkpoint "none": random init)."""
    clip = zconfig.daclip_model(cfg) if method.startswith("daclip") else {}
    flags = {"arch": args.arch, "checkpoint": getattr(args, "checkpoint", None),
             "quick_gelu": args.quick_gelu}
    clip.update({k: v for k, v in flags.items() if v is not None})
    if isinstance(clip.get("checkpoint"), str) and clip["checkpoint"].lower() == "none":
        clip["checkpoint"] = None
    return clip
