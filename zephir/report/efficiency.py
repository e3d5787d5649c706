"""Table 6 (paper, section 8.4): measuring encoder efficiency, from the architectures alone.

This module measures; :func:`zephir.report.tables.table6` turns :func:`measure`'s rows into the
table and :func:`zephir.report.captions.table6` states its facts.

Parameters, size and context dimension need no weights: every encoder is built from its
architecture config with random init, on PyTorch's ``meta`` device (shapes only, no memory, no
initialisation), so that ``zephir table table6 --config config/paper.yaml`` counts ViT-L/14 in
about a second and offline. Inference time is measured on real (random-init) weights on the
configured device: batch 1, ``warmup`` untimed calls, then the median of ``repeats`` timed ones.

The three encoders are the paper's: CLIP (the whole open_clip model, image and text towers),
DA-CLIP (:class:`zephir.baselines.daclip_style.DACLIPStyle`: CLIP, a trainable copy of its
vision tower and one zero ``Linear(width, width)`` per block) and HD-CLIP
(:class:`zephir.hdclip.model.HDCLIP`: CLIP, the degradation branch, the controller's zero
modules, K heads ``Linear(d, d + 1)`` and the eq. 2 shift of shape (K, J, d)). A config whose
architectures are not the paper's (the embedded default's tiny towers) gets its own rows beside
the paper's architectures, and only its own rows are timed.

Size is the parameters' bytes in float32 over 2^20 (MiB). The paper's "MB" are these MiB:
151.28 M x 4 B / 2^20 = 577.08, its CLIP size.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, replace

import torch
from torch import nn

from zephir.config import daclip_model
from zephir.hdclip.model import HDCLIPConfig, register_architectures, tower_image_size

#: The paper's encoders (table 6): label, method, architecture, QuickGELU (OpenAI's ViT-B/32
#: weights need it, LAION's ViT-L/14 for DA-CLIP does not).
PAPER_ENCODERS = (("CLIP", "clip", "ViT-B-32", True),
                  ("DA-CLIP", "daclip_style", "ViT-L-14", False),
                  ("HD-CLIP", "hdclip", "ViT-B-32", True))
#: The paper's inference times (ms), on its GPU.
PAPER_MS = {"CLIP": 7.868, "DA-CLIP": 32.938, "HD-CLIP": 20.104}


@dataclass(frozen=True)
class Encoder:
    """One column of the paper's table 6 (a row here): ``method`` is "clip" (plain CLIP),
    "daclip_style" or "hdclip"; ``cfg`` its architecture (checkpoint ignored: random init)."""

    label: str
    method: str
    cfg: HDCLIPConfig
    timed: bool


def encoders(config: dict) -> list[Encoder]:
    """The paper's three encoders, then the config's own where its architectures differ (only
    the config's own are timed; for the paper config they are the paper's)."""
    model = config["hdclip"]["model"]
    types = tuple(config["synth"]["types"])
    base = HDCLIPConfig(arch=model["arch"], checkpoint=None, quick_gelu=model["quick_gelu"],
                        controller=model["controller"], types=types, gap=model["gap"])
    da = daclip_model(config)
    own = {"clip": base, "hdclip": base,
           "daclip_style": replace(base, arch=da["arch"], quick_gelu=da["quick_gelu"])}
    paper = {m: replace(base, arch=arch, quick_gelu=q, controller=True, gap=5.0)
             for _, m, arch, q in PAPER_ENCODERS}
    out, extra = [], []
    for label, method, _, _ in PAPER_ENCODERS:
        mine, theirs = own[method], paper[method]
        same = (mine.arch, mine.controller) == (theirs.arch, True)
        out.append(Encoder(label, method, mine if same else theirs, same))
        if not same:
            extra.append(Encoder(f"{label} ({mine.arch})", method, mine, True))
    return out + extra


def _tokens_on(tokenizer, device):
    return lambda texts: tokenizer(texts).to(device)


def build(method: str, cfg: HDCLIPConfig, device: str | torch.device = "cpu") -> nn.Module:
    """The encoder ``method`` of architecture ``cfg`` with random init, on ``device``
    ("meta": shapes only)."""
    import open_clip

    from zephir.baselines.daclip_style import DACLIPStyle
    from zephir.hdclip.model import HDCLIP

    register_architectures()
    with torch.device(device):
        clip = open_clip.create_model(cfg.arch, device=device, force_quick_gelu=cfg.quick_gelu,
                                      pretrained_text=False)
    if method == "clip":
        return clip.eval()
    tokenizer = _tokens_on(open_clip.get_tokenizer(cfg.arch), device)
    # the wrapper's own small parts (heads, shift, zero modules) are made on the CPU
    model = {"hdclip": HDCLIP, "daclip_style": DACLIPStyle}[method](clip, tokenizer, cfg)
    return model if str(device) == "meta" else model.to(device).eval()


def parameters(model: nn.Module) -> int:
    """Every parameter, trainable or frozen (the paper counts the frozen CLIP in)."""
    return sum(p.numel() for p in model.parameters())


def context_dim(model: nn.Module) -> int:
    """The dimension of the embeddings the encoder hands on (CLIP's joint space)."""
    if not isinstance(model.__class__.__dict__.get("embed_dim"), property):  # plain CLIP
        return int(model.text_projection.shape[-1])
    return int(model.embed_dim)


def components(model: nn.Module) -> dict[str, int]:
    """Parameters per top-level part (``clip``, ``degradation_branch``, ``heads``, ``shift``,
    ...): where the counts of two encoders differ."""
    out: dict[str, int] = {}
    for name, p in model.named_parameters():
        part = name.split(".")[0]
        out[part] = out.get(part, 0) + p.numel()
    return out


def _forward(method: str, model: nn.Module):
    if method == "clip":
        return lambda x: model.encode_image(x)
    # DA-CLIP's content branch exists only with its controller (a ViT tower)
    semantic = method == "hdclip" or model.content
    return lambda x: model(x, semantic=semantic)


def _image_size(method: str, model: nn.Module) -> int:
    visual = {"clip": lambda: model.visual, "hdclip": lambda: model.clip.visual,
              "daclip_style": lambda: model.tower}[method]()
    return tower_image_size(visual)


@torch.no_grad()
def time_ms(method: str, model: nn.Module, device: str, warmup: int, repeats: int) -> float:
    """Median wall time (ms) of one batch-1 forward pass, after ``warmup`` untimed ones."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f"report.table6: repeats {repeats} must be >= 1, warmup {warmup} >= 0")
    run = _forward(method, model)
    size = _image_size(method, model)
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device)
    sync = torch.cuda.synchronize if str(device).startswith("cuda") else (lambda: None)
    for _ in range(warmup):
        run(x)
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run(x)
        sync()
        times.append((time.perf_counter() - t0) * 1000.0)
    return statistics.median(times)


def device_name(device: str) -> str:
    """The timing device in words: the GPU's name, or the CPU and its thread count."""
    if str(device).startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    import platform

    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} " \
           "torch thread(s))"


