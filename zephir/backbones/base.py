"""The interface every restoration backbone meets, and the three ways HD-CLIP enters it.

A backbone is a diffusion super-resolution pipeline (the tiny stand-in, the SD x4 upscaler,
SeeSR, PASD, FaithDiff) behind one method, :meth:`Backbone.restore`, that runs it in one of
three modes (paper, section 4.1 and eq. 12-15):

``baseline``
    the pipeline as its authors run it: text prompt, negative prompt, ordinary CFG.
``cfg``
    the paper's "CFG" variant: the HD-CLIP-conditioned embeddings are added to the text
    embeddings with fixed ratios before the pipeline's ordinary CFG (``add_embeddings``)::

        c- = c_text- + r- (c_hd- - c_text-)      c+ = c_text+ + r+ (c_hd+ - c_text+)

    ``c_hd - c_text`` is what the HD-CLIP cues add in the backbone's text space (the bridge,
    zephir/bridge.py, builds ``c_hd``); ``r = (r-, r+)`` is ``cfg_ratio`` **(choice: the paper
    only says "predefined ratios"; default 0.5 for both)**.
``cfpg``
    classifier-free projection guidance: the pipeline's UNet is replaced, for the call only,
    by ``zephir.guidance.CFPGDenoiser``, which runs the UNet (and the ControlNet, on ControlNet
    backbones) on the text rows and the HD rows in one batched call per step and hands the
    rectified pair of eq. 12-14 to the pipeline's own CFG line (eq. 15).

With ``w_par = w_orth = 0`` the ``cfpg`` mode reproduces ``baseline`` bit for bit; the
tests check it on every backbone that runs here.

Adapters import diffusers (or an upstream checkout) only inside their methods, so that this
module and the registry import with torch and numpy alone (the SeeSR and PASD environments pin
old diffusers releases; see workflow/envs/).
"""
from __future__ import annotations

import contextlib
import hashlib
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from zephir.guidance import W_ORTH, W_PAR, add_embeddings, wrap_pipeline

MODES = ("baseline", "cfg", "cfpg")
"""The restoration modes: the backbone alone, the paper's "CFG" variant, CFPG."""
CFG_RATIO = (0.5, 0.5)
"""Default ``(negative, positive)`` ratios of the ``cfg`` mode **(choice)**."""


@dataclass(frozen=True)
class Defaults:
    """A backbone's sampling settings as its authors ship them.

    ``negative_prompt`` and ``added_prompt`` (appended to the positive prompt) are the
    repository's; ``extra`` holds backbone-specific settings (noise level, tile sizes ...);
    ``source`` says where the numbers come from.
    """

    steps: int
    scale: float
    negative_prompt: str = ""
    added_prompt: str = ""
    extra: dict = field(default_factory=dict)
    source: str = ""

    def with_settings(self, settings: dict | None, *, backbone: str,
                      loader: Sequence[str] = ()) -> Defaults:
        """These defaults with ``settings`` (a config mapping) laid over them.

        Keys: ``steps``, ``scale``, ``negative_prompt``, ``added_prompt`` and the keys of
        ``extra``; the ``loader`` keys (``dtype`` ...) are read by the loaders and ignored here.
        An unknown key is a ValueError naming it and the known ones.
        """
        settings = dict(settings or {})
        own = {f.name for f in fields(self)} - {"extra", "source"}
        loader = set(loader)
        unknown = sorted(set(settings) - own - set(self.extra) - loader)
        if unknown:
            known = sorted(own | set(self.extra) | loader)
            raise ValueError(f"backbone {backbone}: unknown setting(s) {', '.join(unknown)}; "
                             f"expected some of {', '.join(known)}")
        extra = {**self.extra, **{k: v for k, v in settings.items() if k in self.extra}}
        top = {k: v for k, v in settings.items() if k in own}
        out = replace(self, **top, extra=extra)
        if int(out.steps) < 1 or float(out.scale) < 0:
            raise ValueError(f"backbone {backbone}: steps must be >= 1 and scale >= 0, got "
                             f"{out.steps} and {out.scale}")
        return out

    def to_dict(self) -> dict:
        return {"steps": int(self.steps), "scale": float(self.scale),
                "negative_prompt": self.negative_prompt, "added_prompt": self.added_prompt,
                **self.extra}


