"""The table 2 / figure 7 baselines together: the prompt read-out, the registry, and every
method through the trainer and a checkpoint round trip (each baseline's own losses: its file)."""
from __future__ import annotations

import math

import pytest
import torch

from zephir import checkpoints, estimator_evaluation, estimator_registry
from zephir.baselines import clip_zeroshot
from zephir.degrade import levels
from zephir.hdclip.model import HDCLIPConfig
from zephir.hdclip.ordinal import bin_centres
from zephir.training import TrainConfig, train

CFG = HDCLIPConfig(arch="zephir-tiny-rn")


def fixed_batch_losses(model, imgs: torch.Tensor, steps: int, lr: float = 1e-3) -> list[float]:
    """The summed loss terms of ``steps`` AdamW steps on one batch of ``imgs`` (2 per type,
    levels 10..90), as the trainer weighs a baseline's terms (each with weight 1)."""
    present = torch.eye(4).repeat(len(imgs) // 4, 1)
    level = present * torch.linspace(10, 90, len(imgs))[:, None]
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    losses = []
    for _ in range(steps):
        loss = sum(model.loss_terms(model(imgs), present, level, terms=()).values())
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    return losses


def test_prompts_carry_the_native_values():
    bins = bin_centres(50.0)  # 0, 50, 100
    texts = clip_zeroshot.prompts(("blur", "jpeg"), bins)
    assert len(texts) == 6
    assert texts[0] == "a blurry photo, blur sigma 0.1"
    assert texts[2] == "a blurry photo, blur sigma 4.0"
    q50 = levels.realizable("jpeg", 50.0)[0]
    assert texts[4] == f"a JPEG compressed photo, quality {q50:.0f}"


def test_readout_reads_type_and_level_from_the_best_prompt():
    bins = torch.tensor([0.0, 50.0, 100.0])
    sim = torch.zeros(2, 4, 3)
    sim[0, 2, 1] = 0.5     # sample 0: type 2 at level 50
    sim[1, 0, 2] = 0.3     # sample 1: type 0 at level 100
    sim[1, 3, 0] = 0.2
    scores, lv = clip_zeroshot.readout(sim, bins, tau=0.03)
    assert torch.allclose(scores.sum(1), torch.ones(2))
    assert scores[0].argmax() == 2 and scores[1].argmax() == 0
    assert lv[0, 2] == 50 and lv[1, 0] == 100 and lv[1, 3] == 0


def test_unknown_method_is_named():
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        estimator_registry.build("nope", CFG)


def test_zero_shot_has_nothing_to_train():
    model = estimator_registry.build("clip_zeroshot", CFG)
    assert not [p for p in model.parameters() if p.requires_grad]
    est = model.estimate_batch(torch.rand(3, 3, 128, 128))
    scores, lv = est.scores, est.levels
    assert scores.shape == lv.shape == (3, 4)
    assert set(lv.flatten().tolist()) <= set(bin_centres(5.0).tolist())


@pytest.mark.parametrize("method", ["clip_zeroshot", "daclip_style", "mmrealsr_style"])
def test_every_method_trains_saves_and_rebuilds(method, labelled, tmp_path):
    metrics = train(labelled, tmp_path, CFG, TrainConfig(steps=2, batch_size=8), method=method,
                    progress=False)
    if method == "mmrealsr_style":  # blur and noise only: no type prediction
        assert math.isnan(metrics["type_acc"]) and 0.0 <= metrics["srocc"] ** 2 <= 1.0
    else:
        assert 0.0 <= metrics["type_acc"] <= 1.0
    model, ckpt = checkpoints.load_pretrained(tmp_path / "model.safetensors")
    assert ckpt["method"] == method and type(model) is type(estimator_registry.build(method, CFG))
    table, _ = estimator_evaluation.evaluate(model, labelled)
    reloaded = checkpoints.load_pretrained(tmp_path / "model.safetensors")[0]
    again, _ = estimator_evaluation.evaluate(reloaded, labelled)
    assert table.equals(again)
    assert ckpt["step"] == (0 if method == "clip_zeroshot" else 2)
