"""CFPGDenoiser in unmodified diffusers pipelines (tiny random-init models, CPU, offline)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

from tests.guidance import tiny_pipelines as tiny
from zephir.guidance import CFPGDenoiser, rectify, wrap_pipeline

PROMPT, NEGATIVE = "a photo of a squirrel", "blurry, noisy, lowres"
IMG = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return tiny.clip_tokenizer(tmp_path_factory.mktemp("clip_tokenizer"))


def _encode(pipe) -> torch.Tensor:
    """The pipeline's own [negative, positive] encoder hidden states, shape (2, L, D)."""
    if isinstance(pipe, tiny.StableDiffusionXLImg2ImgPipeline):
        pos, neg, _, _ = pipe.encode_prompt(PROMPT, negative_prompt=NEGATIVE, device="cpu")
    else:
        pos, neg = pipe.encode_prompt(PROMPT, "cpu", 1, True, NEGATIVE)
    return torch.cat([neg, pos])


CASES: dict[str, tuple[Callable, dict[str, Any]]] = {
    "controlnet_img2img": (tiny.sd_controlnet_img2img,
                           {"image": IMG, "control_image": IMG, "strength": 1.0}),
    "upscale": (tiny.sd_upscale, {"image": IMG[:, :, :16, :16]}),
    "sdxl_img2img": (tiny.sdxl_img2img, {"image": IMG, "strength": 1.0}),
}


@pytest.fixture(scope="module", params=list(CASES))
def case(request, tokenizer):
    build, inputs = CASES[request.param]
    pipe = build(tokenizer)

    def run(**kw):
        return pipe(prompt=PROMPT, negative_prompt=NEGATIVE, num_inference_steps=2,
                    guidance_scale=5.0, output_type="latent",
                    generator=torch.Generator().manual_seed(0), **inputs, **kw).images

    return pipe, run, run()


def test_zero_weights_reproduce_the_plain_pipeline_exactly(case):
    pipe, run, plain = case
    hd = torch.randn_like(_encode(pipe))
    with wrap_pipeline(pipe, hd_encoder_hidden_states=hd, w_par=0.0, w_orth=0.0) as denoiser:
        assert pipe.unet is denoiser and pipe.unet.config is denoiser.unet.config
        assert pipe.unet.dtype == torch.float32 and pipe.unet.device.type == "cpu"
        out = run()
    assert torch.equal(out, plain)


def test_unit_weights_with_the_text_embeddings_reproduce_the_plain_pipeline(case):
    pipe, run, plain = case
    with wrap_pipeline(pipe, hd_encoder_hidden_states=_encode(pipe), w_par=1.0, w_orth=1.0):
        out = run()
    assert torch.equal(out, plain)


def test_other_hd_embeddings_change_the_output_and_the_unet_comes_back(case):
    pipe, run, plain = case
    unet = pipe.unet
    hd = _encode(pipe)
    hd = hd + torch.randn(hd.shape, generator=torch.Generator().manual_seed(2))
    with wrap_pipeline(pipe, hd_encoder_hidden_states=hd, w_par=1.0, w_orth=0.6):
        out = run()
    assert pipe.unet is unet
    assert torch.isfinite(out).all()
    assert (out - plain).abs().max() > 1e-3


def test_two_unet_calls_per_step_with_the_right_batches(tokenizer):
    pipe = tiny.sd_controlnet_img2img(tokenizer)
    calls: list[tuple[tuple, dict]] = []
    hook = pipe.unet.register_forward_pre_hook(
        lambda module, args, kwargs: calls.append((args, kwargs)), with_kwargs=True)
    text = _encode(pipe)
    hd = torch.randn_like(text)
    outputs: list[torch.Tensor] = []
    with wrap_pipeline(pipe, hd_encoder_hidden_states=hd, w_par=1.0, w_orth=0.6) as denoiser:
        denoiser.register_forward_hook(lambda module, args, out: outputs.append(out[0]))
        pipe(prompt=PROMPT, negative_prompt=NEGATIVE, image=IMG, control_image=IMG,
             strength=1.0, num_inference_steps=2, guidance_scale=5.0, output_type="latent",
             generator=torch.Generator().manual_seed(0))
    hook.remove()
    assert len(calls) == 4 and len(outputs) == 2
    for step in range(2):
        (s_text, t_text, e_text), kw_text = calls[2 * step]
        (s_hd, t_hd, e_hd), kw_hd = calls[2 * step + 1]
        assert s_text is s_hd and t_text is t_hd
        torch.testing.assert_close(e_text, text, rtol=0, atol=0)
        # [negative; positive] HD rows, batch of one image
        torch.testing.assert_close(e_hd, hd, rtol=0, atol=0)
        assert kw_hd.keys() == kw_text.keys()
        assert all(kw_hd[k] is kw_text[k] for k in kw_text)
        assert any(r.abs().max() > 0 for r in kw_text["down_block_additional_residuals"])
        expected = rectify(pipe.unet(s_text, t_text, e_text, **kw_text)[0],
                           pipe.unet(s_hd, t_hd, e_hd, **kw_hd)[0], w_par=1.0, w_orth=0.6)
        torch.testing.assert_close(outputs[step], expected, rtol=0, atol=0)


