"""DA-CLIP-style degradation estimation (table 2, "DA-CLIP"), reimplemented.

DA-CLIP (Luo et al., ICLR 2024; Algolzw/daclip-uir, ``da-clip/src/open_clip``) copies CLIP's
vision transformer into a trainable controller (``daclip_model.py``, ``DaCLIP``) whose output
is the degradation embedding; CLIP itself stays frozen. What its code does, and what is kept:

- **Degradation loss** (``loss.py``, ``DaClipLoss``): CLIP's own contrastive loss, batch-wise:
  logits ``logit_scale * degradation_embedding @ text_embedding.T`` between the B images and
  the B degradation texts of the batch, the i-th text the positive of the i-th image,
  symmetric cross-entropy; texts that repeat within the batch are negatives of each other's
  images all the same. The logit scale is DA-CLIP's own copy of CLIP's, trained, at most 100.
  Kept exactly (:func:`zephir.hdclip.losses.clip_loss`). DA-CLIP's texts are degradation
  names ("noisy", "motion-blurry"); here each single-type sample's text is the numeric prompt
  of its type at the bin nearest its level (:mod:`zephir.baselines.clip_zeroshot`): each
  (type, level bin) is a category of its own, no closer to the neighbouring bin than to a far
  one, as the paper says of DA-CLIP ("treats each intensity as the same category"). Mixtures
  have no such text and are left out of this loss.
- **Content loss**: the frozen tower's embedding, steered by the controller, against the
  caption's text embedding, with the same loss. Kept when the trainer hands the model
  semantic targets (:class:`zephir.estimator_interface.SemanticTargets`; without captions the frozen
  CLIP embedding of the clean crop stands in for the caption), as the ``clip`` term.
- **Controller wiring** (``transformer.py``, ``ControlTransformer``): after controller block j
  a zero-initialised ``Linear(width, width)`` (zero module j, on the controller's side) maps
  its output; the frozen ``Transformer`` adds ``control.pop()`` after each of its blocks, which
  takes the list from its end: frozen block i receives controller block L-1-i. Kept, the
  same way (a list the frozen blocks pop), for transformer towers and with
  ``hdclip.model.controller`` (DA-CLIP has no ResNet controller: a ResNet tower gets the
  degradation branch only). The controller's own blocks are not changed by the zero modules,
  so the degradation embedding does not depend on them.

Type and level are read from the best prompt, as for the zero-shot baseline.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn as nn
import torch.nn.functional as F

from zephir.baselines.clip_zeroshot import PromptEstimator
from zephir.hdclip import losses
from zephir.hdclip.model import HDCLIPConfig, load_clip, normalize, tower_kind

if TYPE_CHECKING:
    from zephir.estimator_interface import SemanticTargets

#: DA-CLIP clamps its logit scale to at most ln 100 after every step.
MAX_LOGIT_SCALE = math.log(100.0)


def prompt_targets(present: torch.Tensor, level: torch.Tensor, bins: torch.Tensor):
    """Rows with exactly one type, and the index of their prompt (type-major, nearest bin)."""
    single = present.sum(1) == 1
    k = present[single].argmax(1)
    lv = level[single, k]
    j = (lv[:, None] - bins.to(lv)[None]).abs().argmin(1)
    return single, k * bins.numel() + j


def zero_linear(width: int) -> nn.Linear:
    """DA-CLIP's zero module: ``Linear(width, width)`` with weight and bias zero."""
    layer = nn.Linear(width, width)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


@dataclass
class DACLIPOutput:
    degradation: torch.Tensor    # (B, d) unit degradation embeddings (the controller's output)
    semantic: torch.Tensor | None  # (B, d) unit content embeddings (frozen tower + controls)


