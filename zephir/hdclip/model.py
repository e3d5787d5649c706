"""The HD-CLIP model (paper, section 3.1 and eq. 4).

Read top to bottom: loading CLIP through open_clip, the controller that feeds the degradation
branch into the frozen tower (DA-CLIP style), then :class:`HDCLIP`.
"""
from __future__ import annotations

import copy
from collections.abc import Collection
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

import open_clip
import torch
import torch.nn as nn
import torch.nn.functional as F

from zephir.degrade import levels as dlevels
from zephir.estimators import Estimate
from zephir.hdclip import losses
from zephir.hdclip.interp import interpolate_level
from zephir.hdclip.ordinal import bin_centres, composition_anchors
from zephir.schema import default

CONFIG_DIR = resources.files("zephir.hdclip") / "configs"
_registered = False


def tiny_architectures() -> list[str]:
    """Architectures shipped with zephir (JSON in ``zephir/hdclip/configs``)."""
    return sorted(p.name.removesuffix(".json") for p in CONFIG_DIR.iterdir()
                  if p.name.endswith(".json"))


def register_architectures() -> None:
    """Make the shipped tiny architectures known to open_clip (idempotent)."""
    global _registered
    if not _registered:
        open_clip.add_model_config(Path(str(CONFIG_DIR)))
        _registered = True


@dataclass
class HDCLIPConfig:
    """Architecture and ordinal-space settings (the ``hdclip.model`` config section and
    ``synth.types``); stored in every checkpoint. Defaults come from the config schema."""

    arch: str = default("hdclip.model.arch")              # open_clip architecture name
    checkpoint: str | None = default("hdclip.model.checkpoint")  # CLIP weights; None = random
    quick_gelu: bool = default("hdclip.model.quick_gelu")  # OpenAI weights need QuickGELU
    controller: bool = default("hdclip.model.controller")  # residuals into the frozen tower
    types: tuple[str, ...] = default("synth.types")        # the degradation types, in order
    gap: float = default("hdclip.model.gap")               # eq. 3: a bin every `gap` levels
    freq_base: float = default("hdclip.model.freq_base")   # eq. 1: the frequency base w
    pe_scale: float = default("hdclip.model.pe_scale")     # eq. 2 (choice): PE against word
    topk: int | None = default("hdclip.model.topk")        # eq. 6: bins used (None = all)
    tau: float = default("hdclip.model.tau")               # eq. 6 and 9 temperature

    @property
    def random_init(self) -> bool:
        return self.checkpoint is None

    def to_dict(self) -> dict:
        return asdict(self)


def load_clip(arch: str, checkpoint: str | None = None, *, quick_gelu: bool = False):
    """A CLIP model and its tokenizer through ``open_clip.create_model_and_transforms``.

    ``checkpoint`` is a local file (never a download); a missing file is an error that names
    it. With ``checkpoint=None`` the weights are random (tiny architectures, tests).
    """
    register_architectures()
    if arch not in open_clip.list_models():
        raise ValueError(f"unknown CLIP architecture {arch!r}; shipped tiny ones: "
                         f"{', '.join(tiny_architectures())}; open_clip knows e.g. ViT-B-32")
    if checkpoint is not None and not Path(checkpoint).is_file():
        raise FileNotFoundError(
            f"CLIP checkpoint {checkpoint} not found: expected the {arch} weights file there "
            f"(for ViT-B-32: OpenAI's ViT-B-32.pt with quick_gelu: true, or LAION's "
            f"open_clip_pytorch_model.bin). Download it where there is internet, e.g. "
            f"open_clip.create_model('{arch}', pretrained='openai'), and copy the file.")
    model, _, _ = open_clip.create_model_and_transforms(
        arch, pretrained=checkpoint, force_quick_gelu=quick_gelu, pretrained_text=False)
    return model, open_clip.get_tokenizer(arch)


# --------------------------------------------------------------------------- controller

def _blocks(visual: nn.Module) -> list[nn.Module]:
    """The residual stages of a vision tower where the controller adds its residuals."""
    if hasattr(visual, "transformer"):
        return list(visual.transformer.resblocks)
    if all(hasattr(visual, f"layer{i}") for i in range(1, 5)):
        return [getattr(visual, f"layer{i}") for i in range(1, 5)]
    raise TypeError(f"no controller support for vision tower {type(visual).__name__}")


