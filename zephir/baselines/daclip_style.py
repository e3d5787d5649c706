"""DA-CLIP-style degradation estimation (table 2, "DA-CLIP"), reimplemented.

DA-CLIP trains a copy of CLIP's vision tower (its controller) so that its degradation embedding
matches the text embedding of the degradation. Here the texts are the same numeric prompts as
the zero-shot baseline, encoded by the frozen text tower as plain CLIP text (no ordinal space),
and the loss is categorical: cross-entropy of each single-type sample against all K x J prompts,
the prompt of its type at the nearest bin being the positive. Type and level are read from the
best prompt, as for the zero-shot baseline.
"""
from __future__ import annotations

import copy
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from zephir.baselines.clip_zeroshot import PromptEstimator
from zephir.hdclip.model import HDCLIPConfig, load_clip


def prompt_targets(present: torch.Tensor, level: torch.Tensor, bins: torch.Tensor):
    """Rows with exactly one type, and the index of their prompt (type-major, nearest bin)."""
    single = present.sum(1) == 1
    k = present[single].argmax(1)
    lv = level[single, k]
    j = (lv[:, None] - bins.to(lv)[None]).abs().argmin(1)
    return single, k * bins.numel() + j


class DACLIPStyle(PromptEstimator):
    """A trainable copy of the vision tower whose embedding is matched to numeric prompts."""

    def __init__(self, clip: nn.Module, tokenizer, cfg: HDCLIPConfig):
        super().__init__(clip, tokenizer, cfg, copy.deepcopy(clip.visual).train())
        for p in self.tower.parameters():
            p.requires_grad_(True)

    def loss_terms(self, out: torch.Tensor, present, level, *, terms, targets=None):
        single, target = prompt_targets(present, level, self.bins)
        logits = out[single].float() @ self.text.flatten(0, 1).t() / self.cfg.tau
        return {"contrastive": F.cross_entropy(logits, target)}


def released_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict of DA-CLIP's released checkpoint (``daclip_ViT-B-32.pt``).

    Its layout: ``clip.*`` (the CLIP it was trained from, text tower included), ``visual.*``
    (the same frozen tower again) and ``visual_control.*`` (the controller: a copy of the vision
    tower whose transformer is wrapped, ``transformer.transformer.resblocks.*``, with
    ``transformer.zero_modules.*`` feeding the frozen tower). A training checkpoint may hold it
    under ``state_dict``, with DDP's ``module.`` prefixes.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: DA-CLIP weights not found; download daclip_ViT-B-32.pt from the DA-CLIP "
            "repository (github.com/Algolzw/daclip-uir) where there is internet and copy it here")
    obj = torch.load(path, map_location="cpu", weights_only=False)
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"{path}: not a DA-CLIP checkpoint (no state dict)")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if not any(k.startswith("visual_control.") for k in state):
        raise ValueError(f"{path}: not a DA-CLIP checkpoint (no visual_control.* weights)")
    return state


def from_released(path: str | Path, cfg: HDCLIPConfig) -> DACLIPStyle:
    """DA-CLIP's released model read out like the DA-CLIP-style baseline.

    Its degradation embedding is the controller tower's output (the zero modules only feed the
    frozen tower, so they do not change it); the numeric prompts are encoded by its own CLIP
    text tower. ``cfg.arch`` / ``quick_gelu`` must describe the CLIP it was built on (ViT-B-32).
    """
    state = released_state(path)
    clip, tokenizer = load_clip(cfg.arch, None, quick_gelu=cfg.quick_gelu)
    clip_state = {k.removeprefix("clip."): v for k, v in state.items() if k.startswith("clip.")}
    clip.load_state_dict(clip_state)
    model = DACLIPStyle(clip, tokenizer, cfg)
    tower = {}
    for k, v in state.items():
        if not k.startswith("visual_control.") or ".zero_modules." in k:
            continue
        tower[k.removeprefix("visual_control.").replace("transformer.transformer.",
                                                        "transformer.")] = v
    model.tower.load_state_dict(tower)
    return model.eval()
