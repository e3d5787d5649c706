"""``zephir train``: the one trainer of HD-CLIP, the baselines and the ablations (paper, eq. 11)."""
from __future__ import annotations

import argparse
from pathlib import Path

from zephir import config as zconfig
from zephir.commands import options


def register(sub) -> None:
    t = sub.add_parser("train", help="train HD-CLIP on the labelled set (paper, eq. 11)",
                       description="Train HD-CLIP with the hdclip section of a config. Runs "
                       "data-parallel under torchrun or srun. Writes the model into --out "
                       "(model.safetensors, config.json, a model card README.md: a folder for "
                       "`zephir predict --checkpoint`, or to upload to the Hugging Face Hub), "
                       "last.pt (resumable), train_log.csv, val_metrics.csv and metrics.json.")
    options.shared(t, config="config file", out="output folder", device="auto",
                   quiet="progress bar")
    t.add_argument("--manifest", type=Path,
                   help="synth manifest (default: results/<name>/synth/<train_set>/)")
    t.add_argument("--val-manifest", type=Path,
                   help="synth manifest whose val split validates and evaluates (default: the "
                   "config's eval_set samples, results/<name>/synth_eval/<eval_set>/, or "
                   "--manifest when it has none)")
    t.add_argument("--sources", type=Path,
                   help="index of the source images (needed by the semantic losses)")
    t.add_argument("--captions", type=Path,
                   help="captions of the source images, a CSV in DA-CLIP's layout "
                   "(tab-separated, columns filepath and title)")
    t.add_argument("--resume", action="store_true", help="continue from <out>/last.pt (read with "
                   "weights_only=True: a file holding anything but tensors is refused)")
    t.add_argument("--steps", type=int, help="override hdclip.train.steps")
    t.add_argument("--method", default="hdclip",
                   choices=["hdclip", "clip_zeroshot", "daclip_style", "mmrealsr_style"],
                   help="HD-CLIP, or a baseline of table 2 / figure 7 trained the same way "
                   "(default: hdclip)")
    t.add_argument("--losses", choices=["A", "B", "C", "D"],
                   help="table 3 ablation: A no L_level / L_slerp, B L_level, C L_slerp, D both")
    t.add_argument("--topk", help="table 4 ablation: top-k bins of eq. 6 (a number or all)")
    t.add_argument("--gap", type=float, help="table 4 ablation: gap between bin centres")
    options.add_clip(t, checkpoint=True)
    t.add_argument("--evaluate", action="store_true",
                   help="then evaluate the model as `zephir evaluate` does, into <out>/eval/")
    t.set_defaults(func=train)


def train(args: argparse.Namespace) -> int:
    from zephir.hdclip.model import HDCLIPConfig
    from zephir.training import TrainConfig
    from zephir.training import train as run_training

    cfg = zconfig.ablation(zconfig.load(args.config), args.losses, args.topk, args.gap)
    h = cfg["hdclip"]
    model_cfg = HDCLIPConfig(**{**h["model"], **options.clip_overrides(args, cfg, args.method),
                                "types": tuple(cfg["synth"]["types"])})
    train_cfg = TrainConfig.from_dict(h["train"])
    if args.steps:
        train_cfg = train_cfg.with_steps(args.steps)
        train_cfg.eval_every = min(train_cfg.eval_every, args.steps)
        train_cfg.checkpoint_every = min(train_cfg.checkpoint_every, args.steps)
        train_cfg.warmup = min(train_cfg.warmup, args.steps // 10)  # a short run stays short
    manifest = args.manifest or zconfig.synth_manifest(cfg)
    val_manifest = args.val_manifest or (zconfig.eval_manifest(cfg) if cfg["eval_set"] else None)
    # the flags the trainer takes only when given (older trainers lack them)
    extra = {k: v for k, v in (("val_manifest", val_manifest), ("captions", args.captions))
             if v is not None}
    metrics = run_training(manifest, args.out, model_cfg, train_cfg, method=args.method,
                           sources=args.sources, resume=args.resume, device=args.device,
                           progress=not args.quiet,
                           evaluate_into=Path(args.out) / "eval" if args.evaluate else None,
                           **extra)
    if metrics:
        note = " (random-init CLIP)" if model_cfg.random_init else ""
        print(f"validation{note}: type accuracy {metrics['type_acc']:.3f}, level MAE "
              f"{metrics['mae']:.2f}, SROCC {metrics['srocc']:.3f}, PCC {metrics['pcc']:.3f}")
    print(f"model: {Path(args.out)} (model.safetensors, config.json, README.md)")
    return 0
