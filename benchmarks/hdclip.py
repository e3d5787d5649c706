"""HD-CLIP cost against plain CLIP (paper, table 6: 20.1 ms vs 7.87 ms, 2.55x; goal <= 2.0x),
and the trainer's throughput against a bare training step (goal >= 0.85).

Measured in one run on the same device, architecture and batch:
  * embedding latency: HD-CLIP forward (degradation branch, heads, semantic branch with the
    controller's residuals) against CLIP's own ``encode_image``; prints the ratio;
  * training throughput (samples/s) of one optimiser step on random data, per architecture;
  * ``--trainer``: ``zephir.training.train`` on a stand-in labelled set (random crops of the
    bundled photos written as PNG, the model's input size, random labels) against the bare
    step of the same model, batch, loss terms, clipping and schedule on one batch already on
    the device: the ratio is what the data pipeline, flips and logging cost. Run twice: the
    set decoded in memory (``cache_images``) and read from disk by ``--workers`` loader
    processes (the paper config's way: its crops are not cached).
Random-init weights (timing does not depend on the weights).

    python benchmarks/hdclip.py [--device cuda] [--batch 32] [--arch zephir-tiny-rn ViT-B-32]
    python benchmarks/hdclip.py --trainer [--arch zephir-tiny-rn] [--batch 128] [--workers 8]
"""
from __future__ import annotations

import argparse
import csv
import statistics
import tempfile
from pathlib import Path

import numpy as np
import torch
from timing import timings

from zephir import datasets as zdata
from zephir import io as zio
from zephir.hdclip import losses
from zephir.hdclip.model import HDCLIPConfig, build
from zephir.training import loop
from zephir.training.loop import TrainConfig


def timed(fn, device, repeat: int) -> float:
    """Median seconds of ``fn()`` over ``repeat`` runs after two warm-up calls."""
    return statistics.median(timings({"fn": fn}, device=device, repeat=repeat)["fn"])


def _autocast(dev: torch.device):
    return (torch.autocast("cuda", dtype=torch.bfloat16) if dev.type == "cuda"
            else torch.autocast("cpu", enabled=False))


def measure(arch: str, dev: torch.device, batch: int, repeat: int):
    """Seconds per batch: CLIP encode, HD-CLIP forward, one HD-CLIP training step."""
    model = build(HDCLIPConfig(arch=arch, controller=True)).to(dev)
    size = model.image_size
    x = torch.rand(batch, 3, size, size, device=dev)
    ctx = _autocast(dev)
    model.eval()
    with torch.no_grad(), ctx:
        t_clip = timed(lambda: model.clip.encode_image(model.normalize(x)), dev, repeat)
        t_hd = timed(lambda: model(x).levels, dev, repeat)
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    present = torch.zeros(batch, 4, device=dev)
    present[:, 0] = 1
    level = torch.rand(batch, 4, device=dev) * 100

    def step():
        with ctx:
            out = model(x, semantic=False)
            loss = (losses.confidence_loss(out.confidence, present)
                    + losses.level_loss(out.levels, level, present))
        opt.zero_grad()
        loss.backward()
        opt.step()

    return t_clip, t_hd, timed(step, dev, repeat)


# --------------------------------------------------------------------------- trainer

TYPES = ("blur", "noise", "jpeg", "downsample")


