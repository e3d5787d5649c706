"""Cost of one CFPG denoising step against one plain-CFG step (eq. 12-15), per batch size.

CFPG makes four predictions per step. ``CFPGDenoiser`` runs each network once on the rows
``[t-; t+; h-; h+]`` (with ``--controlnet``, a ControlNet conditioned on the same rows first),
so a step costs one call on twice the CFG batch: about 2.0x on a CPU, whose time grows with the
rows, and less where a device is not saturated by the CFG batch alone (a GPU at batch 1). The
old way, two separate passes (text rows, then HD rows), is timed beside it, and so is the
guidance arithmetic (eq. 12-14 in float64), whose share of the CFPG step should stay under 1 %.

All steps of one batch size are measured in one run on the same random-init SD-layout UNet
(and ControlNet), latents and embeddings, alternating the calls so that drift in the machine's
load hits all of them; each figure is the median of ``--repeat`` rounds after warm-up, and each
ratio the median of per-round ratios against the plain CFG step of the same round.

    python benchmarks/guidance.py [--device cuda] [--batch 1 4] [--controlnet] [--latent 64]
"""
from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable
from types import SimpleNamespace

import torch
from diffusers import ControlNetModel, UNet2DConditionModel
from diffusers.utils import logging as diffusers_logging
from timing import timings

from zephir.guidance import cfg, rectify, wrap_pipeline


def tiny_unet(channels: list[int], *, width: int, heads: int) -> UNet2DConditionModel:
    """SD 1.5's layout (attention in every level but the last), random weights."""
    n = len(channels)
    return UNet2DConditionModel(
        block_out_channels=tuple(channels), layers_per_block=2, norm_num_groups=8,
        in_channels=4, out_channels=4, cross_attention_dim=width,
        attention_head_dim=heads,  # diffusers reads it as the number of heads
        down_block_types=("CrossAttnDownBlock2D",) * (n - 1) + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (n - 1))


def steps(net: SimpleNamespace, *, batch: int, latent: int, width: int, scale: float,
          device: torch.device, dtype: torch.dtype) -> dict[str, Callable[[], torch.Tensor]]:
    """The timed calls for ``batch`` images: plain CFG, CFPG, CFPG as two passes, eq. 12-15."""
    g = torch.Generator(device=device).manual_seed(batch)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g, device=device, dtype=dtype)

    sample = torch.cat([randn(batch, 4, latent, latent)] * 2)
    text, hd = randn(2 * batch, 77, width), randn(2, 77, width)
    hd_rows = hd.repeat_interleave(batch, dim=0)
    cond = torch.rand(2 * batch, 3, 8 * latent, 8 * latent, generator=g, device=device,
                      dtype=dtype) if net.controlnet is not None else None
    t = torch.tensor(500, device=device)

    def predict(unet: torch.nn.Module, hidden: torch.Tensor) -> torch.Tensor:
        kw = {}
        if net.controlnet is not None:  # as the ControlNet pipelines call it
            down, mid = net.controlnet(sample, t, encoder_hidden_states=hidden,
                                       controlnet_cond=cond, return_dict=False)
            kw = {"down_block_additional_residuals": down, "mid_block_additional_residual": mid}
        return unet(sample, t, encoder_hidden_states=hidden, return_dict=False, **kw)[0]

    def plain() -> torch.Tensor:
        return cfg(*predict(net.unet, text).chunk(2), scale)

    def cfpg() -> torch.Tensor:
        with wrap_pipeline(net, hd_encoder_hidden_states=hd) as denoiser:
            return cfg(*predict(denoiser, text).chunk(2), scale)

    def two_passes() -> torch.Tensor:
        eps = rectify(predict(net.unet, text), predict(net.unet, hd_rows))
        return cfg(*eps.chunk(2), scale)

    eps_text, eps_hd = predict(net.unet, text), predict(net.unet, hd_rows)

    def arithmetic() -> torch.Tensor:
        return cfg(*rectify(eps_text, eps_hd).chunk(2), scale)

    return {"cfg": plain, "cfpg": cfpg, "two": two_passes, "arith": arithmetic}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default=None,
                    help="network dtype (default float16 on cuda, float32 on cpu)")
    ap.add_argument("--latent", type=int, default=64, help="latent side (64: a 512 px image)")
    ap.add_argument("--channels", type=int, nargs="+", default=[32, 64])
    ap.add_argument("--width", type=int, default=768, help="cross-attention width (SD 1.5)")
    ap.add_argument("--heads", type=int, default=8, help="attention heads (SD 1.5)")
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 4],
                    help="images per step, one table each (CFG doubles the rows)")
    ap.add_argument("--controlnet", action="store_true",
                    help="a ControlNet of the UNet's layout before the UNet in every pass")
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
    controlnet = None
    if args.controlnet:
        controlnet = ControlNetModel.from_unet(unet).to(dev, dtype).eval()
    net = SimpleNamespace(unet=unet, controlnet=controlnet)
    params = sum(p.numel() for m in (unet, controlnet) if m is not None
                 for p in m.parameters()) / 1e6
    print(f"device {dev} ({torch.get_num_threads()} threads)" if dev.type == "cpu"
          else f"device {dev} ({torch.cuda.get_device_name(dev)})")
    print(f"random-init UNet{' + ControlNet' if controlnet is not None else ''} "
          f"{args.channels} channels, {args.heads} heads, {params:.1f} M parameters, {dtype}; "
          f"latents Bx4x{args.latent}x{args.latent}; {args.repeat} interleaved rounds after "
          "warm-up")
    calls = "ControlNet + UNet" if controlnet is not None else "UNet"
    for batch in args.batch:
        with torch.inference_mode():
            fns = steps(net, batch=batch, latent=args.latent, width=args.width, scale=7.5,
                        device=dev, dtype=dtype)
            times = timings(fns, device=dev, repeat=args.repeat)
        sec = {name: statistics.median(ts) for name, ts in times.items()}

        def ratio(name: str, base: str = "cfg") -> float:
            # per-round ratios: the calls of one round see the same machine load
            return statistics.median(b / a for a, b in zip(times[base], times[name]))

        print(f"\nbatch {batch} (CFG rows {2 * batch}, CFPG rows {4 * batch}); a call: {calls}")
        print(f"{'step':34s}{'median ms':>10s}{'vs CFG':>9s}")
        rows = [("plain CFG (1 call + eq. 15)", "cfg"),
                ("CFPG (1 batched call + eq. 12-15)", "cfpg"),
                ("CFPG as 2 passes + eq. 12-15", "two"),
                ("  eq. 12-15 arithmetic alone", "arith")]
        for label, name in rows:
            print(f"{label:34s}{1e3 * sec[name]:10.3f}{ratio(name):8.3f}x")
        print(f"batch {batch}: CFPG/CFG {ratio('cfpg'):.3f}x (two passes {ratio('two'):.3f}x); "
              f"arithmetic {100 * ratio('arith', 'cfpg'):.3f} % of the CFPG step")


if __name__ == "__main__":
    main()
