"""CFPGGuidance: the diffusers guider API around ``cfpg`` (eq. 12-15)."""
from __future__ import annotations

import pytest
import torch
from diffusers.modular_pipelines.modular_pipeline import BlockState

from zephir.guidance import CFPGGuidance
from zephir.guidance.cfpg import cfpg, rectify

NAMES = ["pred_cond", "pred_uncond", "pred_cond_hd", "pred_uncond_hd"]


def _preds(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {name: torch.randn(2, 4, 8, 8, generator=g) for name in NAMES}


def test_forward_is_cfpg_on_the_four_predictions():
    p = _preds(0)
    guider = CFPGGuidance(guidance_scale=6.0, w_par=0.9, w_orth=0.4)
    out = guider.forward(**p)
    expected = cfpg(p["pred_uncond"], p["pred_cond"], p["pred_uncond_hd"], p["pred_cond_hd"],
                    w_par=0.9, w_orth=0.4, scale=6.0)
    assert torch.equal(out.pred, expected)
    assert out.pred_cond is p["pred_cond"] and out.pred_uncond is p["pred_uncond"]


def test_call_with_prepared_batches_combines_by_identifier():
    p = _preds(1)
    guider = CFPGGuidance(guidance_scale=4.0)
    guider.set_state(step=0, num_inference_steps=10, timestep=torch.tensor(999))
    fields = {"encoder_hidden_states": tuple(torch.full((1,), float(i)) for i in range(4)),
              "sample": torch.zeros(1)}
    batches = guider.prepare_inputs(fields)
    assert [getattr(b, guider._identifier_key) for b in batches] == NAMES
    # each pass reads its own slot of the 4-tuples; plain tensors are shared
    assert [b.encoder_hidden_states.item() for b in batches] == [0.0, 1.0, 2.0, 3.0]
    assert all(b.sample is fields["sample"] for b in batches)
    for b in batches:
        b.noise_pred = p[getattr(b, guider._identifier_key)]
    expected = cfpg(p["pred_uncond"], p["pred_cond"], p["pred_uncond_hd"], p["pred_cond_hd"],
                    scale=4.0)
    assert torch.equal(guider(batches).pred, expected)


def test_conditional_passes_are_the_positive_ones():
    guider = CFPGGuidance(guidance_scale=4.0)
    guider.set_state(step=0, num_inference_steps=10, timestep=torch.tensor(999))
    seen = []
    for _ in range(guider.num_conditions):
        guider.prepare_models(torch.nn.Identity())
        seen.append(guider.is_conditional)
    assert seen == [True, False, True, False]


@pytest.mark.parametrize("setting", ["scale_one", "disabled", "outside_window"])
def test_without_cfg_two_passes_and_the_rectified_positive(setting):
    kwargs = {"scale_one": {"guidance_scale": 1.0}, "disabled": {"enabled": False},
              "outside_window": {"stop": 0.5}}[setting]
    guider = CFPGGuidance(**kwargs)
    guider.set_state(step=7, num_inference_steps=10, timestep=torch.tensor(200))
    assert guider.num_conditions == 2
    state = BlockState(encoder_hidden_states=tuple(torch.full((1,), float(i)) for i in range(4)))
    batches = guider.prepare_inputs_from_block_state(
        state, {"encoder_hidden_states": ("encoder_hidden_states",) * 4})
    assert [getattr(b, guider._identifier_key) for b in batches] == ["pred_cond", "pred_cond_hd"]
    p = _preds(2)
    out = guider.forward(p["pred_cond"], pred_cond_hd=p["pred_cond_hd"])
    assert torch.equal(out.pred, rectify(p["pred_cond"], p["pred_cond_hd"]))


def test_guidance_rescale_uses_the_rectified_positive():
    p = _preds(3)
    guider = CFPGGuidance(guidance_scale=7.0, guidance_rescale=0.7)
    guided = cfpg(p["pred_uncond"], p["pred_cond"], p["pred_uncond_hd"], p["pred_cond_hd"],
                  scale=7.0)
    pos = rectify(p["pred_cond"], p["pred_cond_hd"])
    dims = tuple(range(1, guided.ndim))
    rescaled = guided * pos.std(dim=dims, keepdim=True) / guided.std(dim=dims, keepdim=True)
    expected = 0.7 * rescaled + 0.3 * guided
    torch.testing.assert_close(guider.forward(**p).pred, expected)


def test_config_round_trip_keeps_the_weights():
    guider = CFPGGuidance(guidance_scale=5.0, w_par=0.8, w_orth=0.3).new(w_orth=0.5)
    assert (guider.guidance_scale, guider.w_par, guider.w_orth) == (5.0, 0.8, 0.5)
    assert guider.config.w_orth == 0.5
