"""HD-CLIP cost against plain CLIP (paper, table 6: 20.1 ms vs 7.87 ms, 2.55x; goal <= 2.0x).

Measured in one run on the same device, architecture and batch:
  * embedding latency: HD-CLIP forward (degradation branch, heads, semantic branch with the
    controller's residuals) against CLIP's own ``encode_image``; prints the ratio;
  * training throughput (samples/s) of one optimiser step on random data, per architecture.
Random-init weights (timing does not depend on the weights).

    python benchmarks/hdclip.py [--device cuda] [--batch 32] [--arch zephir-tiny-rn ViT-B-32]
"""
from __future__ import annotations

import argparse
import statistics

import torch
from timing import timings

from zephir.hdclip import losses
from zephir.hdclip.model import HDCLIPConfig, build


def timed(fn, device, repeat: int) -> float:
    """Median seconds of ``fn()`` over ``repeat`` runs after two warm-up calls."""
    return statistics.median(timings({"fn": fn}, device=device, repeat=repeat)["fn"])


def measure(arch: str, dev: torch.device, batch: int, repeat: int):
    """Seconds per batch: CLIP encode, HD-CLIP forward, one HD-CLIP training step."""
    model = build(HDCLIPConfig(arch=arch, controller=True)).to(dev)
    size = model.image_size
    x = torch.rand(batch, 3, size, size, device=dev)
    ctx = (torch.autocast("cuda", dtype=torch.bfloat16) if dev.type == "cuda"
           else torch.autocast("cpu", enabled=False))
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--arch", nargs="+", default=["zephir-tiny-rn", "zephir-tiny-vit",
                                                  "ViT-B-32"])
    args = ap.parse_args()
    dev = torch.device(args.device)
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
