"""Cost of one CFPG denoising step against one plain-CFG step (eq. 12-15; goal <= 2.05x).

CFPG runs the UNet twice per step (the text batch and the HD-CLIP batch, ``CFPGDenoiser``), so
the ideal ratio is 2.0x; what it adds beyond that is the guidance arithmetic (eq. 12-14 in
float64), whose share of the CFPG step should stay under 1 %. Both steps are measured in one run
on the same random-init SD-layout UNet, latents and embeddings, alternating CFG and CFPG calls so
that drift in the machine's load hits both; each figure is the median of ``--repeat`` calls after
warm-up.

    python benchmarks/guidance.py [--device cuda] [--latent 64] [--channels 32 64] [--repeat 20]
"""
from __future__ import annotations

import argparse
import statistics

import torch
from diffusers import UNet2DConditionModel
from timing import timings
from diffusers.utils import logging as diffusers_logging

from zephir.guidance import CFPGDenoiser, cfg, rectify


def tiny_unet(channels: list[int], *, width: int, heads: int) -> UNet2DConditionModel:
    """SD 1.5's layout (attention in every level but the last), random weights."""
    n = len(channels)
    return UNet2DConditionModel(
        block_out_channels=tuple(channels), layers_per_block=2, norm_num_groups=8,
        in_channels=4, out_channels=4, cross_attention_dim=width,
        attention_head_dim=heads,  # diffusers reads it as the number of heads
        down_block_types=("CrossAttnDownBlock2D",) * (n - 1) + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (n - 1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default=None,
                    help="UNet dtype (default float16 on cuda, float32 on cpu)")
    ap.add_argument("--latent", type=int, default=64, help="latent side (64: a 512 px image)")
    ap.add_argument("--channels", type=int, nargs="+", default=[32, 64])
    ap.add_argument("--width", type=int, default=768, help="cross-attention width (SD 1.5)")
    ap.add_argument("--heads", type=int, default=8, help="attention heads (SD 1.5)")
    ap.add_argument("--batch", type=int, default=1, help="images per step (CFG doubles it)")
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    args = ap.parse_args()
    diffusers_logging.set_verbosity_error()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    dtype = getattr(torch, args.dtype or ("float16" if dev.type == "cuda" else "float32"))

    torch.manual_seed(0)
    unet = tiny_unet(args.channels, width=args.width, heads=args.heads).to(dev, dtype).eval()
    g = torch.Generator(device=dev).manual_seed(0)
    latents = torch.randn(args.batch, 4, args.latent, args.latent, generator=g, device=dev,
                          dtype=dtype)
    text = torch.randn(2 * args.batch, 77, args.width, generator=g, device=dev, dtype=dtype)
    hd = torch.randn(2, 77, args.width, generator=g, device=dev, dtype=dtype)
    denoiser = CFPGDenoiser(unet, hd_encoder_hidden_states=hd)
    t, scale = torch.tensor(500, device=dev), 7.5
    sample = torch.cat([latents] * 2)
    hd_rows = hd.repeat_interleave(args.batch, dim=0)

    def step(model: torch.nn.Module) -> torch.Tensor:
        neg, pos = model(sample, t, text, return_dict=False)[0].chunk(2)
        return cfg(neg, pos, scale)

    with torch.inference_mode():
        eps_text = unet(sample, t, text).sample
        eps_hd = unet(sample, t, hd_rows).sample

        def arithmetic() -> torch.Tensor:
            neg, pos = rectify(eps_text, eps_hd, w_par=denoiser.w_par,
                               w_orth=denoiser.w_orth).chunk(2)
            return cfg(neg, pos, scale)

        times = timings({"cfg": lambda: step(unet), "cfpg": lambda: step(denoiser),
                         "arith": arithmetic}, device=dev, repeat=args.repeat)
    sec = {name: statistics.median(ts) for name, ts in times.items()}
    # per-round ratios: the two calls of one round see the same machine load
    ratio = statistics.median(b / a for a, b in zip(times["cfg"], times["cfpg"]))
    share = statistics.median(c / b for b, c in zip(times["cfpg"], times["arith"]))

    params = sum(p.numel() for p in unet.parameters()) / 1e6
    print(f"device {dev} ({torch.get_num_threads()} threads)" if dev.type == "cpu"
          else f"device {dev} ({torch.cuda.get_device_name(dev)})")
    print(f"UNet {args.channels} channels, {args.heads} heads, {params:.1f} M parameters, "
          f"{dtype}; latents {args.batch}x4x{args.latent}x{args.latent}, CFG batch "
          f"{2 * args.batch}; {args.repeat} interleaved rounds after warm-up")
    print(f"{'step':34s}{'median ms':>10s}{'vs CFG':>9s}")
    rows = [("plain CFG (1 UNet call + eq. 15)", sec["cfg"]),
            ("CFPG (2 UNet calls + eq. 12-15)", sec["cfpg"]),
            ("  of which eq. 12-15 arithmetic", sec["arith"])]
    for name, s in rows:
        print(f"{name:34s}{1e3 * s:10.3f}{s / sec['cfg']:8.3f}x")
    print(f"median per-round ratio CFPG/CFG {ratio:.3f}x (ideal 2.0x, goal <= 2.05x: "
          f"{'met' if ratio <= 2.05 else 'missed'}); arithmetic share {100 * share:.3f} % "
          f"(goal < 1 %: {'met' if share < 0.01 else 'missed'})")


if __name__ == "__main__":
    main()
