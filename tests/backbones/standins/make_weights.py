"""Write random-init weights for the SeeSR or PASD stand-in, where zephir's adapters look for them.

Run inside the backbone's environment (the folders are saved by that diffusers version's own
``save_pretrained``), with this checkout on PYTHONPATH::

    python tests/backbones/standins/make_weights.py seesr OUT   # or: pasd OUT

It prints the ``weights:`` config section (key -> path) as JSON. SeeSR: ``sd2_base`` (vae,
text_encoder, tokenizer, feature_extractor, DDPM scheduler), ``seesr`` (unet, controlnet),
``seesr_ram`` and ``seesr_dape`` (state dicts of the stand-in tagger), ``seesr_repo``, and a
placeholder ``bert-base-uncased`` snapshot under ``OUT/hf-hub`` (set ``HF_HUB_CACHE`` to it: the
stand-in tagger, unlike RAM, reads no tokenizer). PASD: ``sd15`` (UniPC scheduler), ``pasd``,
``pasd_repo``. Every folder carries ``zephir_standin.json`` (random init). The tokenizer knows
the 256 byte symbols and their end-of-word forms only (no merges), so different prompts still
give different token ids. **All weights are random (torch.manual_seed(0)).**
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
WIDTH = 32
"""Text width = cross-attention width = the stand-in tagger's embedding width."""


def write_tokenizer(folder: Path) -> None:
    from zephir.backbones.tiny import CONTEXT, bytes_to_unicode

    symbols = list(bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols] + ["<|startoftext|>", "<|endoftext|>"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    (folder / "tokenizer_config.json").write_text(json.dumps({"model_max_length": CONTEXT}))


def write_base(folder: Path, scheduler) -> None:
    """vae, text_encoder, tokenizer, feature_extractor, scheduler of an SD base at toy size."""
    from diffusers import AutoencoderKL
    from transformers import CLIPImageProcessor, CLIPTextConfig, CLIPTextModel

    from zephir.backbones.tiny import CONTEXT

    write_tokenizer(folder / "tokenizer")
    CLIPTextModel(CLIPTextConfig(
        vocab_size=514, hidden_size=WIDTH, intermediate_size=37, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=CONTEXT, bos_token_id=512,
        eos_token_id=513, pad_token_id=513)).save_pretrained(folder / "text_encoder")
    AutoencoderKL(block_out_channels=(4, 4, 4, 4), norm_num_groups=2, latent_channels=4,
                  layers_per_block=1, down_block_types=("DownEncoderBlock2D",) * 4,
                  up_block_types=("UpDecoderBlock2D",) * 4).save_pretrained(folder / "vae")
    CLIPImageProcessor().save_pretrained(folder / "feature_extractor")
    scheduler.save_pretrained(folder / "scheduler")


def write_model(folder: Path, unet_cls, controlnet_cls) -> None:
    """unet/ and controlnet/ (the ControlNet made from the UNet, as upstream trains it)."""
    unet = unet_cls(
        block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4, in_channels=4,
        out_channels=4, sample_size=16, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), attention_head_dim=2,
        cross_attention_dim=WIDTH)
    controlnet = controlnet_cls.from_unet(unet, conditioning_embedding_out_channels=(4, 4, 4, 4))
    with torch.no_grad():  # from_unet zero-initialises the output convolutions: make them act
        for p in controlnet.parameters():
            if not p.abs().sum():
                p.normal_(0, 0.02)
    unet.save_pretrained(folder / "unet")
    controlnet.save_pretrained(folder / "controlnet")


def mark(*folders: Path) -> None:
    from zephir.backbones.sd_x4_upscaler import STANDIN_MARKER

    for folder in folders:
        (folder / STANDIN_MARKER).write_text(json.dumps(
            {"random_init": True, "built_by": "tests/backbones/standins/make_weights.py"}) + "\n")


def seesr(out: Path) -> dict:
    from diffusers import DDPMScheduler

    repo = HERE / "seesr"
    sys.path.insert(0, str(repo))
    from models.controlnet import ControlNetModel
    from models.unet_2d_condition import UNet2DConditionModel
    from ram.models.ram_lora import RAMLora

    write_base(out / "sd2_base", DDPMScheduler())
    write_model(out / "seesr", UNet2DConditionModel, ControlNetModel)
    tagger = RAMLora(image_size=384, vit="swin_l", width=WIDTH)
    torch.save(tagger.state_dict(), out / "ram_swin_large_14m.pth")
    dape = {k: v + 0.01 * torch.randn_like(v) for k, v in tagger.state_dict().items()
            if k.startswith("image_proj")}  # DAPE fine-tunes part of RAM
    torch.save(dape, out / "DAPE.pth")
    bert = out / "hf-hub" / "models--bert-base-uncased" / "snapshots" / "standin"
    bert.mkdir(parents=True)
    (bert / "README.md").write_text("placeholder: the SeeSR stand-in's tagger reads no tokenizer\n")
    mark(out / "sd2_base", out / "seesr")
    return {"seesr_repo": str(repo), "sd2_base": str(out / "sd2_base"),
            "seesr": str(out / "seesr"), "seesr_ram": str(out / "ram_swin_large_14m.pth"),
            "seesr_dape": str(out / "DAPE.pth")}


def pasd(out: Path) -> dict:
    from diffusers import UniPCMultistepScheduler

    repo = HERE / "pasd"
    sys.path.insert(0, str(repo))
    from pasd.models.pasd.controlnet import ControlNetModel
    from pasd.models.pasd.unet_2d_condition import UNet2DConditionModel

    write_base(out / "sd15", UniPCMultistepScheduler())
    write_model(out / "pasd", UNet2DConditionModel, ControlNetModel)
    mark(out / "sd15", out / "pasd")
    return {"pasd_repo": str(repo), "sd15": str(out / "sd15"), "pasd": str(out / "pasd")}


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("seesr", "pasd"):
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(argv[1])
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    weights = seesr(out) if argv[0] == "seesr" else pasd(out)
    print(json.dumps(weights))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
