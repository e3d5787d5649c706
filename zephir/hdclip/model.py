"""The HD-CLIP model (paper, section 3.1 and eq. 4).

Read top to bottom: loading CLIP through open_clip, the controller that feeds the degradation
branch into the frozen tower (DA-CLIP style), then :class:`HDCLIP`. The math after the towers
(eq. 2-11) runs in float32, also under autocast (:func:`zephir.hdclip.interp.float32_math`).
"""
from __future__ import annotations

import copy
from collections.abc import Collection
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import open_clip
import torch
import torch.nn.functional as F
from torch import nn

from zephir.estimator_interface import Estimate, SemanticTargets
from zephir.hdclip import losses
from zephir.hdclip.config import HDCLIPConfig
from zephir.hdclip.interp import float32_math, interpolate_level
from zephir.hdclip.ordinal import bin_centres, composition_anchors

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


#: The word whose CLIP text embedding anchors each degradation type (eq. 2).
WORDS = {"blur": "Blur", "noise": "Noisy", "jpeg": "JPEG", "downsample": "Downsample"}


def type_word(kind: str) -> str:
    """The anchor word of degradation type ``kind`` (eq. 2); a clear error for an unknown one."""
    if kind not in WORDS:
        raise ValueError(f"unknown degradation type {kind!r}; expected one of "
                         f"{', '.join(WORDS)}")
    return WORDS[kind]


def load_clip(arch: str, checkpoint: str | None = None, *, quick_gelu: bool = False):
    """A CLIP model and its tokenizer through ``open_clip.create_model_and_transforms``.

    ``checkpoint``: None = random weights (tiny architectures, tests); an existing file = local
    weights; otherwise an open_clip pretrained tag of ``arch``
    (``open_clip.list_pretrained_tags_by_model``, e.g. "openai" for ViT-B-32), passed on as
    ``pretrained=``: open_clip downloads those weights into its cache on first use. Anything
    else is an error that names the file and lists the tags; a tag whose weights were trained
    with the other activation than ``quick_gelu`` (with the architecture's own setting) is
    an error too, since open_clip would only warn and the features would be wrong.
    """
    register_architectures()
    if arch not in open_clip.list_models():
        raise ValueError(f"unknown CLIP architecture {arch!r}; shipped tiny ones: "
                         f"{', '.join(tiny_architectures())}; open_clip knows e.g. ViT-B-32")
    tags = open_clip.list_pretrained_tags_by_model(arch)
    if checkpoint is not None and not Path(checkpoint).is_file() and checkpoint not in tags:
        known = (f"open_clip's pretrained tags for {arch}: {', '.join(tags)}" if tags else
                 f"open_clip has no pretrained tag for {arch}")
        raise FileNotFoundError(
            f"CLIP checkpoint {checkpoint} not found: expected the {arch} weights file there "
            f"(for ViT-B-32: OpenAI's ViT-B-32.pt with quick_gelu: true, or LAION's "
            f"open_clip_pytorch_model.bin), or a pretrained tag that open_clip downloads "
            f"({known}). Without internet, download the file where there is, e.g. "
            f"open_clip.create_model('{arch}', pretrained='openai'), and copy it.")
    if checkpoint in tags and not Path(checkpoint).is_file():
        trained = bool(open_clip.get_pretrained_cfg(arch, checkpoint).get("quick_gelu", False))
        built = quick_gelu or bool(open_clip.get_model_config(arch).get("quick_gelu", False))
        if trained != built:
            raise ValueError(f"open_clip's {arch} '{checkpoint}' weights were trained with "
                             f"{'QuickGELU' if trained else 'GELU'}: set hdclip.model.quick_gelu "
                             f"to {str(trained).lower()}")
    model, _, _ = open_clip.create_model_and_transforms(
        arch, pretrained=checkpoint, force_quick_gelu=quick_gelu, pretrained_text=False)
    return model, open_clip.get_tokenizer(arch)


# --------------------------------------------------------------------------- controller