def _zero_module(block: nn.Module) -> nn.Module:
    """Zero-initialised 1x1 map (Linear for tokens, Conv for feature maps)."""
    if hasattr(block, "ln_1"):
        width = block.ln_1.normalized_shape[0]
        layer: nn.Module = nn.Linear(width, width)
    else:
        ch = [m for m in block.modules() if isinstance(m, nn.BatchNorm2d)][-1].num_features
        layer = nn.Conv2d(ch, ch, 1)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def normalize(images: torch.Tensor) -> torch.Tensor:
    """[0, 1] RGB (B, 3, H, W) -> CLIP's normalised input."""
    mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(open_clip.OPENAI_DATASET_STD, device=images.device).view(1, 3, 1, 1)
    return (images - mean) / std


def tower_image_size(visual: nn.Module) -> int:
    """The square input size of an open_clip vision tower."""
    size = visual.image_size
    return int(size[0] if isinstance(size, (tuple, list)) else size)


# --------------------------------------------------------------------------- model

@dataclass
class HDCLIPOutput:
    semantic: torch.Tensor      # (B, d) unit semantic embedding of the (LQ) image
    degradation: torch.Tensor   # (B, d) degradation-branch embedding z
    embeddings: torch.Tensor    # (B, K, d) unit per-type embeddings e_k (eq. 4)
    confidence: torch.Tensor    # (B, K) confidence logits c_k (eq. 4)
    levels: torch.Tensor        # (B, K) predicted 0..100 level of every type (eq. 6)
    anchors: torch.Tensor       # (K, J, d) unit composition anchors at the bins (eq. 2-3)


