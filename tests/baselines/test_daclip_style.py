"""The DA-CLIP-style baseline: DA-CLIP's batch-wise contrastive loss by hand, its controller
wiring (frozen block i gets controller block L-1-i, as DA-CLIP's ``control.pop()``), the content
loss, and DA-CLIP's released checkpoint layout read into the same model."""
from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from zephir import checkpoints, estimator_registry
from zephir.baselines import clip_zeroshot, daclip_style
from zephir.estimator_interface import SemanticTargets
from zephir.hdclip.model import HDCLIPConfig, load_clip, normalize
from zephir.hdclip.ordinal import bin_centres

from .test_baselines import fixed_batch_losses

VIT = HDCLIPConfig(arch="zephir-tiny-vit", controller=True)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _clip_loss_by_hand(img: torch.Tensor, txt: torch.Tensor, scale: float) -> float:
    """CLIP's loss written out: image i against every text of the batch, text i against every
    image, the i-th the positive; the mean of both cross-entropies."""
    n, total = len(img), 0.0
    for i in range(n):
        row = [scale * float(img[i] @ txt[j]) for j in range(n)]
        col = [scale * float(txt[i] @ img[j]) for j in range(n)]
        total -= row[i] - math.log(sum(math.exp(r) for r in row))
        total -= col[i] - math.log(sum(math.exp(c) for c in col))
    return total / (2 * n)


def test_prompt_targets_pick_the_nearest_bin_of_single_type_rows():
    bins = bin_centres(5.0)
    present = torch.tensor([[1.0, 0, 0, 0], [0, 0, 1, 0], [1, 1, 0, 0]])
    level = torch.tensor([[12.4, 0, 0, 0], [0, 0, 97.6, 0], [50, 50, 0, 0]])
    single, target = daclip_style.prompt_targets(present, level, bins)
    assert single.tolist() == [True, True, False]
    assert target.tolist() == [2, 2 * 21 + 20]   # type-major: (type 0, bin 10), (type 2, bin 100)


def test_degradation_loss_is_daclips_batchwise_clip_loss():
    torch.manual_seed(0)
    model = estimator_registry.build("daclip_style", HDCLIPConfig(arch="zephir-tiny-vit"))
    with torch.no_grad():
        model.logit_scale.fill_(math.log(20.0))
    present = torch.tensor([[1.0, 0, 0, 0], [0, 1, 0, 0], [1, 0, 1, 0], [1, 0, 0, 0],
                            [0, 0, 0, 1]])
    level = torch.tensor([[12.0, 0, 0, 0], [0, 61, 0, 0], [30, 0, 40, 0], [12.4, 0, 0, 0],
                          [0, 0, 0, 99]])
    out = model(torch.rand(5, 3, 128, 128))
    terms = model.loss_terms(out, present, level, terms=())
    assert set(terms) == {"degradation"}
    # the single-type rows 0, 1, 3, 4 and their prompts (type, nearest bin of 5): rows 0 and 3
    # share (blur, 10), so each one's text is a negative of the other, as in DA-CLIP
    text = model.text[[0, 1, 0, 3], [2, 12, 2, 20]]
    deg = out.degradation[[0, 1, 3, 4]].detach()
    assert terms["degradation"].item() == pytest.approx(_clip_loss_by_hand(deg, text, 20.0),
                                                        rel=1e-5)
    with torch.no_grad():
        model.logit_scale.fill_(math.log(500.0))
    assert model.scale().item() == pytest.approx(100.0)  # DA-CLIP clamps it to 100
    mixed_only = model.loss_terms(out, present[2:3], level[2:3], terms=())["degradation"]
    assert mixed_only.item() == 0.0


def _daclip_reference(frozen, control, zero, x: torch.Tensor):
    """DA-CLIP's ``encode_image(control=True)`` written out on open_clip's ViT: the controller
    collects ``zero_j(block_j(h))``; after each frozen block, ``control.pop()`` (the list's
    last entry) is added. Returns (degradation, content) unit embeddings."""
    x = normalize(x)
    h, hidden = control._embeds(x), []
    for block, z in zip(control.transformer.resblocks, zero):
        h = block(h)
        hidden.append(z(h))
    f = frozen._embeds(x)
    for block in frozen.transformer.resblocks:
        f = block(f) + hidden.pop()
    deg, content = control._pool(h)[0] @ control.proj, frozen._pool(f)[0] @ frozen.proj
    return F.normalize(deg, dim=-1), F.normalize(content, dim=-1)


def _perturb(module: torch.nn.Module, scale: float = 0.05) -> None:
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn_like(p))


def test_frozen_block_i_gets_controller_block_l_minus_1_minus_i():
    torch.manual_seed(1)
    model = estimator_registry.build("daclip_style", VIT).eval()
    assert model.content and len(model.zero_modules) == len(model.tower.transformer.resblocks)
    assert model.clip.visual.transformer.batch_first  # the reference below assumes it
    _perturb(model.tower)
    _perturb(model.zero_modules[-1], 0.2)  # only the last controller block feeds anything
    x = torch.rand(2, 3, 128, 128)
    with torch.no_grad():
        out = model(x, semantic=True)
        ref_deg, ref_content = _daclip_reference(model.clip.visual, model.tower,
                                                 model.zero_modules, x)
        plain = model.encode_semantic(normalize(x))
    assert torch.allclose(out.degradation, ref_deg, atol=1e-5)
    assert torch.allclose(out.semantic, ref_content, atol=1e-5)
    assert not torch.allclose(out.semantic, plain, atol=1e-3)  # the residual did land
    # the same residual after the last frozen block instead (no reversal) differs
    last = model.clip.visual.transformer.resblocks[-1]
    with torch.no_grad():
        h = model.tower.transformer.resblocks[-1]
        captured = []
        hooks = [h.register_forward_hook(lambda m, a, o: captured.append(o)),
                 last.register_forward_hook(lambda m, a, o: o + model.zero_modules[-1](
                     captured[-1]))]
        model.tower(normalize(x))
        unreversed = F.normalize(model.clip.visual(normalize(x)), dim=-1)
        for hook in hooks:
            hook.remove()
    assert not torch.allclose(unreversed, ref_content, atol=1e-3)