class DACLIPStyle(PromptEstimator):
    """DA-CLIP's controller trained with DA-CLIP's loss against the numeric prompts."""

    def __init__(self, clip: nn.Module, tokenizer, cfg: HDCLIPConfig):
        super().__init__(clip, tokenizer, cfg, copy.deepcopy(clip.visual).train())
        for p in self.tower.parameters():
            p.requires_grad_(True)
        self.logit_scale = nn.Parameter(clip.logit_scale.detach().clone().float())
        self.zero_modules = nn.ModuleList()
        self._captured: list[torch.Tensor] | None = None  # the controller's zero-module outputs
        self._controls: list[torch.Tensor] | None = None  # what the frozen blocks pop
        self.content = cfg.controller and tower_kind(clip.visual) == "transformer"
        if self.content:
            self.clip = clip.eval()
            self.tokenizer = tokenizer
            for p in self.clip.parameters():
                p.requires_grad_(False)
            trained = list(self.tower.transformer.resblocks)
            self.zero_modules.extend(zero_linear(self.tower.transformer.width) for _ in trained)
            for block in trained:
                block.register_forward_hook(self._control)
            for block in self.clip.visual.transformer.resblocks:
                block.register_forward_hook(self._pop)

    # -- the controller, as DA-CLIP's ControlTransformer and Transformer(control=...)
    def _control(self, module, args, output):
        """After controller block j: keep zero module j of its output."""
        if self._captured is not None:
            self._captured.append(self.zero_modules[len(self._captured)](output))

    def _pop(self, module, args, output):
        """After each frozen block: add the last control kept (``control.pop()``), so that
        frozen block i receives controller block L-1-i."""
        return output + self._controls.pop() if self._controls else output

    def train(self, mode: bool = True):
        super().train(mode)
        if self.content:
            self.clip.eval()  # frozen, as DA-CLIP's lock_clip leaves it
        return self

    # -- what the trainer's semantic targets use (as HD-CLIP's)
    @property
    def embed_dim(self) -> int:
        return int(self.text.shape[-1])

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        return normalize(images)

    def _need_content(self) -> None:
        if not self.content:
            raise ValueError("the DA-CLIP-style content branch needs hdclip.model.controller: "
                             "true and a transformer tower (DA-CLIP's controller is a ViT's)")

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """(N, d) unit embeddings of ``texts`` by the frozen CLIP text tower (float32)."""
        self._need_content()
        tokens = self.tokenizer(list(texts)).to(self.text.device)
        return F.normalize(self.clip.encode_text(tokens).float(), dim=-1)

    def encode_semantic(self, x: torch.Tensor, controls: list[torch.Tensor] | None = None):
        """Frozen CLIP image embedding of normalised images (unit), steered by ``controls``
        when given: the zero modules' outputs after the controller's blocks, in block order."""
        self._need_content()
        self._controls = list(controls) if controls else None
        try:
            return F.normalize(self.clip.visual(x), dim=-1)
        finally:
            self._controls = None

    # -- the estimator interface
    def scale(self) -> torch.Tensor:
        """DA-CLIP's logit scale, ``exp(logit_scale)`` clamped to at most 100."""
        return self.logit_scale.clamp(max=MAX_LOGIT_SCALE).exp()

    def forward(self, images: torch.Tensor, *, semantic: bool = False) -> DACLIPOutput:
        """Degradation embeddings; with ``semantic`` also the content embeddings."""
        x = normalize(images)
        self._captured = [] if semantic else None
        try:
            z = F.normalize(self.tower(x), dim=-1)
            controls = self._captured
        finally:
            self._captured = None
        sem = self.encode_semantic(x, controls) if semantic else None
        return DACLIPOutput(degradation=z, semantic=sem)

    def loss_terms(self, out: DACLIPOutput, present, level, *, terms,
                   targets: SemanticTargets | None = None):
        """``degradation``: DA-CLIP's batch-wise loss between the single-type rows' degradation
        embeddings and their prompts; ``clip`` (asked for, with ``targets`` and a content
        embedding): the same loss between the content embeddings and the captions (the clean
        crops' embeddings without captions)."""
        single, target = prompt_targets(present, level, self.bins)
        if single.any():
            text = self.text.flatten(0, 1)[target]
            deg = losses.clip_loss(out.degradation[single], text, self.scale())
        else:
            deg = out.degradation.sum() * 0.0
        out_terms = {"degradation": deg}
        if targets is not None and "clip" in terms and out.semantic is not None:
            caption = targets.text if targets.text is not None else targets.image
            out_terms["clip"] = losses.clip_loss(out.semantic, caption, self.scale())
        return out_terms