def measure(config: dict) -> tuple[list[dict], dict]:
    """Table 6's rows for ``config`` (one per encoder) and what the caption states."""
    t6 = config.get("report", {}).get("table6", {})
    device, warmup, repeats = t6.get("device", "cpu"), t6.get("warmup", 3), t6.get("repeats", 10)
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"report.table6.device is {device!r}, and torch sees no CUDA device")
    rows, parts, bins = [], {}, None
    for e in encoders(config):
        if e.label == "HD-CLIP":
            bins = round(100 / float(e.cfg.gap)) + 1
        meta = build(e.method, e.cfg, "meta")
        n = parameters(meta)
        parts[e.label] = components(meta)
        row = {"Model": e.label, "Encoder": e.cfg.arch, "Params (M)": n / 1e6,
               "Size (MiB)": n * 4 / 2 ** 20, "Context dim.": context_dim(meta),
               "Inference Time (ms)": None,
               "Paper time, GPU (ms)": PAPER_MS.get(e.label)}
        del meta
        if e.timed:
            model = build(e.method, e.cfg, device)
            row["Inference Time (ms)"] = time_ms(e.method, model, device, warmup, repeats)
            del model
        rows.append(row)
    facts = {"device": device_name(device), "warmup": warmup, "repeats": repeats,
             "components": parts, "types": len(config["synth"]["types"]),
             "bins": bins}
    return rows, facts