@pytest.fixture(scope="module")
def unet():
    torch.manual_seed(0)
    return tiny.sd_unet(in_channels=7, num_class_embeds=100)


def _inputs(batch: int, width: int = tiny.TEXT_WIDTH) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(batch)
    return (torch.randn(batch, 7, 16, 16, generator=g), torch.tensor(500),
            torch.randn(batch, 9, width, generator=g), torch.randn(2, 5, width, generator=g))


@pytest.mark.parametrize("return_dict", [False, True])
def test_cfg_batch_is_rectified_row_by_row(unet, return_dict):
    sample, t, text, hd = _inputs(4)  # two images: rows [neg, neg, pos, pos]
    labels = torch.tensor([20, 30, 20, 30])
    denoiser = CFPGDenoiser(unet, hd_encoder_hidden_states=hd, w_par=0.7, w_orth=0.2)
    out = denoiser(sample, t, text, class_labels=labels, return_dict=return_dict)
    eps = out[0] if not return_dict else out.sample
    assert isinstance(out, tuple) != return_dict
    hd_rows = torch.stack([hd[0], hd[0], hd[1], hd[1]])
    expected = rectify(unet(sample, t, text, class_labels=labels).sample,
                       unet(sample, t, hd_rows, class_labels=labels).sample,
                       w_par=0.7, w_orth=0.2)
    torch.testing.assert_close(eps, expected, rtol=0, atol=0)


def test_without_cfg_every_row_is_rectified_against_the_positive_hd_row(unet):
    sample, t, text, hd = _inputs(3)
    labels = torch.tensor([20, 20, 20])
    denoiser = CFPGDenoiser(unet, hd_encoder_hidden_states=hd, guidance=False)
    eps = denoiser(sample, t, text, class_labels=labels, return_dict=False)[0]
    expected = rectify(unet(sample, t, text, class_labels=labels).sample,
                       unet(sample, t, hd[1:].repeat(3, 1, 1), class_labels=labels).sample)
    torch.testing.assert_close(eps, expected, rtol=0, atol=0)
    with pytest.raises(AssertionError):
        CFPGDenoiser(unet, hd_encoder_hidden_states=hd)(sample, t, text, class_labels=labels)


def test_hd_added_cond_kwargs_replace_only_their_entries(tokenizer):
    pipe = tiny.sdxl_img2img(tokenizer)
    unet = pipe.unet
    g = torch.Generator().manual_seed(3)
    sample = torch.randn(2, 4, 16, 16, generator=g)
    text = torch.randn(2, 7, 2 * tiny.TEXT_WIDTH, generator=g)
    hd = torch.randn(2, 7, 2 * tiny.TEXT_WIDTH, generator=g)
    added = {"text_embeds": torch.randn(2, tiny.TEXT_WIDTH, generator=g),
             "time_ids": torch.tensor([[32.0, 32, 0, 0, 32, 32]] * 2)}
    hd_pooled = torch.randn(2, tiny.TEXT_WIDTH, generator=g)
    denoiser = CFPGDenoiser(unet, hd_encoder_hidden_states=hd, w_par=1.0, w_orth=1.0,
                            hd_added_cond_kwargs={"text_embeds": hd_pooled})
    eps = denoiser(sample, 10, text, added_cond_kwargs=added, return_dict=False)[0]
    # w = 1: pure HD pass, which took the pooled HD pair and the text pass's time ids
    expected = unet(sample, 10, hd, added_cond_kwargs={**added, "text_embeds": hd_pooled}).sample
    torch.testing.assert_close(eps, expected, rtol=1e-5, atol=1e-6)
    assert denoiser.add_embedding is unet.add_embedding


def test_attributes_fall_through_to_the_wrapped_unet(unet):
    unet.denoise_encoder = torch.nn.Identity()
    try:
        denoiser = CFPGDenoiser(unet, hd_encoder_hidden_states=torch.zeros(2, 3, 32))
        assert denoiser.config is unet.config and denoiser.config.in_channels == 7
        assert denoiser.dtype == unet.dtype and denoiser.device == unet.device
        assert denoiser.conv_in is unet.conv_in
        assert denoiser.denoise_encoder is unet.denoise_encoder
        assert denoiser.unet is unet and denoiser.w_orth == 0.6 and denoiser.guidance
        assert list(denoiser.parameters()) == list(unet.parameters())
        assert all(k.startswith("unet.") for k in denoiser.state_dict())
        assert not hasattr(denoiser, "no_such_attribute")
        denoiser.to(torch.float64)
        assert denoiser.hd_encoder_hidden_states.dtype == torch.float64 == unet.dtype
    finally:
        unet.to(torch.float32)
        del unet.denoise_encoder


def test_the_hd_pair_must_be_a_pair(unet):
    with pytest.raises(AssertionError):
        CFPGDenoiser(unet, hd_encoder_hidden_states=torch.zeros(4, 3, 32))