def released_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict of a DA-CLIP checkpoint released by its authors.

    Files (README of Algolzw/daclip-uir; Hugging Face weblzw/daclip-uir-ViT-B-32-irsde):
    ``daclip_ViT-B-32.pt`` (DA-CLIP, from LAION's ViT-B-32 laion2b_s34b_b79k, GELU),
    ``daclip_ViT-B-32_mix.pt`` (DA-CLIP-mix) and ``wild-daclip_ViT-L-14.pt`` (the wild-IR
    model's DA-CLIP on ViT-L-14, read by its code as ``daclip_ViT-L-14``, GELU).
    Their layout: ``clip.*`` (the CLIP it was trained from, text tower included), ``visual.*``
    (the same frozen tower again), ``logit_scale`` and ``visual_control.*`` (the controller: a
    copy of the vision tower whose transformer is wrapped, ``transformer.transformer.*``, with
    ``transformer.zero_modules.{j}`` after its block j). A training checkpoint may hold it
    under ``state_dict``, with DDP's ``module.`` prefixes. The file is read with
    ``weights_only=True``: tensors and plain values only, never a pickled object (open_clip
    reads checkpoints the same way, ``load_state_dict(..., weights_only=True)`` in
    ``src/open_clip/factory.py`` of open_clip 3.3).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: DA-CLIP weights not found; download daclip_ViT-B-32.pt (or "
            "wild-daclip_ViT-L-14.pt) from the DA-CLIP repository (github.com/Algolzw/daclip-uir) "
            "where there is internet and copy it here")
    from zephir.safe_load import safe_torch_load

    obj = safe_torch_load(path, what="DA-CLIP weights file", remedy=(
        "DA-CLIP's released files (plain state dicts) load this way: download "
        "daclip_ViT-B-32.pt again from the DA-CLIP repository (github.com/Algolzw/daclip-uir), "
        "or save only the tensors of this one (torch.save(state_dict)) where it is trusted."))
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"{path}: not a DA-CLIP checkpoint (no state dict)")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if not any(k.startswith("visual_control.") for k in state):
        raise ValueError(f"{path}: not a DA-CLIP checkpoint (no visual_control.* weights)")
    return state


def _part(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}


def from_released(path: str | Path, cfg: HDCLIPConfig) -> DACLIPStyle:
    """DA-CLIP's released model as a :class:`DACLIPStyle`, read out like the trained one.

    The frozen CLIP (``clip.*``) encodes the numeric prompts; the controller
    (``visual_control.*``) gives the degradation embedding; its zero modules and DA-CLIP's
    logit scale are loaded too, the zero modules where the model has a content branch
    (``cfg.controller`` and a transformer tower). ``cfg.arch`` / ``quick_gelu`` must describe
    the CLIP it was built on (ViT-B-32 or ViT-L-14, both GELU).
    """
    state = released_state(path)
    clip, tokenizer = load_clip(cfg.arch, None, quick_gelu=cfg.quick_gelu)
    clip.load_state_dict(_part(state, "clip."))
    model = DACLIPStyle(clip, tokenizer, cfg)
    control = _part(state, "visual_control.")
    zero = _part(control, "transformer.zero_modules.")
    model.tower.load_state_dict({k.replace("transformer.transformer.", "transformer.", 1): v
                                 for k, v in control.items()
                                 if not k.startswith("transformer.zero_modules.")})
    if model.content:
        model.zero_modules.load_state_dict(zero)
    if "logit_scale" in state:
        model.logit_scale.data.copy_(state["logit_scale"].reshape(model.logit_scale.shape))
    return model.eval()
