"""The tiny backbone: a random-init SD x4 upscaler built in code (the embedded default, CPU).

Layout of ``stabilityai/stable-diffusion-x4-upscaler`` at toy sizes: a UNet whose input is
4 latent + 3 image channels with the noise level as a class label (1000 class embeddings,
``max_noise_level`` 350), a three-level VAE (so the output is 4x the LQ image, as Real-ESRGAN
LQ sets are 4x smaller), a CLIP text model of width 32, DDIM with v-prediction. The weights
come from ``torch.manual_seed(seed)``: the same seed builds the same model on every machine.
**random_init = True**: outputs exercise the code path, never the paper's numbers.

The tokenizer is the real CLIP BPE, written from open_clip's bundled
``bpe_simple_vocab_16e6.txt.gz`` (no download), so different prompts give different token ids
(``CLIPTokenizer()`` without files maps every word to one id and the text direction would be
zero).
"""
from __future__ import annotations

import functools
import gzip
import json
import tempfile
from pathlib import Path

import torch

from zephir.backbones.base import Defaults, torch_dtype
from zephir.backbones.sd_x4_upscaler import STANDIN_MARKER, UpscalerBackbone

CONTEXT = 77
"""CLIP's context length; the text model's position table has this many entries."""
VOCAB = 49408
"""256 byte symbols, their 256 end-of-word forms, 48 894 merges, start and end tokens."""
TEXT_WIDTH = 32
SEED = 0
"""The construction seed of the embedded default."""

DEFAULTS = Defaults(
    steps=8, scale=9.0, negative_prompt="", added_prompt="", extra={"noise_level": 20},
    source="the SD x4 upscaler's diffusers defaults with 8 steps instead of 75 (CPU)")


def bpe_file() -> Path:
    """open_clip's bundled CLIP BPE merges (``bpe_simple_vocab_16e6.txt.gz``), found without
    importing open_clip (the restore jobs of the backbones' environments do not load it)."""
    import importlib.util

    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the tiny backbone's tokenizer reads open_clip's bundled BPE "
                                "file: pip install open_clip_torch")
    return Path(next(iter(spec.submodule_search_locations))) / "bpe_simple_vocab_16e6.txt.gz"


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's (and CLIP's) byte-to-symbol table, in its order (the vocabulary's first 256
    entries): the printable Latin-1 bytes (``!``..``~``, ``\u00a1``..``\u00ac``,
    ``\u00ae``..``\u00ff``) stand for themselves, then every other byte, in order, for
    ``chr(256 + n)``."""
    keep = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    rest = [b for b in range(256) if b not in keep]
    return {**{b: chr(b) for b in keep}, **{b: chr(256 + n) for n, b in enumerate(rest)}}


def write_clip_tokenizer(folder: str | Path) -> Path:
    """Write the real CLIP tokenizer (``vocab.json``, ``merges.txt``) into ``folder``.

    Vocabulary order (CLIP's): the 256 byte symbols of GPT-2's byte-to-unicode table, the same
    with ``</w>``, one entry per merge of the BPE file, then ``<|startoftext|>`` (49406) and
    ``<|endoftext|>`` (49407).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with gzip.open(bpe_file(), "rt", encoding="utf-8") as f:
        lines = f.read().split("\n")
    merges = lines[1:1 + VOCAB - 2 * 256 - 2]
    symbols = list(bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    assert len(vocab) == VOCAB, len(vocab)
    (folder / "vocab.json").write_text(json.dumps({tok: i for i, tok in enumerate(vocab)}),
                                       encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n",
                                       encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(json.dumps({"model_max_length": CONTEXT}),
                                                  encoding="utf-8")
    return folder


@functools.lru_cache(maxsize=1)
def clip_tokenizer():
    """The real CLIP tokenizer, built offline (see :func:`write_clip_tokenizer`); built once
    per process and shared (a tokenizer holds no per-call state)."""
    from transformers import CLIPTokenizer

    with tempfile.TemporaryDirectory(prefix="zephir-clip-tokenizer-") as tmp:
        return CLIPTokenizer.from_pretrained(str(write_clip_tokenizer(tmp)))


def build_pipeline(seed: int = SEED, tokenizer=None):
    """The tiny random-init ``StableDiffusionUpscalePipeline`` (x4), weights from ``seed``."""
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        DDPMScheduler,
        StableDiffusionUpscalePipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = tokenizer or clip_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        text_encoder = CLIPTextModel(CLIPTextConfig(
            vocab_size=VOCAB, hidden_size=TEXT_WIDTH, intermediate_size=37, num_hidden_layers=2,
            num_attention_heads=4, max_position_embeddings=CONTEXT, bos_token_id=VOCAB - 2,
            eos_token_id=VOCAB - 1, pad_token_id=VOCAB - 1))
        unet = UNet2DConditionModel(
            block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4, in_channels=7,
            out_channels=4, sample_size=32, down_block_types=("CrossAttnDownBlock2D",
                                                              "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), attention_head_dim=2,
            cross_attention_dim=TEXT_WIDTH, num_class_embeds=1000)
        vae = AutoencoderKL(
            block_out_channels=(4, 8, 8), norm_num_groups=2, latent_channels=4,
            down_block_types=("DownEncoderBlock2D",) * 3,
            up_block_types=("UpDecoderBlock2D",) * 3, force_upcast=False,
            scaling_factor=0.08333)
    pipe = StableDiffusionUpscalePipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
        low_res_scheduler=DDPMScheduler(),
        scheduler=DDIMScheduler(prediction_type="v_prediction"),
        safety_checker=None, feature_extractor=None, watermarker=None, max_noise_level=350)
    pipe.set_progress_bar_config(disable=True)
    return pipe


class TinyBackbone(UpscalerBackbone):
    """The tiny random-init x4 upscaler (CPU; a 32 px LQ image in well under a second)."""

    name = "tiny"
    DEFAULTS = DEFAULTS
    LOAD_KEYS = ("dtype", "variant", "seed")

    @classmethod
    def load(cls, settings: dict | None = None, weights: dict | None = None, device="cpu"
             ) -> TinyBackbone:
        """Build it (no weights: ``weights`` is accepted for the registry's sake). Settings:
        ``steps``, ``scale``, ``negative_prompt``, ``added_prompt``, ``noise_level``, ``seed``
        (the construction seed), ``dtype`` (float32 unless set)."""
        settings = dict(settings or {})
        seed = int(settings.get("seed", SEED))
        defaults = cls.resolve_defaults(settings)
        device = torch.device(device)
        dtype = torch_dtype(settings.get("dtype") or "float32", device)
        pipe = build_pipeline(seed).to(device)
        if dtype != torch.float32:
            pipe = pipe.to(dtype=dtype)
        return cls(pipe, defaults=defaults, random_init=True,
                   weights={"tiny": f"built in code, torch.manual_seed({seed})"}, device=device)


def save_standin(folder: str | Path, seed: int = SEED) -> Path:
    """Save the tiny pipeline as a diffusers folder (a stand-in for ``weights.sd_x4_upscaler``)
    with a ``zephir_standin.json`` marker, so that it loads as random-init."""
    folder = Path(folder)
    build_pipeline(seed).save_pretrained(str(folder))
    (folder / STANDIN_MARKER).write_text(json.dumps(
        {"random_init": True, "built_by": "zephir.backbones.tiny.save_standin",
         "seed": seed}) + "\n")
    return folder