def standin_set(folder: Path, n: int, size: int, seed: int = 0) -> Path:
    """``n`` PNG crops of the bundled photos (+ a few validation rows) and their manifest with
    random single-type labels; returns the manifest."""
    r = np.random.default_rng(seed)
    photos = [zdata.embedded_image(name) for name in ("astronaut", "chelsea", "coffee",
                                                      "retina", "motorcycle_left", "hubble_deep_field")]
    rows = []
    for i in range(n + 8):
        img = photos[i % len(photos)]
        y = int(r.integers(0, img.shape[0] - size + 1))
        x = int(r.integers(0, img.shape[1] - size + 1))
        path = Path("images") / f"{i:05d}.png"
        zio.write_png(folder / path, img[y:y + size, x:x + size])
        kind = TYPES[i % 4]
        row = {"path": path.as_posix(), "source": f"photo{i % len(photos)}.png",
               "split": "train" if i < n else "val", "types": kind, "crop_size": size}
        for t in TYPES:
            row[f"{t}_level"] = f"{r.uniform(0, 100):.2f}" if t == kind else ""
        rows.append(row)
    with (folder / "manifest.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return folder / "manifest.csv"


def bare_step_rate(arch: str, dev: torch.device, cfg: TrainConfig, repeat: int) -> float:
    """Samples/s of the trainer's step without its data: same model, terms, weighting, clipping,
    optimiser and schedule, on one batch already on the device."""
    model_cfg = HDCLIPConfig(arch=arch)
    model = build(model_cfg).to(dev).train()
    size, b = model.image_size, cfg.batch_size
    x = torch.rand(b, 3, size, size, device=dev)
    present = torch.nn.functional.one_hot(torch.arange(b, device=dev) % 4, 4).float()
    level = torch.rand(b, 4, device=dev) * 100 * present
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    wanted = cfg.terms(False)
    one = torch.ones((), device=dev)

    def step():
        with _autocast(dev):
            out = model(x, semantic=False)
            terms = loop.weighted(model.loss_terms(out, present, level, terms=wanted), cfg, one)
            loss = sum(terms.values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        sched.step()

    return b / timed(step, dev, repeat)


def trainer_rate(manifest: Path, out: Path, arch: str, dev: torch.device, cfg: TrainConfig
                 ) -> float:
    """Samples/s of ``train()`` between its log rows 51 and 151 (the log is read back from the
    device every 50 steps, so both rows are stamped right after a synchronisation); on a short
    CPU run, between the first third and the end."""
    loop.train(manifest, out, HDCLIPConfig(arch=arch), cfg, device=str(dev), progress=False)
    with (out / loop.LOG).open(newline="") as fh:
        seconds = [float(r["seconds"]) for r in csv.DictReader(fh)]
    a, b = (50, 150) if cfg.steps >= 160 else (cfg.steps // 3, cfg.steps - 1)
    return (b - a) * cfg.batch_size / (seconds[b] - seconds[a])


def trainer_benchmark(args, dev: torch.device) -> None:
    steps = args.steps or (160 if dev.type == "cuda" else 30)
    print(f"trainer vs bare step: device {dev}, batch {args.batch}, {steps} steps; "
          f"random-init weights, stand-in crops of the bundled photos")
    print(f"{'arch':16s}{'data':>22s}{'bare samples/s':>16s}{'trainer samples/s':>19s}"
          f"{'ratio':>8s}")
    for arch in args.arch:
        size = build(HDCLIPConfig(arch=arch)).image_size
        with tempfile.TemporaryDirectory() as tmp:
            manifest = standin_set(Path(tmp) / "set", args.samples, size)
            for cached in (True, False):
                cfg = TrainConfig(steps=steps, batch_size=args.batch, warmup=10,
                                  eval_every=10 ** 9, checkpoint_every=10 ** 9,
                                  cache_images=cached, loader_workers=0 if cached else
                                  args.workers)
                torch.use_deterministic_algorithms(False)  # as a fresh process has it
                bare = bare_step_rate(arch, dev, cfg, args.repeat)
                rate = trainer_rate(manifest, Path(tmp) / f"run{cached}", arch, dev, cfg)
                data = "cached" if cached else f"PNG, {args.workers} workers"
                print(f"{arch:16s}{data:>22s}{bare:16.1f}{rate:19.1f}{rate / bare:8.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--arch", nargs="+", default=None,
                    help="default: zephir-tiny-rn zephir-tiny-vit ViT-B-32 "
                         "(--trainer: zephir-tiny-rn)")
    ap.add_argument("--trainer", action="store_true",
                    help="the trainer's samples/s against the bare step's")
    ap.add_argument("--steps", type=int, help="--trainer: steps (default 160 GPU, 30 CPU)")
    ap.add_argument("--samples", type=int, default=512, help="--trainer: stand-in set size")
    ap.add_argument("--workers", type=int, default=2, help="--trainer: loader processes")
    args = ap.parse_args()
    dev = torch.device(args.device)
    if args.trainer:
        args.arch = args.arch or ["zephir-tiny-rn"]
        trainer_benchmark(args, dev)
        return
    args.arch = args.arch or ["zephir-tiny-rn", "zephir-tiny-vit", "ViT-B-32"]
    print(f"device {dev}, batch {args.batch}, median of {args.repeat}; random-init weights")
    print(f"{'arch':18s}{'CLIP ms/img':>12s}{'HD-CLIP ms/img':>16s}{'ratio':>8s}"
          f"{'train samples/s':>18s}")
    for arch in args.arch:
        t_clip, t_hd, t_train = measure(arch, dev, args.batch, args.repeat)
        n = args.batch
        print(f"{arch:18s}{1e3 * t_clip / n:12.3f}{1e3 * t_hd / n:16.3f}{t_hd / t_clip:8.2f}"
              f"{n / t_train:18.1f}")
        if dev.type == "cuda":
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
