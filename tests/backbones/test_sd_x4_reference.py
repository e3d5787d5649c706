"""The SD x4 upscaler adapter (zephir/backbones/sd_x4_upscaler.py, which the tiny backbone is)
against references written another way: the padding and the end-token positions by hand, the
pipeline's call argument by argument (which row is ``prompt_embeds``, which
``negative_prompt_embeds``), the output cropped, rounded and clipped, the stand-in marker read
(issue 29: mutation testing; docs/mutation.md)."""
from __future__ import annotations

import json
import types

import numpy as np
import pytest
import torch

from zephir.backbones import load
from zephir.backbones import sd_x4_upscaler as up
from zephir.backbones.base import TextEmbeds

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_padding_reflects_to_a_multiple_and_leaves_a_fitting_image_alone():
    img = np.arange(5 * 6 * 3, dtype=np.uint8).reshape(5, 6, 3)
    fits = img[:4, :4].copy()
    assert up._pad_to_multiple(fits, 4) is fits
    padded = up._pad_to_multiple(img, 4)  # 5 x 6 -> 8 x 8: rows 3, columns 2 added
    assert padded.shape == (8, 8, 3)
    for y in range(8):
        for x in range(8):
            sy = y if y < 5 else 2 * 4 - y   # reflect about the last row (index 4)
            sx = x if x < 6 else 2 * 5 - x   # and the last column (index 5)
            assert np.array_equal(padded[y, x], img[sy, sx]), (y, x)
    # too small to reflect (padding of 3 on a side of 2): the edge is repeated
    small = img[:2, :2]
    edge = up._pad_to_multiple(small, 5)
    assert edge.shape == (5, 5, 3)
    assert np.array_equal(edge[4, 4], small[1, 1]) and np.array_equal(edge[0, 4], small[0, 1])
    # a padding as long as its side is not reflected (one side alone may not decide)
    for shape, axis in (((2, 6, 3), 0), ((6, 2, 3), 1)):
        part = np.arange(np.prod(shape), dtype=np.uint8).reshape(shape)
        out = up._pad_to_multiple(part, 4)
        out = out[:shape[0]] if axis == 1 else out[:, :shape[1]]  # the other side's own extent
        last = np.take(part, [-1], axis=axis)
        assert np.array_equal(np.take(out, [2, 3], axis=axis),
                              np.concatenate([last, last], axis=axis)), shape
    # reflecting needs both sides to fit: a 1-px height with a wide image takes the edge too
    strip = img[:1, :6]
    assert np.array_equal(up._pad_to_multiple(strip, 2)[1], strip[0])


def test_end_positions_are_the_first_end_token_of_each_padded_text():
    tok = load("tiny").pipe.tokenizer
    texts = ["a cat", "", "a much longer prompt"]
    got = up.eos_positions(tok, texts).tolist()
    for text, pos in zip(texts, got, strict=True):
        ids = tok(text)["input_ids"]
        assert pos == ids.index(tok.eos_token_id) == len(ids) - 1
    # a prompt longer than the context is cut, its end token at the last place
    long = " ".join(["word"] * (tok.model_max_length + 5))
    assert up.eos_positions(tok, [long]).tolist() == [tok.model_max_length - 1]


class _Pipe:
    """Stands in for the pipeline's __call__, recording it; returns a known float image."""

    def __init__(self, pipe, image):
        self.pipe, self.image, self.calls = pipe, image, []

    def __getattr__(self, name):
        return getattr(self.pipe, name)

    def __call__(self, **kw):
        self.calls.append(kw)
        return types.SimpleNamespace(images=[self.image])


def test_the_pipeline_gets_the_positive_row_as_prompt_and_the_negative_as_negative():
    backbone = load("tiny", {"noise_level": 37})
    lq = np.zeros((5, 7, 3), np.uint8)
    # padded 8 x 8 -> 32 x 32, values beyond both ends of [0, 1]
    image = np.random.default_rng(0).uniform(-0.2, 1.2, (32, 32, 3))
    backbone.pipe = _Pipe(backbone.pipe, image)
    cond = TextEmbeds(torch.stack([torch.full((3, 32), 1.0), torch.full((3, 32), 2.0)]).double())
    g = torch.Generator().manual_seed(0)
    out = backbone._sample(lq, cond, steps=4, scale=6.5, generator=g)
    (kw,) = backbone.pipe.calls
    assert kw["prompt_embeds"].unique().tolist() == [2.0]
    assert kw["negative_prompt_embeds"].unique().tolist() == [1.0]
    assert kw["prompt_embeds"].dtype == backbone.pipe.text_encoder.dtype
    assert (kw["num_inference_steps"], kw["guidance_scale"], kw["noise_level"],
            kw["generator"], kw["output_type"]) == (4, 6.5, 37, g, "np")
    assert kw["image"].size == (8, 8)  # PIL: (width, height), padded to the x4 latent grid
    # the output: the LQ's own 20 x 28 region, in 0..255 rounded to the nearest integer
    assert out.shape == (20, 28, 3) and out.dtype == np.uint8 and out.flags.c_contiguous
    ref = np.clip(np.rint(image[:20, :28] * 255.0), 0, 255).astype(np.uint8)
    assert np.array_equal(out, ref) and out.min() == 0 and out.max() == 255


def test_a_folder_is_a_stand_in_only_by_its_marker(tmp_path):
    assert not up.is_standin(tmp_path)
    marker = tmp_path / up.STANDIN_MARKER
    marker.write_text(json.dumps({"random_init": False}))
    assert not up.is_standin(tmp_path)
    marker.write_text(json.dumps({"built_by": "someone"}))
    assert up.is_standin(tmp_path)
    marker.write_text("not json")
    assert up.is_standin(tmp_path)  # a marker that cannot be read still says zephir wrote it


def test_loading_a_diffusers_folder_passes_the_dtype_and_stays_offline(tmp_path, monkeypatch):
    from diffusers import StableDiffusionUpscalePipeline

    from zephir.backbones import tiny

    folder = tiny.save_standin(tmp_path / "upscaler")
    seen = []
    real = StableDiffusionUpscalePipeline.from_pretrained

    def recording(path, **kw):
        seen.append((path, kw))
        return real(path, **kw)

    monkeypatch.setattr(StableDiffusionUpscalePipeline, "from_pretrained", recording)
    # called as the class's own loader, with no device: the CPU
    b = up.UpscalerBackbone.load({"dtype": "bfloat16", "steps": 2},
                                 {"sd_x4_upscaler": str(folder)})
    ((path, kw),) = seen
    dtype_key = next(k for k in kw if k in ("dtype", "torch_dtype"))
    assert path == str(folder) and kw == {"local_files_only": True, dtype_key: torch.bfloat16}
    assert b.pipe.unet.dtype == torch.bfloat16
    assert b.defaults.steps == 2 and b.random_init and b.scale_factor == 4
    assert b.device == torch.device("cpu")
    assert b.weights == {"sd_x4_upscaler": str(folder)}

