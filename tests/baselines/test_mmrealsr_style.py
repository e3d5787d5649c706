"""The MM-RealSR-style baseline: MM-RealSR's margin ranking and anchor losses by hand, levels
read only through their order, the maximum anchors as the synthesiser makes them, and blur /
noise only: the other types are NaN, and the evaluation and table 2 say they are not modelled."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from zephir import estimator_evaluation, estimator_registry
from zephir.baselines import mmrealsr_style as mm
from zephir.degrade import ops
from zephir.hdclip.model import HDCLIPConfig
from zephir.report import registry

from .test_baselines import fixed_batch_losses

CFG = HDCLIPConfig(arch="zephir-tiny-rn")
TYPES = CFG.types  # blur, noise, jpeg, downsample

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small convolutions


def _small(image_size: int = 64) -> mm.MMRealSRStyle:
    return mm.MMRealSRStyle(CFG, image_size, widths=mm.WIDTHS["tiny"])


def test_pairs_are_consecutive_present_rows_ordered_by_level():
    present = torch.tensor([1.0, 0, 1, 1, 1, 1, 1])
    level = torch.tensor([70.0, 0, 20, 5, 9, 33, 33])
    weak, strong = mm.ranking_pairs(present, level)
    # present rows 0, 2, 3, 4, 5, 6 -> pairs (0, 2), (3, 4), (5, 6); the last pair ties
    assert weak.tolist() == [2, 3] and strong.tolist() == [0, 4]


def test_ranking_loss_is_zero_with_the_margin_and_positive_otherwise():
    present = torch.ones(4, 1)
    level = torch.tensor([[10.0], [20.0], [50.0], [40.0]])   # pairs (0<1), (3<2)
    ordered = torch.tensor([[0.1], [0.2], [0.9], [0.5]])
    assert mm.ranking_loss(ordered, present, level).item() == 0.0
    # pair 1 within the margin (0.52 - 0.5 = 0.02 < 0.05), pair 2 reversed
    close = torch.tensor([[0.5], [0.52], [0.3], [0.6]])
    by_hand = ((0.5 - 0.52 + 0.05) + (0.6 - 0.3 + 0.05)) / 2
    assert mm.ranking_loss(close, present, level).item() == pytest.approx(by_hand)
    # types add up, each a mean over its own pairs
    two = mm.ranking_loss(torch.cat([close, close], 1), torch.ones(4, 2),
                          torch.cat([level, level], 1))
    assert two.item() == pytest.approx(2 * by_hand)


def test_anchor_loss_by_hand():
    scores = torch.tensor([[0.2, 0.5], [0.9, 0.1], [0.4, 0.3]])
    max_scores = torch.tensor([[0.7, 0.6], [0.8, 0.9]])          # the first 2 rows
    present = torch.tensor([[0.0, 1], [1, 0], [0, 0]])
    blur = (0.2**2 + 0.4**2) / 2 + (0.7 - 1) ** 2                # clean rows 0, 2; row 0 maxed
    noise = (0.1**2 + 0.3**2) / 2 + (0.9 - 1) ** 2               # clean rows 1, 2; row 1 maxed
    assert mm.anchor_loss(scores, max_scores, present).item() == pytest.approx(blur + noise)


def test_the_loss_reads_the_order_of_the_levels_only():
    torch.manual_seed(0)
    model = _small().train()
    out = model(torch.rand(12, 3, 64, 64))
    present = torch.eye(4).repeat(3, 1)
    level = present * torch.rand(12, 1) * 100
    base = model.loss_terms(out, present, level, terms=())
    # any strictly increasing map of the levels: the same loss
    for warped in (level.pow(2) / 100 + 3, level.argsort(0).argsort(0).float() * present):
        again = model.loss_terms(out, present, warped, terms=())
        assert all(torch.equal(base[k], again[k]) for k in base)
    # the loss does see the order: reverse it
    flipped = model.loss_terms(out, present, present * (100 - level), terms=())
    assert not torch.equal(base["ranking"], flipped["ranking"])


def test_maximum_anchors_are_the_synthesisers_degradations_at_level_100():
    rng = np.random.default_rng(0)
    img = (rng.integers(0, 256, (40, 48, 3)) / 255).astype(np.float32)
    x = torch.from_numpy(img).permute(2, 0, 1)[None]
    blurred = mm.max_degradation(x, "blur", torch.Generator())[0].permute(1, 2, 0).numpy()
    assert np.abs(blurred - ops.gaussian_blur(img, 4.0)).max() <= 0.5 / 255 + 1e-6
    noisy = mm.max_degradation(torch.full((1, 3, 64, 64), 0.5), "noise",
                               torch.Generator().manual_seed(1))
    assert (noisy - 0.5).std().item() == pytest.approx(40 / 255, rel=0.05)
    assert torch.equal(noisy * 255, (noisy * 255).round())       # stored samples are 8-bit
    with pytest.raises(ValueError, match="blur and noise only"):
        mm.max_degradation(x, "jpeg", torch.Generator())


def test_anchor_noise_follows_the_saved_step_count():
    torch.manual_seed(0)
    a = _small().train()
    b = _small().train()
    b.load_state_dict(a.state_dict())
    x = torch.rand(6, 3, 64, 64)
    first = a(x)
    assert a.draws.item() == 1 and first.max_degrees.shape == (2, 2)  # a third of 6 rows
    assert torch.equal(b(x).max_degrees, first.max_degrees)         # same count, same noise
    assert not torch.equal(a(x).max_degrees, first.max_degrees)     # next step, new noise
    assert a.eval()(x).max_degrees is None


def test_unmodelled_types_are_nan():
    model = estimator_registry.build("mmrealsr_style", CFG).eval()
    assert model.modelled == ["blur", "noise"] and model.level_scale is False
    est = model.estimate_batch(torch.rand(3, 3, 128, 128))
    assert est.scores.shape == est.levels.shape == (3, 4)
    assert torch.isnan(est.scores[:, 2:]).all() and torch.isnan(est.levels[:, 2:]).all()
    assert torch.equal(est.levels[:, :2], 100 * est.scores[:, :2])
    assert ((est.scores[:, :2] > 0) & (est.scores[:, :2] < 1)).all()


def test_training_lowers_the_loss_on_a_fixed_batch():
    torch.manual_seed(0)
    model = _small().train()
    losses = fixed_batch_losses(model, torch.rand(8, 3, 64, 64), steps=30)
    assert min(losses[-5:]) < 0.5 * losses[0]


def test_evaluation_and_table2_show_unmodelled_types_as_such(labelled, tmp_path):
    torch.manual_seed(0)
    model = estimator_registry.build("mmrealsr_style", CFG)
    ckpt = {"method": "mmrealsr_style", "hdclip": CFG.to_dict(), "random_init": True,
            "train": {"steps": 0}}
    result = estimator_evaluation.write_evaluation(model, ckpt, tmp_path / "model.safetensors",
                                                   labelled, tmp_path / "eval")
    table = pd.read_csv(tmp_path / "eval" / "predictions.csv")
    assert table[["jpeg_score", "jpeg_pred", "downsample_pred"]].isna().all().all()
    assert table["blur_pred"].notna().all() and table["pred_type"].isna().all()
    m = json.loads((tmp_path / "eval" / "metrics.json").read_text())["metrics"]
    assert m["not_modelled"] == ["jpeg", "downsample"] and m["level_scale"] is False
    single = m["single"]
    assert math.isnan(single["type_acc"]) and math.isnan(single["mae"])
    assert not math.isnan(single["srocc"])
    blur_noise = table["types"].isin(["blur", "noise"]).sum()
    assert single["n_levels"] == blur_noise < single["n"] == table["types"].isin(TYPES).sum()
    assert math.isnan(single["jpeg_srocc"]) and not math.isnan(single["blur_srocc"])
    mix = m["mixtures"]
    assert math.isnan(mix["type_recall"]) and math.isnan(mix["mae"])
    assert mix["samples"] == (~table["types"].isin(TYPES)).sum()
    assert result["metrics"]["single"]["n"] == single["n"]

    paths = registry.make_table("table2", [tmp_path / "eval" / "metrics.json"], "h",
                                tmp_path / "t2")
    md = paths[1].read_text()
    assert "| MM-RealSR-style |            – |   – |" in md
    assert "MM-RealSR-style models blur and noise only: no type prediction" in md
    assert f"pool the {blur_noise} of the {single['n']} samples" in md and "no MAE" in md
    beyond = registry.make_table("table2_beyond", [tmp_path / "eval" / "metrics.json"], "h",
                                 tmp_path / "tb")[1].read_text()
    assert "no type recall" in beyond and f"of the {mix['samples']} mixtures" in beyond

    fig = registry.draw_figure(7, tmp_path / "fig7.png",
                               predictions=[tmp_path / "eval" / "predictions.csv"],
                               metrics=[tmp_path / "eval" / "metrics.json"])
    assert fig.stat().st_size > 0