@dataclass
class TextEmbeds:
    """Conditioning in a backbone's text space, one row per prompt.

    ``hidden``: (N, L, D) encoder hidden states (the UNet's cross-attention input);
    ``pooled``: (N, P) pooled text embeddings (SDXL's ``text_embeds``), else None;
    ``eos``: (N,) position of each row's end-of-text token, else None.
    A ``[negative, positive]`` pair has N = 2, negative first (diffusers' CFG order).
    """

    hidden: torch.Tensor
    pooled: torch.Tensor | None = None
    eos: torch.Tensor | None = None

    def __post_init__(self) -> None:
        assert self.hidden.ndim == 3, f"hidden states must be (N, L, D), got {self.hidden.shape}"
        n = self.hidden.shape[0]
        if self.pooled is not None:
            assert self.pooled.ndim == 2 and self.pooled.shape[0] == n, self.pooled.shape
        if self.eos is not None:
            assert self.eos.shape == (n,), self.eos.shape

    def __len__(self) -> int:
        return self.hidden.shape[0]

    def rows(self, index: slice | Sequence[int]) -> TextEmbeds:
        """The rows ``index`` (a slice or a list of row numbers)."""
        def pick(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t[index]

        return TextEmbeds(self.hidden[index], pick(self.pooled), pick(self.eos))

    @staticmethod
    def cat(parts: Sequence[TextEmbeds]) -> TextEmbeds:
        """Rows of ``parts`` one after the other."""
        def join(name: str) -> torch.Tensor | None:
            values = [getattr(p, name) for p in parts]
            return None if any(v is None for v in values) else torch.cat(values)

        return TextEmbeds(torch.cat([p.hidden for p in parts]), join("pooled"), join("eos"))

    def to(self, device=None, dtype=None) -> TextEmbeds:
        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device=device, dtype=dtype)

        eos = None if self.eos is None else self.eos.to(device=device)
        return TextEmbeds(move(self.hidden), move(self.pooled), eos)

    def summary(self) -> torch.Tensor:
        """(N, D): the hidden state at each row's end-of-text token (CLIP's sentence vector),
        the mean over tokens when the positions are unknown."""
        if self.eos is None:
            return self.hidden.mean(dim=1)
        return self.hidden[torch.arange(len(self)), self.eos.to(self.hidden.device)]

    def mix(self, hd: TextEmbeds, ratio: tuple[float, float]) -> TextEmbeds:
        """The paper's "CFG" variant on a ``[negative, positive]`` pair (see the module doc):
        row by row ``c + r (c_hd - c)`` with ``r = ratio[row]``, pooled embeddings likewise."""
        assert len(self) == 2 and len(hd) == 2, "mix works on [negative, positive] pairs"
        assert hd.hidden.shape == self.hidden.shape, (
            f"HD pair {tuple(hd.hidden.shape)} and text pair {tuple(self.hidden.shape)} differ")
        r = torch.tensor([float(ratio[0]), float(ratio[1])])

        def one(text: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
            shape = (2,) + (1,) * (text.ndim - 1)
            diff = other.to(text) - text
            return add_embeddings(text, diff * r.to(text).view(shape), 1.0)

        pooled = None
        if self.pooled is not None:
            pooled = self.pooled if hd.pooled is None else one(self.pooled, hd.pooled)
        return TextEmbeds(one(self.hidden, hd.hidden), pooled, self.eos)


def as_ratio(cfg_ratio: float | Sequence[float]) -> tuple[float, float]:
    """``cfg_ratio`` as ``(negative, positive)``: one number is used for both branches."""
    if isinstance(cfg_ratio, (int, float)):
        return float(cfg_ratio), float(cfg_ratio)
    values = tuple(float(v) for v in cfg_ratio)
    if len(values) != 2:
        raise ValueError(f"cfg_ratio: one number or [negative, positive], got {cfg_ratio!r}")
    return values  # type: ignore[return-value]


def join_prompt(*parts: str) -> str:
    """Comma-join the non-empty parts (``"a cat", "", "8k"`` -> ``"a cat, 8k"``)."""
    return ", ".join(p.strip().strip(",").strip() for p in parts
                     if p and p.strip().strip(",").strip())


def check_lq(lq: np.ndarray) -> np.ndarray:
    """An LQ image as contiguous RGB uint8 (H, W, 3); anything else is a ValueError."""
    lq = np.asarray(lq)
    if lq.dtype != np.uint8 or lq.ndim != 3 or lq.shape[2] != 3:
        raise ValueError(f"expected an RGB uint8 image (H, W, 3), got {lq.dtype} {lq.shape}")
    return np.ascontiguousarray(lq)


def torch_dtype(name: str | None, device: torch.device) -> torch.dtype:
    """``auto`` (or None): float16 on CUDA, float32 elsewhere; else the named dtype."""
    if name in (None, "auto"):
        return torch.float16 if device.type == "cuda" else torch.float32
    dtypes = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    if name not in dtypes:
        raise ValueError(f"dtype: expected auto or one of {', '.join(dtypes)}, got {name!r}")
    return dtypes[name]


def dtype_kwargs(dtype: torch.dtype) -> dict:
    """The dtype keyword of diffusers' ``from_pretrained``: ``dtype`` where diffusers renamed
    it (``torch_dtype`` is deprecated there), ``torch_dtype`` before."""
    try:
        from diffusers.utils.deprecation_utils import _resolve_dtype  # noqa: F401
    except ImportError:
        return {"torch_dtype": dtype}
    return {"dtype": dtype}


class Backbone(ABC):
    """A diffusion SR pipeline that restores an LQ image in the three :data:`MODES`.

    Subclasses set :attr:`name`, build ``self.pipe`` (an object with a ``unet`` attribute,
    called once per image) and implement :meth:`encode_prompt` and :meth:`_sample`.

    Attributes:
        name: the registry name.
        random_init: True when the weights are random (the tiny stand-in, or a folder saved
            from it): outputs then say nothing about the paper's numbers.
        defaults: steps, guidance scale, negative and added prompt (the repository's).
        scale_factor: output size / input size.
        weights: config key -> local path of every weight the backbone was loaded from.
    """

    name: ClassVar[str] = ""
    DEFAULTS: ClassVar[Defaults]
    """The repository's settings (:meth:`resolve_defaults` lays a config over them)."""
    LOAD_KEYS: ClassVar[tuple[str, ...]] = ("dtype", "variant")
    """Settings the loader reads (not sampling settings)."""
    environment: ClassVar[str] = "workflow/envs/zephir.yaml"
    """The conda environment its restore jobs run in (the workflow's ``conda:``)."""
    seed_scope: ClassVar[str] = "image"
    """How the upstream test script seeds a folder (zephir.restore): ``"image"``, the generator
    re-made from the seed for every image, or ``"folder"``, one generator for all."""
    scale_factor: int = 4

    @classmethod
    def resolve_defaults(cls, settings: dict | None) -> Defaults:
        """:attr:`DEFAULTS` with the config's ``settings`` for this backbone laid over them
        (no weights are read: restore_folder fingerprints a job before loading anything)."""
        return cls.DEFAULTS.with_settings(settings, backbone=cls.name, loader=cls.LOAD_KEYS)

    def __init__(self, pipe: Any, *, defaults: Defaults, random_init: bool,
                 weights: dict[str, str] | None = None, device: torch.device | str = "cpu"
                 ) -> None:
        self.pipe = pipe
        self.defaults = defaults
        self.random_init = bool(random_init)
        self.weights = dict(weights or {})
        self.device = torch.device(device)

    # -- text
    @abstractmethod
    def encode_prompt(self, texts: Sequence[str]) -> TextEmbeds:
        """Each text through the backbone's own text encoder(s), as a prompt (N rows)."""

    def encode_pair(self, negative: str, positive: str) -> TextEmbeds:
        """The ``[negative, positive]`` conditioning exactly as the pipeline builds it for
        CFG (adapters whose pipelines treat the negative prompt specially override this)."""
        return self.encode_prompt([negative, positive])

    def compose_prompts(self, lq: np.ndarray | None = None, prompt: str = "",
                        negative_prompt: str | None = None) -> tuple[str, str]:
        """The ``(positive, negative)`` texts the backbone's authors would use for ``lq``:
        the user's prompt followed by the repository's added prompt, and the repository's
        negative prompt unless one is given. (SeeSR prepends its own image tags.)"""
        positive = join_prompt(prompt, self.defaults.added_prompt)
        negative = self.defaults.negative_prompt if negative_prompt is None else negative_prompt
        return positive, negative

    # -- sampling
    def cfg_enabled(self, scale: float) -> bool:
        """Whether the pipeline runs classifier-free guidance at ``scale`` (diffusers: > 1)."""
        return scale > 1.0

    @abstractmethod
    def _sample(self, lq: np.ndarray, cond: TextEmbeds, *, steps: int, scale: float,
                generator: torch.Generator) -> np.ndarray:
        """One call of the pipeline on ``lq`` (RGB uint8) with the ``[negative, positive]``
        conditioning ``cond``; the upscaled image as RGB uint8."""

    @contextlib.contextmanager
    def _guided(self, hd: TextEmbeds, *, w_par: float, w_orth: float, scale: float,
                controlnet: str = "rerun") -> Iterator[None]:
        """CFPG for the ``with`` block: the pipeline's UNet is wrapped and its ControlNet, if it
        has one, hooked (``controlnet="rerun"``: the HD rows' residuals come from the
        ControlNet conditioned on the HD pair; ``"reuse"``: the text rows'), then restored."""
        unet = self.pipe.unet
        ref = next(unet.parameters())
        hd = hd.to(device=ref.device, dtype=ref.dtype)
        extra = {"text_embeds": hd.pooled} if hd.pooled is not None else None
        with wrap_pipeline(self.pipe, hd_encoder_hidden_states=hd.hidden, w_par=w_par,
                           w_orth=w_orth, guidance=self.cfg_enabled(scale),
                           hd_added_cond_kwargs=extra, controlnet=controlnet):
            yield

    @torch.no_grad()
    def restore(self, lq: np.ndarray, *, prompt: str, negative_prompt: str,
                hd_pair: TextEmbeds | None = None, mode: str = "baseline",
                w_par: float = W_PAR, w_orth: float = W_ORTH,
                cfg_ratio: float | Sequence[float] = CFG_RATIO, steps: int | None = None,
                scale: float | None = None, seed: int = 0,
                generator: torch.Generator | None = None, controlnet: str = "rerun"
                ) -> np.ndarray:
        """The upscaled image (RGB uint8, ``scale_factor`` times the LQ's size).

        Args:
            lq: the LQ image, RGB uint8 (H, W, 3).
            prompt, negative_prompt: the final texts of the two branches (see
                :meth:`compose_prompts` for the repository's).
            hd_pair: the HD-CLIP-conditioned ``[negative, positive]`` embeddings in this
                backbone's text space (zephir.bridge); needed by ``cfg`` and ``cfpg``.
            mode: one of :data:`MODES`.
            w_par, w_orth: eq. 14's weights (``cfpg``).
            cfg_ratio: the ``cfg`` mode's ratio, one number or ``(negative, positive)``.
            steps, scale: sampling steps and CFG scale (default: :attr:`defaults`).
            seed, generator: the sampler's noise: ``generator`` (a CPU torch.Generator, so
                equal on every device; advanced by the call) or one made from ``seed``. The
                pipeline's global-RNG draws (SeeSR's and the FaithDiff community file's
                ``latent_dist.sample()``) are seeded from it too (:func:`global_rng_from`).
            controlnet: ``cfpg`` on ControlNet backbones: ``"rerun"`` (the HD rows' ControlNet
                residuals from the HD pair) or ``"reuse"`` (the text rows'); see
                zephir.guidance.wrap.
        """
        if mode not in MODES:
            raise ValueError(f"mode: expected one of {', '.join(MODES)}, got {mode!r}")
        if mode != "baseline" and hd_pair is None:
            raise ValueError(f"mode {mode!r} needs the HD-CLIP pair (hd_pair)")
        lq = check_lq(lq)
        steps = int(self.defaults.steps if steps is None else steps)
        scale = float(self.defaults.scale if scale is None else scale)
        text = self.encode_pair(negative_prompt, prompt)
        if generator is None:
            generator = torch.Generator(device="cpu").manual_seed(int(seed))
        with global_rng_from(generator):
            if mode == "cfg":
                cond = text.mix(hd_pair, as_ratio(cfg_ratio))
                return self._sample(lq, cond, steps=steps, scale=scale, generator=generator)
            if mode == "cfpg":
                with self._guided(hd_pair, w_par=w_par, w_orth=w_orth, scale=scale,
                              controlnet=controlnet):
                    return self._sample(lq, text, steps=steps, scale=scale,
                                        generator=generator)
            return self._sample(lq, text, steps=steps, scale=scale, generator=generator)

    def record(self) -> dict:
        """What an output's metadata says of the backbone."""
        return {"backbone": self.name, "random_init": self.random_init,
                "weights": dict(self.weights), "defaults": self.defaults.to_dict()}


# --------------------------------------------------------------------------- shared helpers

@contextlib.contextmanager
def global_rng_from(generator: torch.Generator) -> Iterator[None]:
    """torch's global RNGs (CPU and every CUDA device) seeded from ``generator``'s state for the
    block, and put back after (``torch.random.fork_rng``).

    Some upstream pipelines draw from the global RNG: SeeSR samples the VAE posterior with
    ``latent_dist.sample()`` and no generator (pipeline_seesr.py 989), as does the FaithDiff
    community file. Seeding it from the job's generator makes that draw a function of the job's
    seed (and of the image's place in a folder-scope shard) without advancing the generator, so
    the generator's own draws stay the ones the upstream script makes.
    """
    digest = hashlib.sha1(generator.get_state().numpy().tobytes()).digest()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int.from_bytes(digest[:8], "little") >> 1)
        yield


