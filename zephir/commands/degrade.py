"""``zephir synth``, ``zephir transfer-set``, ``zephir blind``: the degraded image sets.

The labelled set HD-CLIP trains on (paper, section 4.1), the transfer set degraded by a second
implementation of the operators, and the Real-ESRGAN blind LQ images of the restoration sets.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from zephir import config as zconfig
from zephir import io as zio
from zephir.commands import options
from zephir.degrade import levels


def register(sub) -> None:
    s = sub.add_parser("synth", help="build the labelled degradation dataset (paper, 4.1)",
                       description="Every source image x every type x N levels (plus optional "
                       "mixtures), random crops, a manifest with native values and 0..100 "
                       "levels, and a train/val split by source image (or, with --split, every "
                       "image in one split). Options override the synth section of --config.")
    s.add_argument("--images", required=True, type=Path,
                   help="folder of source images, or an image index CSV")
    options.shared(s, out="output folder", quiet="progress bar", config_required=False,
                   config="config file whose synth section gives defaults")
    s.add_argument("--seed", type=int, help="base seed (default 0)")
    s.add_argument("--types", nargs="+", choices=levels.LABEL_ORDER,
                   help="degradation types (default: all four)")
    s.add_argument("--levels-per-type", type=int, help="single-type samples per image and type")
    s.add_argument("--crop-size", type=int, help="side of the random crop in pixels")
    s.add_argument("--mixtures", type=int, help="mixture samples per image (2-4 types)")
    s.add_argument("--val-mixtures", type=int,
                   help="mixture samples per validation image (default: --mixtures)")
    s.add_argument("--mixture-types", type=int, nargs=2, metavar=("MIN", "MAX"),
                   help="fewest and most types in a mixture")
    s.add_argument("--level-range", type=float, nargs=2, metavar=("LOW", "HIGH"),
                   help="levels are drawn uniformly in [LOW, HIGH] (0..100)")
    s.add_argument("--val-fraction", type=float, help="share of source images held out")
    s.add_argument("--split", choices=["train", "val"],
                   help="put every source image in this split (an evaluation set: val); "
                   "default: split by image with --val-fraction")
    s.add_argument("--interpolation", choices=["bicubic", "bilinear", "area", "nearest",
                                               "lanczos"], help="downsample resampling")
    s.add_argument("--randomise", action=argparse.BooleanOptionalAction,
                   help="randomise per sample what the label does not fix: crop scale, blur "
                   "kernel support and sampling, downsample resampling, JPEG chroma "
                   "subsampling and block grid offset (issue 14; default off: the paper's "
                   "fixed pipeline)")
    s.add_argument("--workers", type=int, help="worker processes (output does not depend on it)")
    s.set_defaults(func=synth)

    ts = sub.add_parser("transfer-set", help="photos degraded by a second implementation of the "
                        "four operators (transfer evaluation)",
                        description="Per photo and type, --per-type square crops of random "
                        "sides (1.25-2.5 x --train-crop-size, or --crop-sizes), each at a "
                        "uniform random 0..100 level, degraded "
                        "by zephir.degrade.transfer (scipy blur, Pillow resampling, numpy "
                        "noise, JPEG's lossy steps in float at 4:2:2): code HD-CLIP never "
                        "trained on. Writes images/ and "
                        "a synth-style manifest.csv (split val); read it with `zephir evaluate "
                        "--transfer`.")
    ts.add_argument("--images", required=True, type=Path,
                    help="folder of photos, or an image index CSV")
    options.shared(ts, out="output folder")
    ts.add_argument("--per-type", type=int,
                    help="samples per photo and type (default: the config schema's)")
    ts.add_argument("--seed", type=int, default=0, help="base seed")
    ts.add_argument("--max-blur", type=float,
                    help="first reduce each photo (area) until its model-free blur measure is "
                    "below this sigma in px (estimation.transfer.max_blur); the manifest "
                    "records the factor")
    ts.add_argument("--types", nargs="+", choices=levels.LABEL_ORDER,
                    help="degradation types (default: all four)")
    sizes = ts.add_mutually_exclusive_group()
    sizes.add_argument("--train-crop-size", type=int,
                       help="the crop side the models were trained on (synth.crop_size; "
                       "default: the schema's, 128): crop sides are uniform in 1.25-2.5 times "
                       "it, at most the photo's short side")
    sizes.add_argument("--crop-sizes", type=int, nargs=2, metavar=("LOW", "HIGH"),
                       help="crop sides uniform in [LOW, HIGH] pixels instead")
    ts.set_defaults(func=transfer_set)

    b = sub.add_parser("blind", help="Real-ESRGAN second-order blind degradation (test LQ)",
                       description="Degrade every image of a folder with Real-ESRGAN's x4plus "
                       "second-order pipeline; writes lq/, hq/ (mod-cropped), params/ and "
                       "manifest.csv. Seeded per image; resumes.")
    b.add_argument("--images", required=True, type=Path,
                   help="folder of HQ images, or an image index CSV")
    options.shared(b, out="output folder", quiet="progress bar")
    b.add_argument("--scale", type=int, default=4, choices=[2, 4], help="downscale factor")
    b.add_argument("--seed", type=int, default=0, help="base seed")
    b.add_argument("--crop", type=int, help="centre crop of each HQ image (pixels, a multiple "
                   "of the scale) before degradation; default: whole images")
    b.add_argument("--workers", type=int, default=1, help="worker processes")
    b.set_defaults(func=blind)


def synth(args: argparse.Namespace) -> int:
    from zephir.degrade import synth as zsynth

    section = {}
    if args.config:
        cfg = zconfig.load(args.config)
        section = dict(cfg["synth"])
    flags = {"types": args.types, "levels_per_type": args.levels_per_type,
             "crop_size": args.crop_size, "mixtures_per_image": args.mixtures,
             "val_mixtures_per_image": args.val_mixtures,
             "mixture_types": args.mixture_types, "level_range": args.level_range,
             "val_fraction": args.val_fraction, "seed": args.seed,
             "interpolation": args.interpolation, "randomise": args.randomise}
    section.update({k: v for k, v in flags.items() if v is not None})
    workers = args.workers or section.pop("workers", 1)
    section.pop("workers", None)
    spec = zsynth.SynthSpec.from_config(section)
    report = zsynth.synthesize(args.images, args.out, spec, workers=workers,
                               progress=not args.quiet, split=args.split)
    print(zsynth.describe(report))
    print(f"manifest: {Path(args.out) / zsynth.MANIFEST}")
    return 0


def transfer_set(args: argparse.Namespace) -> int:
    from zephir.datasets import image_list
    from zephir.degrade import transfer
    from zephir.schema import default

    sizes = (tuple(args.crop_sizes) if args.crop_sizes
             else transfer.crop_sizes(args.train_crop_size or default("synth.crop_size")))
    manifest = transfer.make(image_list(args.images), args.out,
                             per_type=args.per_type or default("estimation.transfer.per_type"),
                             seed=args.seed, types=args.types or levels.LABEL_ORDER,
                             crop_sizes=sizes, max_blur=args.max_blur)
    print(f"manifest: {manifest}")
    return 0


def blind(args: argparse.Namespace) -> int:
    from zephir.degrade import blind as zblind

    report = zblind.blind_folder(args.images, args.out, scale=args.scale, seed=args.seed,
                                 workers=args.workers, progress=not args.quiet,
                                 config=zblind.BlindConfig(scale=args.scale, crop=args.crop))
    print("\n".join(zio.describe_reads(report)))
    print(f"{report['images_resumed']} image(s) reused from an earlier run with the same settings")
    print(f"manifest: {Path(args.out) / zblind.MANIFEST}")
    return 0
