"""CFPGDenoiser in unmodified diffusers pipelines (tiny random-init models, CPU, offline).

The references are plain calls of the UNet and the ControlNet, one per conditioning, on the
inputs the pipeline handed the stand-ins (recorded by hooks), with the HD rows built here:
a prediction "conditioned on X" is the ControlNet and the UNet both conditioned on X (SeeSR
``pipelines/pipeline_seesr.py`` 1030-1061, PASD ``pasd/pipelines/pipeline_pasd.py``
1018-1049, diffusers ``pipeline_controlnet_img2img.py`` 1249-1276).
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from tests.guidance import tiny_pipelines as tiny
from zephir.guidance import CFPGDenoiser, rectify, wrap_pipeline

PROMPT, NEGATIVE = "a photo of a squirrel", "blurry, noisy, lowres"
IMG = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
STEPS = 2


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


def _other(text: torch.Tensor, seed: int = 2) -> torch.Tensor:
    return text + torch.randn(text.shape, generator=torch.Generator().manual_seed(seed))


CASES: dict[str, tuple[Callable, dict[str, Any]]] = {
    "sd_img2img": (tiny.sd_img2img, {"image": IMG, "strength": 1.0}),
    "controlnet_img2img": (tiny.sd_controlnet_img2img,
                           {"image": IMG, "control_image": IMG, "strength": 1.0}),
    "controlnet": (tiny.sd_controlnet, {"image": IMG, "height": 32, "width": 32}),
    "upscale": (tiny.sd_upscale, {"image": IMG[:, :, :16, :16]}),
    "sdxl_img2img": (tiny.sdxl_img2img, {"image": IMG, "strength": 1.0}),
}


def _runner(pipe, inputs: dict[str, Any]) -> Callable[..., torch.Tensor]:
    def run(**kw):
        kw = {"guidance_scale": 5.0, **kw}
        return pipe(prompt=PROMPT, negative_prompt=NEGATIVE, num_inference_steps=STEPS,
                    output_type="latent", generator=torch.Generator().manual_seed(0),
                    **inputs, **kw).images

    return run


@pytest.fixture(scope="module", params=list(CASES))
def case(request, tokenizer):
    build, inputs = CASES[request.param]
    pipe = build(tokenizer)
    run = _runner(pipe, inputs)
    return pipe, run, run()


# ------------------------------------------------------------------ recording and references

def _hidden(args: tuple, kwargs: dict) -> torch.Tensor:
    return args[2] if len(args) > 2 else kwargs["encoder_hidden_states"]


def _first(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, tuple) else out.sample


@dataclass
class Record:
    """What the networks saw during a wrapped run."""

    controlnet_in: list = field(default_factory=list)  # every ControlNet call, as the loop made it
    controlnet_rows: list = field(default_factory=list)  # its hidden states as the net ran it
    unet_in: list = field(default_factory=list)  # the stand-in's calls, as the loop made them
    unet_rows: list = field(default_factory=list)  # the UNet's hidden states as it ran
    out: list = field(default_factory=list)  # the stand-in's predictions


@contextmanager
def recording(pipe: Any, **kwargs: Any) -> Iterator[Record]:
    """``wrap_pipeline(pipe, **kwargs)`` with hooks that record every network call."""
    rec, handles = Record(), []
    controlnet, unet = getattr(pipe, "controlnet", None), pipe.unet

    def store(into: list) -> Callable:
        return lambda module, args, kw: into.append((args, dict(kw)))

    # registered before the stand-in's hooks: sees the loop's inputs
    if controlnet is not None:
        handles.append(controlnet.register_forward_pre_hook(store(rec.controlnet_in),
                                                            with_kwargs=True))
    handles.append(unet.register_forward_pre_hook(
        lambda m, a, kw: rec.unet_rows.append(_hidden(a, kw)), with_kwargs=True))
    try:
        with wrap_pipeline(pipe, **kwargs) as denoiser:
            if controlnet is not None:  # after the stand-in's pre-hook: the call as it runs
                handles.append(controlnet.register_forward_pre_hook(
                    lambda m, a, kw: rec.controlnet_rows.append(_hidden(a, kw)),
                    with_kwargs=True))
            handles.append(denoiser.register_forward_pre_hook(store(rec.unet_in),
                                                              with_kwargs=True))
            handles.append(denoiser.register_forward_hook(
                lambda m, a, out: rec.out.append(_first(out))))
            yield rec
    finally:
        for handle in handles:
            handle.remove()


def _rows(hd: torch.Tensor, n: int, *, positive_only: bool) -> torch.Tensor:
    """HD rows for a batch of n, built by hand: [h-] * n/2 + [h+] * n/2, or [h+] * n."""
    if positive_only:
        return torch.stack([hd[1]] * n)
    return torch.stack([hd[0]] * (n // 2) + [hd[1]] * (n // 2))


def _residuals(out: Any) -> tuple[list[torch.Tensor], torch.Tensor]:
    *_, down, mid = out  # diffusers: (down, mid); PASD: (rgbs, down, mid)
    return list(down), mid


def reference(unet, controlnet, cn_call, unet_call, hd: torch.Tensor, *, w_par: float,
              w_orth: float, guidance: bool = True, rerun: bool = True) -> dict[str, Any]:
    """Eq. 12-14 from separate plain calls: ControlNet and UNet on the text rows, ControlNet
    and UNet on the HD rows (``rerun``; else the HD rows take the text rows' residuals)."""
    out: dict[str, Any] = {}
    res = {}
    if cn_call is not None:
        a, k = cn_call
        guess = bool(k.get("guess_mode")) and guidance
        res["t"] = _residuals(controlnet(*a, **k))
        hd_cn = _rows(hd, a[0].shape[0], positive_only=guess or not guidance)
        res["h"] = _residuals(controlnet(*a, **{**k, "encoder_hidden_states": hd_cn}))
        if guess:  # the pipelines' guess mode: zero residuals for the negative rows
            res = {key: ([torch.cat([torch.zeros_like(d), d]) for d in down],
                         torch.cat([torch.zeros_like(mid), mid]))
                   for key, (down, mid) in res.items()}
        out["residuals"] = res
    ua, uk = unet_call
    sample, t = ua[:2]
    uk = {key: v for key, v in uk.items() if key != "encoder_hidden_states"}
    text = _hidden(ua, unet_call[1])
    eps = {}
    for key, hidden in (("t", text),
                        ("h", _rows(hd, sample.shape[0], positive_only=not guidance))):
        kw = dict(uk)
        if res:
            down, mid = res[key if rerun else "t"]
            kw.update(down_block_additional_residuals=down, mid_block_additional_residual=mid)
        eps[key] = _first(unet(sample, t, hidden, **kw))
    out["eps"] = rectify(eps["t"], eps["h"], w_par=w_par, w_orth=w_orth)
    return out


# ------------------------------------------------------------------------------ pipelines

def test_zero_weights_reproduce_the_plain_pipeline_exactly(case):
    pipe, run, plain = case
    hd = torch.randn_like(_encode(pipe))
    with recording(pipe, hd_encoder_hidden_states=hd, w_par=0.0, w_orth=0.0) as rec:
        assert pipe.unet.config is pipe.unet.unet.config
        assert pipe.unet.dtype == torch.float32 and pipe.unet.device.type == "cpu"
        out = run()
    assert torch.equal(out, plain)
    # eq. 14 at w = 0 is the text prediction: the networks run on the pipeline's batch alone
    assert [rows.shape[0] for rows in rec.unet_rows] == [2] * STEPS
    if hasattr(pipe, "controlnet"):
        assert [rows.shape[0] for rows in rec.controlnet_rows] == [2] * STEPS


def test_unit_weights_with_the_text_embeddings_reproduce_the_plain_pipeline(case):
    # eq. 14 at w = 1 is the HD prediction; with HD = text it is the text prediction, up to
    # the rounding of computing it in a batch of four (a row's bits depend on the batch)
    pipe, run, plain = case
    with wrap_pipeline(pipe, hd_encoder_hidden_states=_encode(pipe), w_par=1.0, w_orth=1.0):
        out = run()
    torch.testing.assert_close(out, plain, rtol=1e-4, atol=1e-5)


def test_other_hd_embeddings_change_the_output_and_the_networks_come_back(case):
    pipe, run, plain = case
    unet, controlnet = pipe.unet, getattr(pipe, "controlnet", None)
    with wrap_pipeline(pipe, hd_encoder_hidden_states=_other(_encode(pipe)), w_par=1.0,
                       w_orth=0.6):
        if controlnet is not None:  # hooked, not replaced: the pipelines' isinstance checks
            assert pipe.controlnet is controlnet and controlnet._forward_hooks
        out = run()
    assert pipe.unet is unet
    if controlnet is not None:
        assert not controlnet._forward_hooks and not controlnet._forward_pre_hooks
    assert torch.isfinite(out).all()
    assert (out - plain).abs().max() > 1e-3


CN_CASES = {"controlnet_img2img": CASES["controlnet_img2img"],
            "controlnet": CASES["controlnet"],
            "multi_controlnet_img2img": (tiny.sd_multi_controlnet_img2img,
                                         {"image": IMG, "control_image": [IMG, IMG * 0.5],
                                          "strength": 1.0})}


@pytest.fixture(scope="module", params=list(CN_CASES))
def cn_case(request, tokenizer):
    build, inputs = CN_CASES[request.param]
    pipe = build(tokenizer)
    return pipe, _runner(pipe, inputs)


@pytest.mark.parametrize("mode, guess_mode", [("rerun", False), ("reuse", False),
                                              ("rerun", True)])
def test_controlnet_pipelines_give_eq_14_of_four_separate_predictions(cn_case, mode,
                                                                      guess_mode):
    pipe, run = cn_case
    text = _encode(pipe)
    hd = _other(text)
    w = {"w_par": 0.8, "w_orth": 0.6}
    with recording(pipe, hd_encoder_hidden_states=hd, controlnet=mode, **w) as rec:
        run(guess_mode=guess_mode)
    # one call per network per step, on the rows [t-; t+; h-; h+] (guess mode's ControlNet:
    # [t+; h+]; with "reuse" the ControlNet runs on the text rows alone)
    assert len(rec.controlnet_in) == len(rec.unet_in) == len(rec.unet_rows) == STEPS
    for rows in rec.unet_rows:
        torch.testing.assert_close(rows, torch.cat([text, hd]), rtol=0, atol=0)
    pair = slice(1, 2) if guess_mode else slice(0, 2)
    cn_rows = torch.cat([text[pair], hd[pair]]) if mode == "rerun" else text[pair]
    for rows in rec.controlnet_rows:
        torch.testing.assert_close(rows, cn_rows, rtol=0, atol=0)
    for step in range(STEPS):
        ref = reference(pipe.unet, pipe.controlnet, rec.controlnet_in[step],
                        rec.unet_in[step], hd, rerun=mode == "rerun", **w)
        torch.testing.assert_close(rec.out[step], ref["eps"], rtol=1e-4, atol=1e-5)
        # the other mode is another result, so this comparison can fail
        other = reference(pipe.unet, pipe.controlnet, rec.controlnet_in[step],
                          rec.unet_in[step], hd, rerun=mode != "rerun", **w)
        assert (rec.out[step] - other["eps"]).abs().max() > 1e-3
        (_, mid_t), (down_h, mid_h) = ref["residuals"]["t"], ref["residuals"]["h"]
        assert (mid_h - mid_t).abs().max() > 1e-3  # HD conditioning through the ControlNet
        if guess_mode:  # the negative rows' residuals stay zero, text and HD alike
            assert not mid_t[:1].any() and not mid_h[:1].any()
            assert all(not d[:1].any() for d in down_h)


def test_an_hd_pair_of_another_length_runs_each_network_twice(tokenizer):
    pipe = tiny.sd_controlnet_img2img(tokenizer)
    run = _runner(pipe, CASES["controlnet_img2img"][1])
    hd = torch.randn(2, 5, tiny.TEXT_WIDTH, generator=torch.Generator().manual_seed(4))
    with recording(pipe, hd_encoder_hidden_states=hd, w_par=1.0, w_orth=0.6) as rec:
        run()
    # per step: text rows as given, then the HD rows (77 vs 5 tokens cannot share a tensor)
    assert [r.shape[:2] for r in rec.unet_rows] == [(2, 77), (2, 5)] * STEPS
    assert [r.shape[:2] for r in rec.controlnet_rows] == [(2, 77), (2, 5)] * STEPS
    for step in range(STEPS):
        ref = reference(pipe.unet, pipe.controlnet, rec.controlnet_in[2 * step],
                        rec.unet_in[step], hd, w_par=1.0, w_orth=0.6)
        # the same separate calls as the reference's: the same bits
        torch.testing.assert_close(rec.out[step], ref["eps"], rtol=0, atol=0)


def test_without_cfg_the_rows_are_the_positive_text_and_hd_rows(tokenizer):
    pipe = tiny.sd_controlnet_img2img(tokenizer)
    run = _runner(pipe, CASES["controlnet_img2img"][1])
    text, hd = _encode(pipe), _other(_encode(pipe))
    with recording(pipe, hd_encoder_hidden_states=hd, guidance=False) as rec:
        run(guidance_scale=1.0)
    for rows in rec.unet_rows + rec.controlnet_rows:
        torch.testing.assert_close(rows, torch.cat([text[1:], hd[1:]]), rtol=0, atol=0)
    for step in range(STEPS):
        ref = reference(pipe.unet, pipe.controlnet, rec.controlnet_in[step],
                        rec.unet_in[step], hd, guidance=False, w_par=1.0, w_orth=0.6)
        torch.testing.assert_close(rec.out[step], ref["eps"], rtol=1e-4, atol=1e-5)


def _seesr_step(unet, controlnet, latents, t, prompt_embeds, image, ram, *, tile=12,
                stride=4, scale=5.5) -> torch.Tensor:
    """One step of SeeSR's tiled loop (``pipelines/pipeline_seesr.py`` 1017-1183; PASD's
    ``pipeline_pasd.py`` 1051-1168 is the same without RAM): per tile the ControlNet on the
    CFG batch, then the UNet with its residuals, both given RAM's embeddings by keyword; the
    tiles' predictions averaged where they overlap, then eq. 15."""
    x = torch.cat([latents] * 2)
    pred, count = torch.zeros_like(x), torch.zeros_like(x)
    for x0 in range(0, x.shape[-1] - tile + 1, stride):
        cols = slice(x0, x0 + tile)
        _, down, mid = controlnet(
            x[..., cols], t, encoder_hidden_states=prompt_embeds,
            controlnet_cond=image[..., 2 * x0:2 * (x0 + tile)], conditioning_scale=1.0,
            guess_mode=False, return_dict=False, image_encoder_hidden_states=ram)
        pred[..., cols] += unet(
            x[..., cols], t, encoder_hidden_states=prompt_embeds, cross_attention_kwargs=None,
            down_block_additional_residuals=down, mid_block_additional_residual=mid,
            return_dict=False, image_encoder_hidden_states=ram)[0]
        count[..., cols] += 1
    neg, pos = (pred / count).chunk(2)
    return neg + scale * (pos - neg)


def test_seesr_and_pasd_style_tiled_loops(tokenizer):
    unet, controlnet = tiny.ram_networks()
    g = torch.Generator().manual_seed(5)
    latents = torch.randn(1, 4, 16, 16, generator=g)
    text = torch.randn(2, 77, tiny.TEXT_WIDTH, generator=g)
    hd = torch.randn(2, 77, tiny.TEXT_WIDTH, generator=g)
    ram = torch.randn(1, 3, tiny.TEXT_WIDTH, generator=g).repeat(2, 1, 1)  # per CFG row
    image = torch.rand(2, 3, 32, 32, generator=g)
    loop = SimpleNamespace(unet=unet, controlnet=controlnet)
    with recording(loop, hd_encoder_hidden_states=hd, w_par=1.0, w_orth=0.6) as rec:
        _seesr_step(loop.unet, loop.controlnet, latents, torch.tensor(500), text, image, ram)
    assert len(rec.controlnet_in) == len(rec.unet_in) == 2  # one call per network per tile
    assert all(rows.shape[0] == 4 for rows in rec.unet_rows + rec.controlnet_rows)
    for tile in range(2):
        ref = reference(unet, controlnet, rec.controlnet_in[tile], rec.unet_in[tile], hd,
                        w_par=1.0, w_orth=0.6)
        torch.testing.assert_close(rec.out[tile], ref["eps"], rtol=1e-4, atol=1e-5)
        (_, mid_t), (_, mid_h) = ref["residuals"]["t"], ref["residuals"]["h"]
        assert (mid_h - mid_t).abs().max() > 1e-3


def test_rerun_without_the_controlnet_hooked_is_an_error(tokenizer):
    pipe = tiny.sd_controlnet_img2img(tokenizer)
    unet = pipe.unet
    pipe.unet = CFPGDenoiser(unet, hd_encoder_hidden_states=_other(_encode(pipe)))
    try:
        with pytest.raises(ValueError) as err:
            _runner(pipe, CASES["controlnet_img2img"][1])()
    finally:
        pipe.unet = unet
    assert str(err.value) == (
        "CFPGDenoiser(controlnet='rerun') got down_block_additional_residuals but the "
        "ControlNet did not run on the HD rows before: install it with wrap_pipeline(pipe, ...) "
        "or denoiser.hook_controlnet(pipe.controlnet), or pass controlnet='reuse'")
    with pytest.raises(ValueError, match="controlnet"):
        CFPGDenoiser(unet, hd_encoder_hidden_states=torch.zeros(2, 3, 32), controlnet="twice")


# ------------------------------------------------------------------------- the stand-in alone

@pytest.fixture(scope="module")
def unet():
    torch.manual_seed(0)
    return tiny.sd_unet(in_channels=7, num_class_embeds=100)


def _inputs(batch: int, width: int = tiny.TEXT_WIDTH) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(batch)
    return (torch.randn(batch, 7, 16, 16, generator=g), torch.tensor(500),
            torch.randn(batch, 9, width, generator=g), torch.randn(2, 9, width, generator=g))


@pytest.mark.parametrize("return_dict", [False, True])
def test_cfg_batch_is_rectified_row_by_row(unet, return_dict):
    sample, t, text, hd = _inputs(4)  # two images: rows [neg, neg, pos, pos]
    labels = torch.tensor([20, 30, 20, 30])  # per-row inputs go with their rows
    calls = []
    hook = unet.register_forward_pre_hook(lambda m, a, kw: calls.append(a[0].shape[0]),
                                          with_kwargs=True)
    denoiser = CFPGDenoiser(unet, hd_encoder_hidden_states=hd, w_par=0.7, w_orth=0.2)
    try:
        out = denoiser(sample, t, text, class_labels=labels, return_dict=return_dict)
    finally:
        hook.remove()
    assert calls == [8]
    eps = out[0] if not return_dict else out.sample
    assert isinstance(out, tuple) != return_dict
    hd_rows = torch.stack([hd[0], hd[0], hd[1], hd[1]])
    expected = rectify(unet(sample, t, text, class_labels=labels).sample,
                       unet(sample, t, hd_rows, class_labels=labels).sample,
                       w_par=0.7, w_orth=0.2)
    torch.testing.assert_close(eps, expected, rtol=1e-4, atol=1e-5)


def test_without_cfg_every_row_is_rectified_against_the_positive_hd_row(unet):
    sample, t, text, hd = _inputs(3)
    labels = torch.tensor([20, 20, 20])
    denoiser = CFPGDenoiser(unet, hd_encoder_hidden_states=hd, guidance=False)
    eps = denoiser(sample, t, text, class_labels=labels, return_dict=False)[0]
    expected = rectify(unet(sample, t, text, class_labels=labels).sample,
                       unet(sample, t, hd[1:].repeat(3, 1, 1), class_labels=labels).sample)
    torch.testing.assert_close(eps, expected, rtol=1e-4, atol=1e-5)
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
             "time_ids": torch.tensor([[32.0, 32, 0, 0, 32, 32], [16.0, 16, 0, 0, 16, 16]])}
    hd_pooled = torch.randn(2, tiny.TEXT_WIDTH, generator=g)
    denoiser = CFPGDenoiser(unet, hd_encoder_hidden_states=hd, w_par=1.0, w_orth=1.0,
                            hd_added_cond_kwargs={"text_embeds": hd_pooled})
    eps = denoiser(sample, 10, text, added_cond_kwargs=added, return_dict=False)[0]
    # w = 1: pure HD prediction, which took the pooled HD pair and the text rows' time ids
    expected = unet(sample, 10, hd, added_cond_kwargs={**added, "text_embeds": hd_pooled}).sample
    torch.testing.assert_close(eps, expected, rtol=1e-4, atol=1e-5)
    assert denoiser.add_embedding is unet.add_embedding
    with pytest.raises(KeyError, match="text_embeds"):
        denoiser(sample, 10, text, added_cond_kwargs={"time_ids": added["time_ids"]})
    # without CFG both images' rows are positive: the HD rows take the positive pooled row
    plain = CFPGDenoiser(unet, hd_encoder_hidden_states=hd, w_par=1.0, w_orth=1.0,
                         guidance=False, hd_added_cond_kwargs={"text_embeds": hd_pooled})
    eps = plain(sample, 10, text, added_cond_kwargs=added, return_dict=False)[0]
    positive = {**added, "text_embeds": hd_pooled[1:].repeat(2, 1)}
    expected = unet(sample, 10, hd[1:].repeat(2, 1, 1), added_cond_kwargs=positive).sample
    torch.testing.assert_close(eps, expected, rtol=1e-4, atol=1e-5)


