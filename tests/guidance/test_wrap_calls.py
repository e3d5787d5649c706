"""CFPGDenoiser with a hooked ControlNet, called the ways the pipelines call it: keyword or
positional arguments, ``return_dict=True`` outputs, guess mode with two images per prompt, no
``guess_mode`` argument, and ``controlnet="reuse"``; each against eq. 14 of separate plain calls
of the ControlNet and the UNet (the rows written out here), and the errors' own words."""
from __future__ import annotations

import pytest
import torch

from zephir.guidance.cfpg import rectify
from zephir.guidance.wrap import CFPGDenoiser, _join, _map_tensors, _pair_rows

from . import tiny_pipelines as tiny

W = {"w_par": 1.0, "w_orth": 0.6}


@pytest.fixture(scope="module")
def nets():
    torch.manual_seed(0)
    return tiny.sd_unet().eval(), tiny.controlnet().eval()


def _inputs(n: int):
    """A CFG batch of ``n`` images per half: latents, timestep, text rows [neg x n; pos x n],
    the ControlNet's image, and an HD pair of the text's length."""
    g = torch.Generator().manual_seed(n)
    text = torch.cat([torch.randn(1, 7, tiny.TEXT_WIDTH, generator=g).repeat(n, 1, 1),
                      torch.randn(1, 7, tiny.TEXT_WIDTH, generator=g).repeat(n, 1, 1)])
    return (torch.randn(2 * n, 4, 16, 16, generator=g), torch.tensor(400), text,
            torch.rand(2 * n, 3, 32, 32, generator=g),
            torch.randn(2, 7, tiny.TEXT_WIDTH, generator=g))


def _hd_rows(hd: torch.Tensor, n: int, positive_only: bool = False) -> torch.Tensor:
    """The HD pair for a CFG batch written out: n negative rows then n positive ones."""
    if positive_only:
        return torch.stack([hd[1]] * n)
    return torch.stack([hd[0]] * n + [hd[1]] * n)


def _plain(unet, controlnet, sample, t, hidden, cond, *, cn_rows=None, guess=False):
    """The UNet's prediction with the ControlNet's residuals, both called plainly."""
    rows = slice(None) if cn_rows is None else cn_rows
    down, mid = controlnet(sample[rows], t, encoder_hidden_states=hidden[rows],
                           controlnet_cond=cond[rows], guess_mode=guess, return_dict=False)
    if guess:
        down = [torch.cat([torch.zeros_like(d), d]) for d in down]
        mid = torch.cat([torch.zeros_like(mid), mid])
    return unet(sample, t, hidden, down_block_additional_residuals=down,
                mid_block_additional_residual=mid).sample


@torch.no_grad()
@pytest.mark.parametrize("style", ["keywords", "positional"])
def test_controlnet_called_by_keyword_or_position_with_an_output_object(nets, style):
    """Two images per prompt, no guess_mode argument (it defaults to False), the ControlNet's
    output a ControlNetOutput (return_dict=True)."""
    unet, controlnet = nets
    sample, t, text, cond, hd = _inputs(2)
    den = CFPGDenoiser(unet, hd_encoder_hidden_states=hd, **W)
    hooks = den.hook_controlnet(controlnet)
    try:
        if style == "keywords":
            out = controlnet(sample=sample, timestep=t, encoder_hidden_states=text,
                             controlnet_cond=cond)
        else:
            out = controlnet(sample, t, text, cond)
        eps = den(sample, t, text, down_block_additional_residuals=out.down_block_res_samples,
                  mid_block_additional_residual=out.mid_block_res_sample).sample
    finally:
        hooks.remove()
    expected = rectify(_plain(unet, controlnet, sample, t, text, cond),
                       _plain(unet, controlnet, sample, t, _hd_rows(hd, 2), cond), **W)
    torch.testing.assert_close(eps, expected, rtol=1e-4, atol=1e-5)


@torch.no_grad()
def test_guess_mode_with_two_images_per_prompt(nets):
    """Guess mode: the pipeline runs the ControlNet on the positive rows only and gives the
    UNet [zeros; r]; the HD rows get [zeros; r_hd] of the ControlNet on the positive HD rows."""
    unet, controlnet = nets
    sample, t, text, cond, hd = _inputs(2)
    pos = slice(2, 4)
    den = CFPGDenoiser(unet, hd_encoder_hidden_states=hd, **W)
    hooks = den.hook_controlnet(controlnet)
    try:
        down, mid = controlnet(sample[pos], t, encoder_hidden_states=text[pos],
                               controlnet_cond=cond[pos], guess_mode=True, return_dict=False)
        down = [torch.cat([torch.zeros_like(d), d]) for d in down]
        mid = torch.cat([torch.zeros_like(mid), mid])
        eps = den(sample, t, text, down_block_additional_residuals=down,
                  mid_block_additional_residual=mid).sample
    finally:
        hooks.remove()
    expected = rectify(
        _plain(unet, controlnet, sample, t, text, cond, cn_rows=pos, guess=True),
        _plain(unet, controlnet, sample, t, _hd_rows(hd, 2), cond, cn_rows=pos, guess=True),
        **W)
    torch.testing.assert_close(eps, expected, rtol=1e-4, atol=1e-5)