def tower_kind(visual: nn.Module) -> str:
    """"transformer" (ViT) or "resnet" (ModifiedResNet): the kinds the controller supports."""
    if hasattr(visual, "transformer"):
        return "transformer"
    if all(hasattr(visual, f"layer{i}") for i in range(1, 5)):
        return "resnet"
    raise TypeError(f"no controller support for vision tower {type(visual).__name__}")


def _blocks(visual: nn.Module) -> list[nn.Module]:
    """The residual stages of a vision tower where the controller adds its residuals."""
    if tower_kind(visual) == "transformer":
        return list(visual.transformer.resblocks)
    return [getattr(visual, f"layer{i}") for i in range(1, 5)]


def controller_source(i: int, n: int, kind: str) -> int:
    """The controller stage whose residual the frozen tower's stage ``i`` (of ``n``) receives.

    DA-CLIP (``da-clip/src/open_clip/transformer.py`` of Algolzw/daclip-uir): its
    ``ControlTransformer`` collects ``zero_module_j(block_j(x))`` for j = 0 .. n-1, and the
    frozen ``Transformer`` adds ``control.pop()`` after each block, which takes the list from
    its end: frozen block i receives controller block ``n - 1 - i`` ("transformer").
    A ResNet tower's four stages differ in width and resolution, so the reversed order cannot
    match shapes there: stage i receives stage i ("resnet").
    """
    if not 0 <= i < n:
        raise IndexError(f"stage {i} of {n}")
    if kind == "transformer":
        return n - 1 - i
    if kind == "resnet":
        return i
    raise ValueError(f"unknown tower kind {kind!r} (transformer or resnet)")


