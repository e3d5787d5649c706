"""The tiny backbone's files (zephir/backbones/tiny.py): the offline CLIP tokenizer written into
any folder, the stand-in's marker word for word, and the error when open_clip's BPE file cannot
be found (issue 29: mutation testing; docs/mutation.md)."""
from __future__ import annotations

import importlib.util
import json
import types
import warnings

import pytest
import torch

from zephir.backbones import canonical, tiny
from zephir.backbones.sd_x4_upscaler import STANDIN_MARKER, UpscalerBackbone, is_standin
from zephir.backbones.tiny import TinyBackbone


def test_the_tokenizer_is_written_into_a_folder_that_does_not_exist_yet(tmp_path):
    folder = tiny.write_clip_tokenizer(tmp_path / "a" / "b")
    vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    assert len(vocab) == tiny.VOCAB and vocab["<|endoftext|>"] == tiny.VOCAB - 1
    assert (folder / "merges.txt").read_text(encoding="utf-8").startswith("#version: 0.2\n")
    assert json.loads((folder / "tokenizer_config.json").read_text()) == {
        "model_max_length": tiny.CONTEXT}


def test_the_stand_ins_marker_says_random_init_who_built_it_and_the_seed(tmp_path):
    folder = tiny.save_standin(tmp_path / "standin", seed=3)
    text = (folder / STANDIN_MARKER).read_text()
    assert text.endswith("}\n") and text.count("\n") == 1
    assert json.loads(text) == {"random_init": True,
                                "built_by": "zephir.backbones.tiny.save_standin", "seed": 3}
    assert is_standin(folder)


@pytest.mark.parametrize("spec", [None, types.SimpleNamespace(submodule_search_locations=[])])
def test_without_open_clip_the_tokenizer_says_what_to_install(spec, monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: spec)
    with pytest.raises(FileNotFoundError) as err:
        tiny.bpe_file()
    assert str(err.value) == ("the tiny backbone's tokenizer reads open_clip's bundled BPE "
                              "file: pip install open_clip_torch")


def test_the_tiny_pipelines_layout_is_the_one_it_declares():
    """The stand-in's components as build_pipeline declares them: the embedded default's
    restorations depend on every one of these numbers."""
    pipe = tiny.build_pipeline()
    te = pipe.text_encoder.config
    assert (te.vocab_size, te.hidden_size, te.intermediate_size, te.num_hidden_layers,
            te.num_attention_heads, te.max_position_embeddings) == (
        tiny.VOCAB, tiny.TEXT_WIDTH, 37, 2, 4, tiny.CONTEXT)
    assert (te.bos_token_id, te.eos_token_id, te.pad_token_id) == (
        tiny.VOCAB - 2, tiny.VOCAB - 1, tiny.VOCAB - 1)
    un = pipe.unet.config
    assert (tuple(un.block_out_channels), un.layers_per_block, un.norm_num_groups,
            un.in_channels, un.out_channels, un.sample_size, un.attention_head_dim,
            un.cross_attention_dim, un.num_class_embeds) == (
        (8, 16), 1, 4, 7, 4, 32, 2, tiny.TEXT_WIDTH, 1000)
    assert tuple(un.down_block_types) == ("CrossAttnDownBlock2D", "DownBlock2D")
    assert tuple(un.up_block_types) == ("UpBlock2D", "CrossAttnUpBlock2D")
    va = pipe.vae.config
    assert (tuple(va.block_out_channels), va.norm_num_groups, va.latent_channels,
            va.force_upcast, va.scaling_factor) == ((4, 8, 8), 2, 4, False, 0.08333)
    assert tuple(va.down_block_types) == ("DownEncoderBlock2D",) * 3
    assert tuple(va.up_block_types) == ("UpDecoderBlock2D",) * 3
    assert pipe.config.max_noise_level == 350
    assert pipe.safety_checker is None and pipe.feature_extractor is None
    assert pipe.watermarker is None
    assert type(pipe.scheduler).__name__ == "DDIMScheduler"
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    assert type(pipe.low_res_scheduler).__name__ == "DDPMScheduler"
    assert pipe._progress_bar_config == {"disable": True}


def test_the_tiny_pipeline_builds_without_a_warning():
    """Its VAE declares the upscaler's scaling factor itself: diffusers'
    StableDiffusionUpscalePipeline resets any other value to 0.08333 with a FutureWarning
    (pipeline_stable_diffusion_upscale.py, ``__init__``), so a wrong or missing factor shows
    only as that warning (mutants 85, 92 and 109 of build_pipeline)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tiny.build_pipeline()


def test_the_tiny_backbone_loads_in_the_dtype_asked_and_float32_otherwise():
    assert TinyBackbone.load({"dtype": "bfloat16"}).pipe.unet.dtype == torch.bfloat16
    assert TinyBackbone.load({"dtype": "float32"}).pipe.unet.dtype == torch.float32
    assert TinyBackbone.load(None, None, "cpu").pipe.unet.dtype == torch.float32


def test_the_tiny_backbone_is_built_from_its_seed_setting_on_the_cpu():
    default, other = TinyBackbone.load(), TinyBackbone.load({"seed": 5})
    assert default.device == torch.device("cpu") == other.device
    assert other.weights == {"tiny": "built in code, torch.manual_seed(5)"}
    a, b = (next(x.pipe.unet.parameters()) for x in (default, other))
    assert not torch.equal(a, b)
    assert torch.equal(a, next(TinyBackbone.load({"seed": 0}).pipe.unet.parameters()))

def test_an_upscaler_backbone_silences_its_pipelines_progress_bar():
    pipe = tiny.build_pipeline()
    pipe.set_progress_bar_config(disable=False)
    b = UpscalerBackbone(pipe, random_init=True)
    assert pipe._progress_bar_config == {"disable": True}
    assert b.device == torch.device("cpu") and b.scale_factor == pipe.vae_scale_factor == 4


def test_an_unknown_backbone_lists_the_known_ones():
    with pytest.raises(ValueError) as err:
        canonical("esrgan")
    assert str(err.value) == ("unknown backbone 'esrgan'; expected one of tiny, sd-x4-upscaler, "
                              "faithdiff, seesr, pasd")