@torch.no_grad()
def test_a_residual_the_pipeline_changed_is_an_error_that_says_what_to_do(nets):
    unet, controlnet = nets
    sample, t, text, cond, hd = _inputs(1)
    den = CFPGDenoiser(unet, hd_encoder_hidden_states=hd, **W)
    hooks = den.hook_controlnet(controlnet)
    try:
        down, mid = controlnet(sample, t, encoder_hidden_states=text, controlnet_cond=cond,
                               return_dict=False)
        with pytest.raises(ValueError) as err:
            den(sample, t, text, down_block_additional_residuals=[d * 0.5 for d in down],
                mid_block_additional_residual=mid)
    finally:
        hooks.remove()
    assert str(err.value) == (
        "CFPGDenoiser(controlnet='rerun'): a ControlNet residual reached the UNet that is "
        "neither the ControlNet's output nor guess mode's [zeros; output]; the pipeline "
        "changes the residuals in a way the stand-in does not know (use controlnet='reuse')")


@torch.no_grad()
def test_reuse_leaves_a_hooked_controlnet_on_the_pipelines_rows(nets):
    """controlnet='reuse': a hooked ControlNet still runs on the pipeline's rows only, and the
    HD rows take the text rows' residuals."""
    unet, controlnet = nets
    sample, t, text, cond, hd = _inputs(1)
    seen = []
    den = CFPGDenoiser(unet, hd_encoder_hidden_states=hd, controlnet="reuse", **W)
    hooks = den.hook_controlnet(controlnet)
    # registered after the stand-in's pre-hook: it sees the call as the ControlNet runs it
    probe = controlnet.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs["sample"].shape[0]), with_kwargs=True)
    try:
        down, mid = controlnet(sample=sample, timestep=t, encoder_hidden_states=text,
                               controlnet_cond=cond, return_dict=False)
        eps = den(sample, t, text, down_block_additional_residuals=down,
                  mid_block_additional_residual=mid).sample
    finally:
        hooks.remove()
        probe.remove()
    assert seen == [2] and down[0].shape[0] == 2
    kw = {"down_block_additional_residuals": down, "mid_block_additional_residual": mid}
    expected = rectify(unet(sample, t, text, **kw).sample,
                       unet(sample, t, _hd_rows(hd, 1), **kw).sample, **W)
    torch.testing.assert_close(eps, expected, rtol=1e-4, atol=1e-5)


def test_structure_helpers():
    """The helpers that carry a call's inputs through nested containers."""
    t = torch.arange(6.0).reshape(3, 2)
    mapped = _map_tensors({"a": t, "b": [t, 1]}, lambda x: x + 1)
    assert torch.equal(mapped["a"], t + 1) and torch.equal(mapped["b"][0], t + 1)
    assert mapped["b"][1] == 1
    with pytest.raises(ValueError):  # a structure and its HD counterpart differ in length
        _join((t, t), (t, t, t), batch=3)
    with pytest.raises(AssertionError, match=r"got \(3, 2\)"):
        _pair_rows(t, batch=2, positive_only=False)


@torch.no_grad()
def test_the_hd_pair_takes_the_prompts_dtype(nets):
    """An HD pair given in float64 is cast to the text rows' dtype for the call: the same
    prediction as the float32 pair."""
    unet, _ = nets
    sample, t, text, _, hd = _inputs(1)
    eps = {}
    for dtype in (torch.float32, torch.float64):
        den = CFPGDenoiser(unet, hd_encoder_hidden_states=hd.to(dtype), **W)
        eps[dtype] = den(sample, t, text).sample
    expected = rectify(unet(sample, t, text).sample, unet(sample, t, _hd_rows(hd, 1)).sample,
                       **W)
    torch.testing.assert_close(eps[torch.float32], expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(eps[torch.float64], eps[torch.float32], rtol=0, atol=0)


def test_the_stand_ins_errors_say_what_is_wrong(nets):
    unet, _ = nets
    with pytest.raises(AssertionError) as err:
        CFPGDenoiser(unet, hd_encoder_hidden_states=torch.zeros(3, 7, tiny.TEXT_WIDTH))
    assert str(err.value) == ("hd_encoder_hidden_states must be a (2, L, D) [negative, "
                              f"positive] pair, got (3, 7, {tiny.TEXT_WIDTH})")
    with pytest.raises(ValueError) as err:
        CFPGDenoiser(unet, hd_encoder_hidden_states=torch.zeros(2, 7, tiny.TEXT_WIDTH),
                     controlnet="twice")
    assert str(err.value) == "controlnet: expected one of rerun, reuse, got 'twice'"
    sample, t, text, _, hd = _inputs(1)
    den = CFPGDenoiser(unet, hd_encoder_hidden_states=hd, **W)
    with pytest.raises(AssertionError) as err:
        den(sample, t, text[:1])
    assert str(err.value) == "encoder_hidden_states has 1 rows, sample 2"