def clip_encode(tokenizer: Any, text_encoder: Any, texts: Sequence[str],
                device: torch.device) -> TextEmbeds:
    """SD 1.x / 2.x prompt encoding as diffusers pipelines do it: ``max_length`` padding,
    the last hidden state, an attention mask only when the text model asks for one."""
    ids = tokenizer(list(texts), padding="max_length", max_length=tokenizer.model_max_length,
                    truncation=True, return_tensors="pt")
    mask = None
    if getattr(text_encoder.config, "use_attention_mask", False):
        mask = ids.attention_mask.to(device)
    hidden = text_encoder(ids.input_ids.to(device), attention_mask=mask)[0]
    eos = (ids.input_ids == tokenizer.eos_token_id).int().argmax(dim=-1)
    return TextEmbeds(hidden.to(dtype=text_encoder.dtype), eos=eos)


def require_diffusers(series: str, *, backbone: str, env: str) -> str:
    """The installed diffusers version when it is of ``series`` (e.g. ``0.21``); otherwise a
    RuntimeError that names the version found, the one needed and the environment file.
    Reads the package metadata only: diffusers is not imported."""
    from importlib import metadata

    try:
        found = metadata.version("diffusers")
    except metadata.PackageNotFoundError:
        found = "none"
    if found != series and not found.startswith(series + "."):
        raise RuntimeError(
            f"backbone {backbone}: its upstream code needs diffusers {series}.x, found "
            f"{found}; run it in its own environment ({env}: `conda env create -f {env}`, or "
            f"snakemake --software-deployment-method conda), see docs/restoration.md")
    return found


def checkout_on_path(repo: str | Path, *, backbone: str, probe: str) -> Path:
    """Put an upstream code checkout first on ``sys.path`` (its modules are imported by their
    top-level names: ``pipelines``, ``models`` ...). ``probe`` is a file the checkout must
    hold; a folder without it is a FileNotFoundError naming both."""
    import sys

    repo = Path(repo).resolve()
    if not (repo / probe).is_file():
        raise FileNotFoundError(f"backbone {backbone}: {repo} is not a checkout of its code "
                                f"({probe} is missing)")
    if str(repo) not in sys.path:
        sys.path.insert(0, str(repo))
    return repo
