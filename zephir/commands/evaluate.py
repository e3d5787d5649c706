"""``zephir evaluate`` and ``zephir import-daclip``: degradation-estimation metrics of a trained
model (table 2), and DA-CLIP's released weights as a model to evaluate."""
from __future__ import annotations

import argparse
from pathlib import Path

from zephir import config as zconfig
from zephir.commands import options


def register(sub) -> None:
    e = sub.add_parser("evaluate", help="degradation-estimation metrics of a trained model",
                       description="Run a trained HD-CLIP or baseline over the validation "
                       "samples of a synth manifest. Writes predictions.csv, arrays.npz "
                       "(HD-CLIP embeddings and anchors) and metrics.json (table 2 metrics, "
                       "levels between bin centres, mixtures).")
    e.add_argument("--checkpoint", required=True, type=Path,
                   help="a trained model's folder (model.safetensors, config.json)")
    e.add_argument("--manifest", required=True, type=Path, help="synth manifest.csv")
    options.shared(e, out="output folder", device="cpu")
    e.add_argument("--split", default="val", help="manifest split to evaluate (default: val)")
    e.add_argument("--transfer", action="store_true",
                   help="the manifest is a transfer set (`zephir transfer-set`): read each "
                   "sample whole, of any size, as `zephir predict` does, and record the "
                   "results as transfer results (default: validation samples, crops of the "
                   "model's input size)")
    e.set_defaults(func=evaluate)

    dc = sub.add_parser("import-daclip", help="read DA-CLIP's released weights (table 2)",
                        description="Convert DA-CLIP's released weights (daclip_ViT-B-32.pt, "
                        "or Wild-IR's wild-daclip_ViT-L-14.pt with a ViT-L-14 CLIP; read with "
                        "weights_only=True) into a zephir model folder read out like the "
                        "DA-CLIP-style baseline, and evaluate it when --manifest is given.")
    dc.add_argument("--weights", required=True, type=Path,
                    help="DA-CLIP's released checkpoint file")
    options.shared(dc, config="config whose estimation.daclip_model (else hdclip.model) arch "
                   "and quick_gelu describe its CLIP", out="output folder", device="cpu")
    options.add_clip(dc, checkpoint=False)
    dc.add_argument("--manifest", type=Path, help="evaluate on this synth manifest's val split")
    dc.set_defaults(func=import_daclip)


def evaluate_into(checkpoint: Path, manifest: Path, out: Path, split: str, device: str,
                  transfer: bool = False) -> None:
    """Evaluate a model folder into ``out`` and print its table 2 metrics."""
    from zephir import estimator_evaluation

    result = estimator_evaluation.evaluate_checkpoint(checkpoint, manifest, out, split=split,
                                                      device=device, transfer=transfer)
    m = result["metrics"]["single"]
    note = " (random-init CLIP)" if result["random_init"] else ""
    note += ", transfer set" if transfer else ""
    print(f"{result['method']}{note}: type accuracy {m['type_acc']:.3f}, level MAE "
          f"{m['mae']:.2f}, SROCC {m['srocc']:.3f}, PCC {m['pcc']:.3f} -> {out}")


def evaluate(args: argparse.Namespace) -> int:
    evaluate_into(args.checkpoint, args.manifest, args.out, args.split, args.device,
                  args.transfer)
    return 0


def import_daclip(args: argparse.Namespace) -> int:
    from zephir import checkpoints
    from zephir.hdclip.model import HDCLIPConfig

    cfg = zconfig.load(args.config)
    clip = options.clip_overrides(args, cfg, "daclip_released")
    hd = HDCLIPConfig(arch=clip["arch"], quick_gelu=clip["quick_gelu"],
                      checkpoint=str(args.weights), types=tuple(cfg["synth"]["types"]))
    path = checkpoints.import_daclip(args.weights, hd, args.out)
    print(f"model: {path} (model.safetensors, config.json, README.md)")
    if args.manifest:
        evaluate_into(path, args.manifest, Path(args.out) / "eval", "val", args.device)
    return 0
