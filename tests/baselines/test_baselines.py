"""The table 2 / figure 7 baselines: prompt read-out, losses that learn, checkpoint round trip."""
from __future__ import annotations

import pytest
import torch

from zephir import checkpoints, evaluation, methods
from zephir.baselines import clip_zeroshot, daclip_style
from zephir.degrade import levels
from zephir.hdclip.model import HDCLIPConfig
from zephir.hdclip.ordinal import bin_centres
from zephir.training import TrainConfig, train

CFG = HDCLIPConfig(arch="zephir-tiny-rn")


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


def test_prompt_targets_pick_the_nearest_bin_of_single_type_rows():
    bins = bin_centres(5.0)
    present = torch.tensor([[1.0, 0, 0, 0], [0, 0, 1, 0], [1, 1, 0, 0]])
    level = torch.tensor([[12.4, 0, 0, 0], [0, 0, 97.6, 0], [50, 50, 0, 0]])
    single, target = daclip_style.prompt_targets(present, level, bins)
    assert single.tolist() == [True, True, False]
    assert target.tolist() == [2, 2 * 21 + 20]   # type-major: (type 0, bin 10), (type 2, bin 100)


def test_unknown_method_is_named():
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        methods.build("nope", CFG)


def test_zero_shot_has_nothing_to_train():
    model = methods.build("clip_zeroshot", CFG)
    assert not [p for p in model.parameters() if p.requires_grad]
    est = model.estimate_batch(torch.rand(3, 3, 128, 128))
    scores, lv = est.scores, est.levels
    assert scores.shape == lv.shape == (3, 4)
    assert set(lv.flatten().tolist()) <= set(bin_centres(5.0).tolist())


@pytest.mark.parametrize("method", ["daclip_style", "mmrealsr_style"])
def test_training_lowers_the_baseline_loss_on_a_fixed_batch(method):
    torch.manual_seed(0)
    model = methods.build(method, CFG).train()
    imgs = torch.rand(8, 3, 128, 128)
    present = torch.eye(4).repeat(2, 1)
    level = present * torch.linspace(10, 90, 8)[:, None]
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    first = None
    for _ in range(15):
        loss = sum(model.loss_terms(model(imgs), present, level, terms=()).values())
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.7 * first


@pytest.mark.parametrize("method", ["clip_zeroshot", "daclip_style", "mmrealsr_style"])
def test_every_method_trains_saves_and_rebuilds(method, labelled, tmp_path):
    metrics = train(labelled, tmp_path, CFG, TrainConfig(steps=2, batch_size=8), method=method,
                    progress=False)
    assert 0.0 <= metrics["type_acc"] <= 1.0
    model, ckpt = checkpoints.from_checkpoint(tmp_path / "checkpoint.pt")
    assert ckpt["method"] == method and type(model) is type(methods.build(method, CFG))
    table, _ = evaluation.evaluate(model, labelled)
    again, _ = evaluation.evaluate(checkpoints.from_checkpoint(tmp_path / "checkpoint.pt")[0],
                                   labelled)
    assert table.equals(again)
    assert ckpt["step"] == (0 if method == "clip_zeroshot" else 2)


def _daclip_standin(path):
    """A stand-in daclip checkpoint in DA-CLIP's layout, on the tiny ViT; returns its parts."""
    import copy

    from zephir.hdclip.model import load_clip

    torch.manual_seed(3)
    clip, _ = load_clip("zephir-tiny-vit")
    control = copy.deepcopy(clip.visual)
    with torch.no_grad():
        for p in control.parameters():
            p.add_(0.05 * torch.randn_like(p))
    state = {f"clip.{k}": v for k, v in clip.state_dict().items()}
    state.update({f"visual.{k}": v for k, v in clip.visual.state_dict().items()})
    for k, v in control.state_dict().items():
        state["visual_control." + k.replace("transformer.", "transformer.transformer.", 1)] = v
    width = control.transformer.width
    for i in range(len(control.transformer.resblocks)):
        state[f"visual_control.transformer.zero_modules.{i}.weight"] = torch.zeros(width, width)
        state[f"visual_control.transformer.zero_modules.{i}.bias"] = torch.zeros(width)
    state["logit_scale"] = torch.tensor(4.6)
    torch.save({"epoch": 1, "state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    return clip, control


def test_released_daclip_weights_are_read_as_its_controller(tmp_path):
    import torch.nn.functional as F

    from zephir.hdclip.model import normalize

    weights = tmp_path / "daclip_ViT-B-32.pt"
    clip, control = _daclip_standin(weights)
    cfg = HDCLIPConfig(arch="zephir-tiny-vit")
    path = checkpoints.import_daclip(weights, cfg, tmp_path / "imported")
    model, ckpt = checkpoints.from_checkpoint(path)
    assert ckpt["method"] == "daclip_released"
    for k, v in control.state_dict().items():
        assert torch.equal(model.tower.state_dict()[k], v), k
    x = torch.rand(2, 3, 128, 128)
    control.eval()
    with torch.no_grad():
        emb = F.normalize(control(normalize(x)), dim=-1)
        text = clip_zeroshot.encode_prompts(clip, _tokenizer(), clip_zeroshot.prompts(
            cfg.types, model.bins), len(cfg.types))
    est = model.estimate_batch(x)
    scores, lv = est.scores, est.levels
    ref_scores, ref_lv = clip_zeroshot.readout(torch.einsum("bd,kjd->bkj", emb, text),
                                               model.bins, cfg.tau)
    assert torch.allclose(scores, ref_scores, atol=1e-5) and torch.equal(lv, ref_lv)


def _tokenizer():
    import open_clip

    return open_clip.get_tokenizer("zephir-tiny-vit")


def test_released_daclip_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="daclip_ViT-B-32.pt: DA-CLIP weights not found"):
        daclip_style.released_state(tmp_path / "daclip_ViT-B-32.pt")
    torch.save({"weight": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="other.pt: not a DA-CLIP checkpoint"):
        daclip_style.released_state(tmp_path / "other.pt")