def test_attributes_fall_through_to_the_wrapped_unet(unet):
    unet.denoise_encoder = torch.nn.Identity()
    try:
        denoiser = CFPGDenoiser(unet, hd_encoder_hidden_states=torch.zeros(2, 3, 32))
        assert denoiser.config is unet.config and denoiser.config.in_channels == 7
        assert denoiser.dtype == unet.dtype and denoiser.device == unet.device
        assert denoiser.conv_in is unet.conv_in
        assert denoiser.denoise_encoder is unet.denoise_encoder
        assert denoiser.unet is unet and denoiser.w_orth == 0.6 and denoiser.guidance
        assert denoiser.controlnet == "rerun"
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


def test_the_backbones_guided_block_hooks_the_controlnet_as_asked(tokenizer):
    from zephir.backbones.base import Backbone, Defaults, TextEmbeds

    class ControlNetBackbone(Backbone):
        name, DEFAULTS = "controlnet-test", Defaults(steps=STEPS, scale=5.0)

        def encode_prompt(self, texts):
            raise NotImplementedError

        def _sample(self, lq, cond, *, steps, scale, generator):
            raise NotImplementedError

    pipe = tiny.sd_controlnet_img2img(tokenizer)
    unet, backbone = pipe.unet, ControlNetBackbone(pipe, defaults=ControlNetBackbone.DEFAULTS,
                                                   random_init=True)
    hd = TextEmbeds(_other(_encode(pipe)))
    for mode, hooked in (("rerun", True), ("reuse", False)):
        with backbone._guided(hd, w_par=1.0, w_orth=0.6, scale=5.0, controlnet=mode):
            assert isinstance(pipe.unet, CFPGDenoiser) and pipe.unet.controlnet == mode
            assert bool(pipe.controlnet._forward_pre_hooks) == hooked
        assert pipe.unet is unet and not pipe.controlnet._forward_pre_hooks