def test_content_loss_trains_the_controller_through_the_zero_modules():
    torch.manual_seed(2)
    model = estimator_registry.build("daclip_style", VIT).train()
    _perturb(model.zero_modules)
    present = torch.eye(4)
    level = present * 50
    out = model(torch.rand(4, 3, 128, 128), semantic=True)
    target = F.normalize(torch.randn(4, out.semantic.shape[1]), dim=-1)
    targets = SemanticTargets(image=target, text=None, same=torch.eye(4, dtype=torch.bool))
    terms = model.loss_terms(out, present, level, terms=["clip"], targets=targets)
    assert terms["clip"].item() == pytest.approx(
        _clip_loss_by_hand(out.semantic.detach(), target, model.scale().item()), rel=1e-5)
    terms["clip"].backward()
    assert model.zero_modules[0].weight.grad.abs().sum() > 0
    assert model.tower.transformer.resblocks[0].mlp.c_fc.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.clip.parameters())


def test_a_resnet_tower_has_no_content_branch():
    model = estimator_registry.build("daclip_style",
                                     HDCLIPConfig(arch="zephir-tiny-rn", controller=True))
    assert not model.content and len(model.zero_modules) == 0
    with pytest.raises(ValueError, match="transformer tower"):
        model(torch.rand(1, 3, 128, 128), semantic=True)


@pytest.mark.parametrize("arch", ["zephir-tiny-rn", "zephir-tiny-vit"])
def test_training_lowers_the_loss_on_a_fixed_batch(arch):
    torch.manual_seed(0)
    model = estimator_registry.build("daclip_style", HDCLIPConfig(arch=arch)).train()
    losses = fixed_batch_losses(model, torch.rand(8, 3, 128, 128), steps=12)
    assert min(losses[-3:]) < 0.7 * losses[0]


# ---------------------------------------------------------------------------- released weights

def _daclip_standin(path):
    """A stand-in DA-CLIP checkpoint in DA-CLIP's layout on the tiny ViT; returns its parts."""
    torch.manual_seed(3)
    clip, _ = load_clip("zephir-tiny-vit")
    control = copy.deepcopy(clip.visual)
    _perturb(control)
    width = control.transformer.width
    zero = torch.nn.ModuleList(torch.nn.Linear(width, width) for _ in control.transformer.resblocks)
    _perturb(zero, 0.1)
    state = {f"clip.{k}": v for k, v in clip.state_dict().items()}
    state.update({f"visual.{k}": v for k, v in clip.visual.state_dict().items()})
    for k, v in control.state_dict().items():
        state["visual_control." + k.replace("transformer.", "transformer.transformer.", 1)] = v
    for k, v in zero.state_dict().items():
        state[f"visual_control.transformer.zero_modules.{k}"] = v
    state["logit_scale"] = torch.tensor(4.2)
    torch.save({"epoch": 1, "state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    return clip, control, zero


def _tokenizer():
    import open_clip

    return open_clip.get_tokenizer("zephir-tiny-vit")


def test_released_daclip_weights_are_read_whole(tmp_path):
    weights = tmp_path / "daclip_ViT-B-32.pt"
    clip, control, zero = _daclip_standin(weights)
    path = checkpoints.import_daclip(weights, VIT, tmp_path / "imported")
    model, ckpt = checkpoints.load_pretrained(path)
    assert ckpt["method"] == "daclip_released"
    for k, v in control.state_dict().items():
        assert torch.equal(model.tower.state_dict()[k], v), k
    for k, v in zero.state_dict().items():
        assert torch.equal(model.zero_modules.state_dict()[k], v), k
    assert model.logit_scale.item() == pytest.approx(4.2)
    x = torch.rand(2, 3, 128, 128)
    control.eval()
    with torch.no_grad():
        deg, content = _daclip_reference(clip.visual, control, zero, x)
        text = clip_zeroshot.encode_prompts(clip, _tokenizer(), clip_zeroshot.prompts(
            VIT.types, model.bins), len(VIT.types))
        assert torch.allclose(model(x, semantic=True).semantic, content, atol=1e-5)
    est = model.estimate_batch(x)
    ref_scores, ref_lv = clip_zeroshot.readout(torch.einsum("bd,kjd->bkj", deg, text),
                                               model.bins, VIT.tau)
    assert torch.allclose(est.scores, ref_scores, atol=1e-5) and torch.equal(est.levels, ref_lv)
    # without the content branch the controller alone is read (the zero modules feed nothing)
    plain = daclip_style.from_released(weights, HDCLIPConfig(arch="zephir-tiny-vit"))
    assert not plain.content and torch.allclose(plain.estimate_batch(x).scores, est.scores,
                                                atol=1e-5)


def test_released_daclip_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="daclip_ViT-B-32.pt: DA-CLIP weights not found"):
        daclip_style.released_state(tmp_path / "daclip_ViT-B-32.pt")
    torch.save({"weight": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="other.pt: not a DA-CLIP checkpoint"):
        daclip_style.released_state(tmp_path / "other.pt")