class HDCLIP(nn.Module):
    """Frozen CLIP (semantic branch) + trainable degradation branch + four heads (eq. 4).

    The degradation branch is a copy of CLIP's vision tower. With ``controller`` it also feeds
    zero-initialised residuals into the frozen tower's stages, so that the semantic embedding of
    an LQ image can move toward its HQ content (DA-CLIP's controller).
    """

    def __init__(self, clip: nn.Module, tokenizer, cfg: HDCLIPConfig):
        super().__init__()
        self.cfg = cfg
        self.clip = clip.eval()
        for p in self.clip.parameters():
            p.requires_grad_(False)
        self.degradation_branch = copy.deepcopy(clip.visual).train()
        for p in self.degradation_branch.parameters():
            p.requires_grad_(True)
        d = self.embed_dim
        k = len(cfg.types)
        self.heads = nn.ModuleList(nn.Linear(d, d + 1) for _ in range(k))
        words = [dlevels.get(t).word for t in cfg.types]
        with torch.no_grad():
            word_emb = clip.encode_text(tokenizer(words)).float()
        self.register_buffer("words", word_emb)
        self.register_buffer("bins", bin_centres(cfg.gap))
        self.shift = nn.Parameter(torch.zeros(k, self.bins.numel(), d))  # delta (eq. 2)
        # Convolutional towers run about 20 % faster in channels-last layout (CPU and GPU).
        self.channels_last = not hasattr(clip.visual, "transformer")
        if self.channels_last:
            self.clip.visual.to(memory_format=torch.channels_last)
            self.degradation_branch.to(memory_format=torch.channels_last)
        self.zero_modules = nn.ModuleList()
        self._residuals: list[torch.Tensor] | None = None
        self._captured: list[torch.Tensor] = []
        if cfg.controller:
            frozen, trained = _blocks(self.clip.visual), _blocks(self.degradation_branch)
            self.zero_modules.extend(_zero_module(b) for b in frozen)
            for block in trained:
                block.register_forward_hook(self._capture)
            for i, block in enumerate(frozen):
                block.register_forward_hook(self._make_inject(i))

    # -- controller hooks
    def _capture(self, module, args, output):
        self._captured.append(output)

    def _make_inject(self, i: int):
        def inject(module, args, output):
            if self._residuals is None:
                return output
            return output + self.zero_modules[i](self._residuals[i])
        return inject

    def train(self, mode: bool = True):
        super().train(mode)
        self.clip.eval()  # the semantic branch stays frozen, BatchNorm statistics included
        return self

    @property
    def embed_dim(self) -> int:
        return int(self.clip.text_projection.shape[-1] if hasattr(self.clip, "text_projection")
                   and self.clip.text_projection is not None else self.clip.visual.output_dim)

    @property
    def image_size(self) -> int:
        return tower_image_size(self.clip.visual)

    def anchors(self) -> torch.Tensor:
        """Eq. 2-3: the (K, J, d) unit composition anchors at the bin centres."""
        return composition_anchors(self.words, self.bins, self.shift, base=self.cfg.freq_base,
                                   pe_scale=self.cfg.pe_scale)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        return normalize(images)

    def encode_semantic(self, x: torch.Tensor, residuals: list[torch.Tensor] | None = None):
        """Frozen CLIP image embedding, optionally steered by controller residuals (unit)."""
        self._residuals = residuals
        try:
            return F.normalize(self.clip.visual(x), dim=-1)
        finally:
            self._residuals = None

    def forward(self, images: torch.Tensor, *, semantic: bool = True) -> HDCLIPOutput:
        """``images``: (B, 3, S, S) RGB in [0, 1] with S the tower's image size."""
        assert images.shape[-2:] == (self.image_size, self.image_size), images.shape
        x = self.normalize(images)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        self._captured = []
        z = self.degradation_branch(x)
        residuals, self._captured = self._captured, []
        h = torch.stack([head(z) for head in self.heads], dim=1)         # (B, K, d + 1)
        emb, conf = F.normalize(h[..., :-1], dim=-1), h[..., -1]
        if semantic:
            sem = self.encode_semantic(x, residuals if self.cfg.controller else None)
        else:
            sem = torch.zeros_like(z)
        anchors = self.anchors()  # inside forward, so that data parallelism sees the shift
        return HDCLIPOutput(semantic=sem, degradation=z, embeddings=emb, confidence=conf,
                            levels=self.levels(emb, anchors), anchors=anchors)

    def levels(self, embeddings: torch.Tensor, anchors: torch.Tensor | None = None
               ) -> torch.Tensor:
        """Eq. 6: the predicted 0..100 level of every type from (B, K, d) embeddings."""
        anchors = self.anchors() if anchors is None else anchors
        sim = torch.einsum("bkd,kjd->bkj", embeddings, anchors)
        return interpolate_level(sim, self.bins, topk=self.cfg.topk, tau=self.cfg.tau)

    # -- the estimator interface (zephir.estimators.Estimator)
    def loss_terms(self, out: HDCLIPOutput, present: torch.Tensor, level: torch.Tensor, *,
                   terms: Collection[str], targets: torch.Tensor | None = None
                   ) -> dict[str, torch.Tensor]:
        """The unweighted terms of eq. 11 named in ``terms``: ``conf`` (eq. 5), ``level``
        (eq. 7), ``slerp`` (eq. 9) and, given the semantic ``targets``, ``semantic`` and
        ``clip``. The trainer weights them with the lambdas of eq. 11.

        ``level`` and ``slerp`` are means over the present (sample, type) pairs of the batch.
        """
        out_terms = {"conf": losses.confidence_loss(out.confidence, present)}
        if "level" in terms:
            out_terms["level"] = losses.level_loss(out.levels, level, present)
        if "slerp" in terms:
            b, k = present.nonzero(as_tuple=True)
            out_terms["slerp"] = losses.slerp_loss(out.embeddings[b, k], out.anchors[k],
                                                   level[b, k], self.bins, tau=self.cfg.tau)
        if targets is not None and "semantic" in terms:
            out_terms["semantic"] = losses.semantic_loss(out.semantic, targets)
        if targets is not None and "clip" in terms:
            out_terms["clip"] = losses.clip_loss(out.semantic, targets)
        return out_terms

    @torch.no_grad()
    def estimate_batch(self, images: torch.Tensor) -> Estimate:
        """Presence scores, levels, per-type embeddings and anchors of [0, 1] images."""
        out = self(images, semantic=False)
        return Estimate(scores=torch.sigmoid(out.confidence), levels=out.levels,
                        embeddings=out.embeddings, anchors=out.anchors)


def build(cfg: HDCLIPConfig) -> HDCLIP:
    """HD-CLIP from a config: CLIP through open_clip (local weights or random init)."""
    clip, tokenizer = load_clip(cfg.arch, cfg.checkpoint, quick_gelu=cfg.quick_gelu)
    return HDCLIP(clip, tokenizer, cfg)