def _zero_module(block: nn.Module) -> nn.Module:
    """Zero-initialised 1x1 map (Linear for tokens, Conv for feature maps).

    As in DA-CLIP, zero module j belongs to controller stage j: it maps that stage's output
    (built from the frozen stage j, which has the same shape)."""
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
    an LQ image can move toward its HQ content (DA-CLIP's controller). Which stage feeds which is
    :func:`controller_source`: reversed for transformer towers as in DA-CLIP, stage to stage for
    ResNet towers.

    The tokenizer is kept as a plain attribute (not in the state dict) for :meth:`encode_text`.
    """

    def __init__(self, clip: nn.Module, tokenizer, cfg: HDCLIPConfig):
        super().__init__()
        self.cfg = cfg
        self.clip = clip.eval()
        self.tokenizer = tokenizer
        for p in self.clip.parameters():
            p.requires_grad_(False)
        self.degradation_branch = copy.deepcopy(clip.visual).train()
        for p in self.degradation_branch.parameters():
            p.requires_grad_(True)
        d = self.embed_dim
        k = len(cfg.types)
        self.heads = nn.ModuleList(nn.Linear(d, d + 1) for _ in range(k))
        words = [type_word(t) for t in cfg.types]
        with torch.no_grad():
            word_emb = clip.encode_text(tokenizer(words)).float()
        self.register_buffer("words", word_emb)
        self.register_buffer("bins", bin_centres(cfg.gap))
        if cfg.shift not in ("bin", "type"):
            raise ValueError(f"hdclip.model.shift: {cfg.shift!r} is not bin or type")
        if cfg.slerp_negatives not in ("bins", "batch"):
            raise ValueError(f"hdclip.model.slerp_negatives: {cfg.slerp_negatives!r} is not "
                             "bins or batch")
        # delta of eq. 2: one vector per (type, bin), or one per type shared by its bins
        per_bin = self.bins.numel() if cfg.shift == "bin" else 1
        self.shift = nn.Parameter(torch.zeros(k, per_bin, d))
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
            kind = tower_kind(self.clip.visual)
            for i, block in enumerate(frozen):
                block.register_forward_hook(
                    self._make_inject(controller_source(i, len(frozen), kind)))

    # -- controller hooks
    def _capture(self, module, args, output):
        self._captured.append(output)

    def _make_inject(self, j: int):
        """A hook that adds controller stage j's residual, through zero module j."""
        def inject(module, args, output):
            if self._residuals is None:
                return output
            return output + self.zero_modules[j](self._residuals[j])
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
        """Eq. 2-3: the (K, J, d) unit composition anchors at the bin centres (float32)."""
        shift = self.shift.expand(-1, self.bins.numel(), -1)  # a per-type shift: every bin
        return float32_math(composition_anchors)(self.words, self.bins, shift,
                                                 base=self.cfg.freq_base,
                                                 pe_scale=self.cfg.pe_scale)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        return normalize(images)

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """(N, d) unit embeddings of ``texts`` by the frozen CLIP text tower (float32)."""
        tokens = self.tokenizer(list(texts)).to(self.words.device)
        return F.normalize(self.clip.encode_text(tokens).float(), dim=-1)

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
        emb, conf = self.type_embeddings(z)
        if semantic:
            sem = self.encode_semantic(x, residuals if self.cfg.controller else None)
        else:
            sem = torch.zeros_like(z)
        anchors = self.anchors()  # inside forward, so that data parallelism sees the shift
        return HDCLIPOutput(semantic=sem, degradation=z, embeddings=emb, confidence=conf,
                            levels=self.levels(emb, anchors), anchors=anchors)

    @float32_math
    def type_embeddings(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Eq. 4: ``h_k = W_k z + b_k`` (d + 1); the unit embedding ``e_k`` = the first d
        entries normalised, (B, K, d); the confidence logit ``c_k`` = the last entry, (B, K)."""
        h = torch.stack([head(z) for head in self.heads], dim=1)         # (B, K, d + 1)
        return F.normalize(h[..., :-1], dim=-1), h[..., -1]

    @float32_math
    def levels(self, embeddings: torch.Tensor, anchors: torch.Tensor | None = None
               ) -> torch.Tensor:
        """Eq. 6: the predicted 0..100 level of every type from (B, K, d) embeddings."""
        anchors = self.anchors() if anchors is None else anchors
        sim = torch.einsum("bkd,kjd->bkj", embeddings, anchors)
        return interpolate_level(sim, self.bins, topk=self.cfg.topk, tau=self.cfg.tau)

    # -- the estimator interface (zephir.estimator_interface.Estimator)
    def loss_terms(self, out: HDCLIPOutput, present: torch.Tensor, level: torch.Tensor, *,
                   terms: Collection[str], targets: SemanticTargets | None = None
                   ) -> dict[str, torch.Tensor]:
        """The unweighted terms of eq. 11 named in ``terms``: ``conf`` (eq. 5), ``level``
        (eq. 7), ``slerp`` (eq. 9, with the negatives ``hdclip.model.slerp_negatives`` names),
        ``align`` (ablation A's alignment,
        :func:`losses.alignment_loss`) and, given the semantic ``targets``, ``semantic`` (toward
        the clean crop's embedding) and ``clip`` (against the captions, else the clean crops;
        same-photo pairs are not negatives). The trainer weights them with the lambdas of
        eq. 11.

        ``level``, ``slerp`` and ``align`` are means over the present (sample, type) pairs of
        the batch.
        """
        out_terms = {"conf": losses.confidence_loss(out.confidence, present)}
        if "level" in terms:
            out_terms["level"] = losses.level_loss(out.levels, level, present)
        b, k = present.nonzero(as_tuple=True)
        pairs = (out.embeddings[b, k], out.anchors[k], level[b, k], self.bins)
        if "slerp" in terms and self.cfg.slerp_negatives == "batch":
            out_terms["slerp"] = losses.slerp_loss_batch(*pairs, k, tau=self.cfg.tau)
        elif "slerp" in terms:
            out_terms["slerp"] = losses.slerp_loss(*pairs, tau=self.cfg.tau)
        if "align" in terms:
            out_terms["align"] = losses.alignment_loss(*pairs, tau=self.cfg.tau)
        if targets is not None and "semantic" in terms:
            out_terms["semantic"] = losses.semantic_loss(out.semantic, targets.image)
        if targets is not None and "clip" in terms:
            text = targets.image if targets.text is None else targets.text
            out_terms["clip"] = losses.clip_loss(out.semantic, text, same=targets.same)
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
