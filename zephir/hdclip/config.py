"""HD-CLIP's settings and their defaults: :class:`HDCLIPConfig` (paper, section 3.1).

The defaults live here, with the model, and nowhere else: the config loader fills the
``hdclip.model`` section from them (:func:`zephir.config.check`), and a trained model's
``config.json`` stores them whole. This module imports nothing beyond the standard library, so
that reading a config (also inside the restoration backbones' environments) does not import
torch, open_clip, OpenCV or the degradation code.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields


@dataclass
class HDCLIPConfig:
    """Architecture and ordinal-space settings (the ``hdclip.model`` config section and
    ``synth.types``); stored in every trained model's ``config.json``."""

    arch: str = "zephir-tiny-rn"       # open_clip architecture name (ViT-B-32 in the paper)
    # CLIP weights: None = random init; a local file; or an open_clip pretrained tag of `arch`
    # ("openai" for ViT-B-32), which open_clip downloads into its cache on first use.
    checkpoint: str | None = None
    quick_gelu: bool = False           # OpenAI weights need QuickGELU
    controller: bool = False           # residuals into the frozen tower (DA-CLIP's controller)
    types: tuple[str, ...] = ("blur", "noise", "jpeg", "downsample")  # the types, in order
    gap: float = 5.0                   # eq. 3: a bin every `gap` levels
    freq_base: float = 10000.0         # eq. 1: the frequency base w
    pe_scale: float = 1.0              # eq. 2 (choice): unit PE against the unit word
    topk: int | None = 2               # eq. 6: bins used (None = all)
    tau: float = 0.03                  # eq. 6 and 9 temperature
    shift: str = "bin"                 # eq. 2 (choice): one shift per (type, bin), or per "type"
    slerp_negatives: str = "bins"      # eq. 9 (choice): the type's bin anchors, or NumCLIP's
    #                                    "batch" texts

    @property
    def random_init(self) -> bool:
        return self.checkpoint is None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict, origin: str = "hdclip config") -> HDCLIPConfig:
        """The config of a dict such as :meth:`to_dict` gives (``types`` as a list or tuple);
        an unknown key is an error naming ``origin``."""
        if not isinstance(d, dict):
            raise ValueError(f"{origin}: expected a mapping of HD-CLIP settings, got "
                             f"{type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"{origin}: unknown HD-CLIP setting(s) {', '.join(unknown)} "
                             f"(known: {', '.join(sorted(known))})")
        d = dict(d)
        if "types" in d:
            d["types"] = tuple(d["types"])
        return cls(**d)


def defaults() -> dict:
    """The ``hdclip.model`` config section's defaults (every field but ``types``, which is
    ``synth.types``), as JSON values."""
    d = HDCLIPConfig().to_dict()
    del d["types"]
    return d
