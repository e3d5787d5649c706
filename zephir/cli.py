"""The ``zephir`` command line: parses arguments and calls one package function per command."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from zephir import config as zconfig
from zephir import io as zio
from zephir.degrade import levels


def _synth(args: argparse.Namespace) -> int:
    from zephir.degrade import synth

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
    spec = synth.SynthSpec.from_config(section)
    report = synth.synthesize(args.images, args.out, spec, workers=workers,
                              progress=not args.quiet, split=args.split)
    print(synth.describe(report))
    print(f"manifest: {Path(args.out) / synth.MANIFEST}")
    return 0


def _transfer_set(args: argparse.Namespace) -> int:
    from zephir.data import image_list
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


def _blind(args: argparse.Namespace) -> int:
    from zephir.degrade import blind

    report = blind.blind_folder(args.images, args.out, scale=args.scale, seed=args.seed,
                                workers=args.workers, progress=not args.quiet,
                                config=blind.BlindConfig(scale=args.scale, crop=args.crop))
    print("\n".join(zio.describe_reads(report)))
    print(f"{report['images_resumed']} image(s) reused from an earlier run with the same settings")
    print(f"manifest: {Path(args.out) / blind.MANIFEST}")
    return 0


def _data_check(args: argparse.Namespace) -> int:
    from zephir import data

    cfg = zconfig.load(args.config)
    rows = data.check(cfg, root=args.root)
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


def _data_embedded(args: argparse.Namespace) -> int:
    from zephir import data

    if args.list:
        print("\n".join(data.EMBEDDED))
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
    paths = data.write_embedded(args.out, names or list(data.EMBEDDED))
    print(f"wrote {len(paths)} bundled photo(s) to {args.out}")
    return 0


def _data_index(args: argparse.Namespace) -> int:
    from zephir import data

    n = data.index_folder(args.images, args.out, url=args.url or "")
    print(f"indexed {n} image(s) of {args.images} into {args.out}")
    return 0


def _clip_overrides(args: argparse.Namespace, cfg: dict, method: str) -> dict:
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


def _train(args: argparse.Namespace) -> int:
    from zephir.hdclip.model import HDCLIPConfig
    from zephir.training import TrainConfig, train

    cfg = zconfig.ablation(zconfig.load(args.config), args.losses, args.topk, args.gap)
    h = cfg["hdclip"]
    model_cfg = HDCLIPConfig(**{**h["model"], **_clip_overrides(args, cfg, args.method),
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
    metrics = train(manifest, args.out, model_cfg, train_cfg, method=args.method,
                    sources=args.sources, resume=args.resume, device=args.device,
                    progress=not args.quiet,
                    evaluate_into=Path(args.out) / "eval" if args.evaluate else None, **extra)
    if metrics:
        note = " (random-init CLIP)" if model_cfg.random_init else ""
        print(f"validation{note}: type accuracy {metrics['type_acc']:.3f}, level MAE "
              f"{metrics['mae']:.2f}, SROCC {metrics['srocc']:.3f}, PCC {metrics['pcc']:.3f}")
    print(f"model: {Path(args.out)} (model.safetensors, config.json, README.md)")
    return 0


def _evaluate_into(checkpoint: Path, manifest: Path, out: Path, split: str, device: str,
                   transfer: bool = False):
    from zephir import evaluation

    result = evaluation.evaluate_checkpoint(checkpoint, manifest, out, split=split,
                                            device=device, transfer=transfer)
    m = result["metrics"]["single"]
    note = " (random-init CLIP)" if result["random_init"] else ""
    note += ", transfer set" if transfer else ""
    print(f"{result['method']}{note}: type accuracy {m['type_acc']:.3f}, level MAE "
          f"{m['mae']:.2f}, SROCC {m['srocc']:.3f}, PCC {m['pcc']:.3f} -> {out}")


def _evaluate(args: argparse.Namespace) -> int:
    _evaluate_into(args.checkpoint, args.manifest, args.out, args.split, args.device,
                   args.transfer)
    return 0


def _import_daclip(args: argparse.Namespace) -> int:
    from zephir import checkpoints
    from zephir.hdclip.model import HDCLIPConfig

    cfg = zconfig.load(args.config)
    clip = _clip_overrides(args, cfg, "daclip_released")
    hd = HDCLIPConfig(arch=clip["arch"], quick_gelu=clip["quick_gelu"],
                      checkpoint=str(args.weights), types=tuple(cfg["synth"]["types"]))
    path = checkpoints.import_daclip(args.weights, hd, args.out)
    print(f"model: {path} (model.safetensors, config.json, README.md)")
    if args.manifest:
        _evaluate_into(path, args.manifest, Path(args.out) / "eval", "val", args.device)
    return 0


def _table(args: argparse.Namespace) -> int:
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


def _figure(args: argparse.Namespace) -> int:
    from zephir.report import registry

    flags = [*registry.figure_inputs().values(), *registry.figure_options().values()]
    path = registry.draw_figure(args.number, args.out,
                                **{f.dest: getattr(args, f.dest) for f in flags})
    print(f"wrote {path}")
    return 0


def _dvc(args: argparse.Namespace) -> int:
    from zephir import stages

    stale = stages.write_dvc_files(args.root, check=args.check)
    for path in stale:
        print(f"{path}: {'differs from' if args.check else 'rewritten from'} zephir/stages.py"
              + (" (write it with `zephir dvc`)" if args.check else ""))
    return 1 if args.check and stale else 0


def _headline(args: argparse.Namespace) -> int:
    from zephir.report import headline

    if args.table1 is None and args.table2 is None:
        raise ValueError("headline needs --table2 and/or --table1")
    paths = headline.make(args.table2, args.table1, args.metrics, args.out)
    print(f"wrote {len(paths)} file(s) in {args.out}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from zephir import checkpoints
    from zephir.evaluation import level_scale
    from zephir.hdclip import predict

    model, ckpt = checkpoints.load_pretrained(args.checkpoint, args.device)
    results, errors = predict.predict_files(model, args.images, args.device, args.batch)
    random_init = bool(ckpt.get("random_init", True))
    method = ckpt.get("method", "hdclip")
    if args.json:
        for r in results:
            print(json.dumps({**r, "method": method, "random_init": random_init,
                              "level_scale": level_scale(model)}))
    else:
        notes = []
        if random_init:
            notes.append(f"note: this checkpoint's encoder ({ckpt['hdclip']['arch']}) was "
                         "trained from random init; its numbers are not the paper's.")
        if not level_scale(model):
            notes.append(f"note: {method} models {', '.join(results[0]['degradations'])} "
                         "only; its p and levels are 100 x a degree learned from order alone: "
                         "they rank images, they are not probabilities or 0..100 levels."
                         if results else f"note: {method}'s levels are degrees, not levels.")
        print(predict.format_table(results, model.cfg.types, "\n".join(notes)))
    for line in errors:
        print(f"zephir predict: skipped {line}", file=sys.stderr)
    if errors:
        print(f"zephir predict: {len(errors)} of {len(args.images)} file(s) could not be read",
              file=sys.stderr)
    return 1 if errors else 0


def _restore(args: argparse.Namespace) -> int:
    from zephir import restore

    cfg = zconfig.load(args.config)
    r = cfg["restoration"]
    w_orth = r["w_orth"] if args.w_orth is None else args.w_orth
    w_par = r["w_par"] if args.w_par is None else args.w_par
    settings = zconfig.backbone_settings(cfg, args.backbone, args.dataset)
    done = restore.restore_folder(
        args.lq, args.out, backbone_name=args.backbone, settings=settings,
        weights=cfg["weights"], embeddings=args.embeddings,
        mode=args.mode, bridge=r["bridge"], bridge_options=r["bridge_options"], w_par=w_par,
        w_orth=w_orth, cfg_ratio=r["cfg_ratio"], seed=r["seed"], steps=r["steps"],
        prompt=r["prompt"], controlnet=r["controlnet"], shard=args.shard, shards=args.shards,
        device=args.device,
        progress=not args.quiet)
    kept = sum(i["resumed"] for i in done["images"])
    print(f"restored {len(done['images']) - kept} image(s), kept {kept} finished under the same "
          f"settings, refused {len(done['refused'])} -> {args.out}")
    for stem, why in done["refused"].items():
        print(f"refused {stem}: {why}", file=sys.stderr)
    return 1 if done["refused"] else 0


def _embed(args: argparse.Namespace) -> int:
    from zephir.embed import embed_set

    emb = embed_set(args.hdclip, args.lq, args.out, device=args.device,
                    progress=not args.quiet)
    label = " (random-init HD-CLIP)" if emb.hdclip.get("random_init") else ""
    print(f"embedded {len(emb.images)} image(s) with {args.hdclip}{label} -> {args.out}")
    return 0


def _score(args: argparse.Namespace) -> int:
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


def _weights_check(args: argparse.Namespace) -> int:
    from zephir import weights

    cfg = zconfig.load(args.config)
    rows = weights.check(cfg["weights"], extra=weights.config_weights(cfg))
    print(weights.format_check(rows))
    return 0 if all(r["status"] == "found" for r in rows) else 1


def _clip_flags(parser: argparse.ArgumentParser, *, checkpoint: bool) -> None:
    """--arch / --checkpoint / --quick-gelu: the CLIP a model is built on, over the config's."""
    parser.add_argument("--arch", help="open_clip architecture (over the config's; the DA-CLIP "
                        "methods default to estimation.daclip_model)")
    if checkpoint:
        parser.add_argument("--checkpoint", help="CLIP weights: a file, an open_clip "
                            "pretrained tag, or none (random init)")
    parser.add_argument("--quick-gelu", action=argparse.BooleanOptionalAction, default=None,
                        help="QuickGELU activations (OpenAI's weights need them)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="zephir", description=(
        "ZePHiR: HD-CLIP degradation representation and classifier-free projection guidance "
        "for diffusion super-resolution."))
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("synth", help="build the labelled degradation dataset (paper, 4.1)",
                       description="Every source image x every type x N levels (plus optional "
                       "mixtures), random crops, a manifest with native values and 0..100 "
                       "levels, and a train/val split by source image (or, with --split, every "
                       "image in one split). Options override the synth section of --config.")
    s.add_argument("--images", required=True, type=Path,
                   help="folder of source images, or an image index CSV")
    s.add_argument("--out", required=True, type=Path, help="output folder")
    s.add_argument("--config", type=Path, help="config file whose synth section gives defaults")
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
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=_synth)

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
    ts.add_argument("--out", required=True, type=Path, help="output folder")
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
    ts.set_defaults(func=_transfer_set)

    b = sub.add_parser("blind", help="Real-ESRGAN second-order blind degradation (test LQ)",
                       description="Degrade every image of a folder with Real-ESRGAN's x4plus "
                       "second-order pipeline; writes lq/, hq/ (mod-cropped), params/ and "
                       "manifest.csv. Seeded per image; resumes.")
    b.add_argument("--images", required=True, type=Path,
                   help="folder of HQ images, or an image index CSV")
    b.add_argument("--out", required=True, type=Path, help="output folder")
    b.add_argument("--scale", type=int, default=4, choices=[2, 4], help="downscale factor")
    b.add_argument("--seed", type=int, default=0, help="base seed")
    b.add_argument("--crop", type=int, help="centre crop of each HQ image (pixels, a multiple "
                   "of the scale) before degradation; default: whole images")
    b.add_argument("--workers", type=int, default=1, help="worker processes")
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    b.set_defaults(func=_blind)

    t = sub.add_parser("train", help="train HD-CLIP on the labelled set (paper, eq. 11)",
                       description="Train HD-CLIP with the hdclip section of a config. Runs "
                       "data-parallel under torchrun or srun. Writes the model into --out "
                       "(model.safetensors, config.json, a model card README.md: a folder for "
                       "`zephir predict --checkpoint`, or to upload to the Hugging Face Hub), "
                       "last.pt (resumable), train_log.csv, val_metrics.csv and metrics.json.")
    t.add_argument("--config", required=True, type=Path, help="config file")
    t.add_argument("--out", required=True, type=Path, help="output folder")
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
    _clip_flags(t, checkpoint=True)
    t.add_argument("--evaluate", action="store_true",
                   help="then evaluate the model as `zephir evaluate` does, into <out>/eval/")
    t.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=_train)

    r = sub.add_parser("restore", help="restore LQ images with a backbone: baseline, CFG, CFPG",
                       description="Restore one shard of a set of LQ images (a blind manifest, "
                       "a folder or an index CSV) with a diffusion SR backbone, guided by "
                       "HD-CLIP (paper, section 3.2), with the restoration section of "
                       "--config. Writes <stem>.png and a <stem>.json record per image and "
                       "shard-<i>-of-<n>.done.json; a rerun keeps images finished under the "
                       "same settings.")
    r.add_argument("--config", required=True, type=Path, help="config file")
    r.add_argument("--lq", required=True, type=Path,
                   help="blind manifest.csv, image folder or index CSV of the LQ images")
    r.add_argument("--out", required=True, type=Path, help="output folder")
    r.add_argument("--backbone", default="tiny", help="tiny, sd-x4-upscaler, faithdiff, ...")
    r.add_argument("--dataset", help="the set's key in datasets: an hq false set (RealDeg) takes "
                   "restoration.realworld.settings over restoration.settings")
    r.add_argument("--mode", default="cfpg", choices=["baseline", "cfg", "cfpg"])
    r.add_argument("--embeddings", type=Path,
                   help="the set's HD-CLIP embeddings, written by `zephir embed` (cfg, cfpg)")
    r.add_argument("--w-orth", type=float, help="override restoration.w_orth (eq. 14)")
    r.add_argument("--w-par", type=float, help="override restoration.w_par (eq. 14)")
    r.add_argument("--shard", type=int, default=0, help="this job's shard (0-based)")
    r.add_argument("--shards", type=int, default=1, help="number of shards of the set")
    r.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.set_defaults(func=_restore)

    e = sub.add_parser("embed", help="HD-CLIP's conditioning of a set of LQ images",
                       description="Run HD-CLIP once per LQ image (a blind manifest, a folder "
                       "or an index CSV) and write the set's conditioning file (safetensors: "
                       "semantic and degradation embeddings, presences, levels, and HD-CLIP's "
                       "text embeddings of the bridge's texts) that `zephir restore "
                       "--embeddings` reads in every mode and backbone.")
    e.add_argument("--hdclip", required=True, type=Path,
                   help="trained HD-CLIP's folder (model.safetensors, config.json)")
    e.add_argument("--lq", required=True, type=Path,
                   help="blind manifest.csv, image folder or index CSV of the LQ images")
    e.add_argument("--out", required=True, type=Path, help="the .safetensors file to write")
    e.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    e.add_argument("--quiet", action="store_true", help="no progress lines")
    e.set_defaults(func=_embed)

    sc = sub.add_parser("score", help="image-quality metrics of restored images (pyiqa)",
                        description="Score every image of a folder with pyiqa metrics "
                        "(docs/metrics.md), against same-named reference images when given. "
                        "Writes one row per image (CSV) and the means with the metrics' "
                        "conventions (JSON beside it); a metric whose weights are missing is "
                        "n/a, never a made-up number.")
    sc.add_argument("--config", required=True, type=Path, help="config (its weights section)")
    sc.add_argument("--restored", required=True, type=Path, help="folder of restored images")
    sc.add_argument("--reference", type=Path, help="folder of reference (HQ) images")
    sc.add_argument("--metrics", required=True, nargs="+",
                    help="psnr ssim lpips musiq qalign niqe brisque")
    sc.add_argument("--out", required=True, type=Path, help="scores CSV (JSON beside it)")
    sc.add_argument("--meta", nargs="*", default=[], metavar="KEY=VALUE",
                    help="recorded in the JSON (dataset, backbone, mode ...)")
    sc.add_argument("--device", default="cpu", help="cpu, cuda, ...")
    sc.set_defaults(func=_score)

    wt = sub.add_parser("weights", help="which pretrained weights a config needs, and where",
                        description="List every weight of the config's weights section, and "
                        "the CLIP weights files its estimators load (hdclip.model, "
                        "estimation.daclip_model, estimation.daclip_weights): found or missing, "
                        "where it goes and where to get it. Exit 1 when one is missing.")
    wsub = wt.add_subparsers(dest="weights_command", required=True, metavar="ACTION")
    wc = wsub.add_parser("check", help="found or missing, for each weight")
    wc.add_argument("--config", required=True, type=Path, help="config file")
    wc.set_defaults(func=_weights_check)

    e = sub.add_parser("evaluate", help="degradation-estimation metrics of a trained model",
                       description="Run a trained HD-CLIP or baseline over the validation "
                       "samples of a synth manifest. Writes predictions.csv, arrays.npz "
                       "(HD-CLIP embeddings and anchors) and metrics.json (table 2 metrics, "
                       "levels between bin centres, mixtures).")
    e.add_argument("--checkpoint", required=True, type=Path,
                   help="a trained model's folder (model.safetensors, config.json)")
    e.add_argument("--manifest", required=True, type=Path, help="synth manifest.csv")
    e.add_argument("--out", required=True, type=Path, help="output folder")
    e.add_argument("--split", default="val", help="manifest split to evaluate (default: val)")
    e.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    e.add_argument("--transfer", action="store_true",
                   help="the manifest is a transfer set (`zephir transfer-set`): read each "
                   "sample whole, of any size, as `zephir predict` does, and record the "
                   "results as transfer results (default: validation samples, crops of the "
                   "model's input size)")
    e.set_defaults(func=_evaluate)

    dc = sub.add_parser("import-daclip", help="read DA-CLIP's released weights (table 2)",
                        description="Convert DA-CLIP's released weights (daclip_ViT-B-32.pt, "
                        "or Wild-IR's wild-daclip_ViT-L-14.pt with a ViT-L-14 CLIP; read with "
                        "weights_only=True) into a zephir model folder read out like the DA-CLIP-style baseline, and "
                        "evaluate it when --manifest is given.")
    dc.add_argument("--weights", required=True, type=Path,
                    help="DA-CLIP's released checkpoint file")
    dc.add_argument("--config", required=True, type=Path,
                    help="config whose estimation.daclip_model (else hdclip.model) arch and "
                    "quick_gelu describe its CLIP")
    _clip_flags(dc, checkpoint=False)
    dc.add_argument("--out", required=True, type=Path, help="output folder")
    dc.add_argument("--manifest", type=Path, help="evaluate on this synth manifest's val split")
    dc.add_argument("--device", default="cpu", help="cpu, cuda, ...")
    dc.set_defaults(func=_import_daclip)

    from zephir.report import registry  # light: lists, no pandas or matplotlib

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
    src.add_argument("--config", type=Path,
                     help="the run's config file (its hash goes into the caption)")
    src.add_argument("--config-hash", help="the hash of the run's config, as given")
    tb.add_argument("--out", required=True, type=Path,
                    help="output path without suffix (an existing folder: <folder>/<name>)")
    tb.set_defaults(func=_table)

    fg = sub.add_parser("figure", help="draw a figure of the paper (or beside it) from results "
                        "files",
                        description="Figures " + "; ".join(
                            f"{f.number} ({f.title})" for f in registry.FIGURES.values())
                        + ". Each takes the inputs and options its help names.")
    fg.add_argument("number", type=registry.figure_key, choices=list(registry.FIGURES),
                    help="a figure of the paper by number, or one beyond it by name")
    fg.add_argument("--out", required=True, type=Path, help="PNG to write")
    for kind in registry.figure_inputs().values():
        fg.add_argument(f"--{kind.flag}", nargs="+" if kind.many else None, type=Path,
                        help=kind.help)
    for option in registry.figure_options().values():
        fg.add_argument(f"--{option.flag}", type=option.type, help=option.help)
    fg.set_defaults(func=_figure)

    hl = sub.add_parser("headline", help="the few numbers `dvc metrics show` prints, from "
                        "tables 2 and 1", description="HD-CLIP's type accuracy, MAE, SROCC and "
                        "PCC (table 2) and table 1's mean of each --metrics per backbone and "
                        "mode, as one small JSON file per row in the folder --out.")
    hl.add_argument("--table2", type=Path, help="table2.json of `zephir table table2`")
    hl.add_argument("--table1", type=Path, help="table1.json of `zephir table table1`")
    hl.add_argument("--metrics", nargs="+", default=["psnr", "lpips"],
                    help="table 1's metrics to average over its sets (report.headline.metrics)")
    hl.add_argument("--out", required=True, type=Path, help="folder to write")
    hl.set_defaults(func=_headline)

    dv = sub.add_parser("dvc", help="write dvc.yaml and workflow/dvc/paper/dvc.yaml from "
                        "zephir/stages.py", description="Write the DVC files of the embedded "
                        "default and of the paper from the stages zephir.stages declares. "
                        "With --check, write nothing and exit 1 when a file differs.")
    dv.add_argument("--check", action="store_true", help="compare only (exit 1 if stale)")
    dv.add_argument("--root", type=Path, default=Path("."), help="repository root")
    dv.set_defaults(func=_dvc)

    pr = sub.add_parser("predict", help="estimate degradation types and levels of images",
                        description="Per image: the most confident type and, per type, the "
                        "confidence, the 0..100 level and the native value (blur sigma, noise "
                        "sigma on 0..255, JPEG quality, downsample scale).")
    pr.add_argument("images", nargs="+", type=Path, metavar="IMAGE", help="image files")
    pr.add_argument("--checkpoint", required=True, type=Path,
                    help="folder of a trained HD-CLIP or baseline (model.safetensors, "
                    "config.json)")
    pr.add_argument("--json", action="store_true", help="one JSON object per line and image")
    pr.add_argument("--device", default="cpu", help="cpu, cuda, ...")
    pr.add_argument("--batch", type=int, default=64, help="crops per forward pass")
    pr.set_defaults(func=_predict)

    d = sub.add_parser("data", help="datasets: check the paper's, write the embedded ones",
                       description="Dataset utilities.")
    dsub = d.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    c = dsub.add_parser("check", help="report, per dataset, found / missing and file counts",
                        description="Report found / incomplete / missing and file counts for "
                        "every dataset of a config. Exit status 1 when any is not found.")
    c.add_argument("--config", required=True, type=Path, help="config file")
    c.add_argument("--root", type=Path, default=Path("."), help="repository root")
    c.add_argument("--json", action="store_true", help="one JSON object per dataset")
    c.set_defaults(func=_data_check)
    e = dsub.add_parser("embedded", help="write the photos bundled in scikit-image/-learn",
                        description="Write bundled photos as PNG files.")
    e.add_argument("--out", type=Path, help="output folder")
    e.add_argument("--names", nargs="+", help="photos to write (default: all, or the config's)")
    e.add_argument("--config", type=Path, help="take the names from this config's dataset")
    e.add_argument("--dataset", default="embedded", help="dataset key in --config")
    e.add_argument("--list", action="store_true", help="list the bundled photos and exit")
    e.set_defaults(func=_data_embedded)
    i = dsub.add_parser("index", help="index a dataset folder (path, size, sha1 per image)",
                        description="Write a CSV index of the images under a folder; fails with "
                        "a clear message when the folder is missing.")
    i.add_argument("--images", required=True, type=Path, help="dataset folder")
    i.add_argument("--out", required=True, type=Path, help="index CSV to write")
    i.add_argument("--url", help="where the dataset can be obtained (for the error message)")
    i.set_defaults(func=_data_index)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, OSError) as exc:  # ImageError and ConfigError are ValueErrors
        print(f"zephir: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
