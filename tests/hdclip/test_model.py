"""The model: loading through open_clip, clear errors, shapes, controller, eq. 4 heads."""
from __future__ import annotations

import pytest
import torch

from zephir.estimator_interface import SemanticTargets
from zephir.hdclip import model as M


def test_tiny_architectures_are_shipped():
    assert {"zephir-tiny-rn", "zephir-tiny-vit"} <= set(M.tiny_architectures())


def test_missing_checkpoint_names_the_path(tmp_path):
    path = tmp_path / "weights" / "ViT-B-32.pt"
    with pytest.raises(FileNotFoundError, match=rf"{path} not found: expected the ViT-B-32 "):
        M.load_clip("ViT-B-32", str(path), quick_gelu=True)


def test_unknown_architecture():
    with pytest.raises(ValueError, match="unknown CLIP architecture 'ViT-Q-99'"):
        M.load_clip("ViT-Q-99")


def test_local_checkpoint_is_loaded(tmp_path):
    torch.manual_seed(3)
    clip, _ = M.load_clip("zephir-tiny-vit")
    path = tmp_path / "tiny.pt"
    torch.save(clip.state_dict(), path)
    again, _ = M.load_clip("zephir-tiny-vit", str(path))
    for (k, a), b in zip(clip.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), k


@pytest.mark.parametrize("arch", ["zephir-tiny-rn", "zephir-tiny-vit"])
@pytest.mark.parametrize("controller", [False, True])
def test_forward_shapes_and_frozen_semantic_branch(arch, controller):
    torch.manual_seed(0)
    m = M.build(M.HDCLIPConfig(arch=arch, controller=controller))
    x = torch.rand(3, 3, m.image_size, m.image_size)
    out = m(x)
    d = m.embed_dim
    assert out.semantic.shape == (3, d) and out.embeddings.shape == (3, 4, d)
    assert out.confidence.shape == (3, 4)
    assert torch.allclose(out.embeddings.norm(dim=-1), torch.ones(3, 4), atol=1e-5)
    assert m.levels(out.embeddings).shape == (3, 4)
    assert all(not p.requires_grad for p in m.clip.parameters())
    assert all(p.requires_grad for p in m.degradation_branch.parameters())
    # eq. 4: four heads of size d + 1
    assert [h.out_features for h in m.heads] == [d + 1] * 4
    # zero-initialised controller: the semantic embedding starts as plain CLIP's
    plain = m.encode_semantic(m.normalize(x).contiguous(
        memory_format=torch.channels_last) if m.channels_last else m.normalize(x))
    assert torch.allclose(out.semantic, plain, atol=1e-5)


def test_controller_lets_the_semantic_embedding_learn():
    torch.manual_seed(0)
    m = M.build(M.HDCLIPConfig(arch="zephir-tiny-vit", controller=True))
    x = torch.rand(2, 3, m.image_size, m.image_size)
    target = torch.nn.functional.normalize(torch.randn(2, m.embed_dim), dim=-1)
    loss = (1 - (m(x).semantic * target).sum(-1)).mean()
    loss.backward()
    grads = [p.grad for p in m.zero_modules.parameters()]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    assert all(p.grad is None for p in m.clip.parameters())


# --------------------------------------------------------------------------- bf16 autocast

def _fields(out: M.HDCLIPOutput, dtype=torch.float32) -> M.HDCLIPOutput:
    return M.HDCLIPOutput(**{k: getattr(out, k).detach().to(dtype)
                             for k in out.__dataclass_fields__})


@pytest.mark.parametrize("arch", ["zephir-tiny-rn", "zephir-tiny-vit"])
def test_bf16_autocast_keeps_the_math_after_the_towers_in_float32(arch):
    """Under bf16 autocast (CUDA training) the towers run in bf16, but eq. 4, the anchors,
    eq. 6 and every loss are float32: they equal the same math run in float32 on the same
    tower outputs. (Before: levels off by up to 65, the losses rounded to bf16.)"""
    torch.manual_seed(0)
    m = M.build(M.HDCLIPConfig(arch=arch, controller=True))
    x = torch.rand(4, 3, m.image_size, m.image_size)
    present = torch.tensor([[1, 0, 0, 0], [0, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1]])
    level = torch.tensor([[12.0, 0, 0, 0], [0, 41.5, 0, 0], [77.0, 3.0, 0, 0], [0, 0, 55, 99]])
    unit = torch.nn.functional.normalize(torch.randn(2, 4, m.embed_dim), dim=-1)
    same = torch.tensor([[1, 0, 1, 0], [0, 1, 0, 0], [1, 0, 1, 0], [0, 0, 0, 1]]).bool()
    targets = SemanticTargets(image=unit[0], text=unit[1], same=same)
    terms = {"conf", "level", "slerp", "align", "semantic", "clip"}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m(x)
        got = m.loss_terms(out, present, level, terms=terms, targets=targets)
    assert out.degradation.dtype == torch.bfloat16  # the tower did run in bf16
    for name in ("embeddings", "confidence", "levels", "anchors"):
        assert getattr(out, name).dtype == torch.float32, name
    assert all(v.dtype == torch.float32 for v in got.values())
    # the same math in float32 on the same inputs: the per-type embeddings from z (eq. 4) ...
    emb, conf = m.type_embeddings(out.degradation.float())
    assert torch.allclose(out.embeddings, emb, atol=1e-6)
    assert torch.allclose(out.confidence, conf, atol=1e-6)
    # ... then eq. 6 and the losses
    ref = _fields(out)
    ref.levels = m.levels(ref.embeddings, ref.anchors)
    assert torch.allclose(out.levels, ref.levels, atol=1e-4)
    want = m.loss_terms(ref, present, level, terms=terms, targets=targets)
    assert got.keys() == want.keys()
    for name in got:
        assert got[name].item() == pytest.approx(want[name].item(), rel=1e-6, abs=1e-6), name


def test_bf16_autocast_eq6_at_d512_where_neighbouring_anchors_are_close():
    """At d = 512 (ViT-B/32) neighbouring anchors differ in cosine by ~3e-5; bf16 rounds
    cosines to ~0.004, which moved the level by up to 20 before the fix."""
    from zephir.hdclip.interp import neighbour_bins, slerp
    from zephir.hdclip.ordinal import composition_anchors

    torch.manual_seed(0)
    m = M.build(M.HDCLIPConfig(arch="zephir-tiny-rn"))
    anchors = composition_anchors(torch.randn(4, 512), m.bins, torch.zeros(4, 21, 512))
    level = torch.tensor([12.0, 41.0, 77.5, 93.0, 3.0, 28.0, 50.0, 66.0])
    k = torch.arange(4).repeat(2)
    ia, ib, alpha = neighbour_bins(level, m.bins)
    emb = slerp(anchors[k, ia], anchors[k, ib], alpha).view(2, 4, 512)
    want = m.levels(emb, anchors)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = m.levels(emb, anchors)
    assert got.dtype == torch.float32
    assert torch.allclose(got, want, atol=1e-3)


def test_no_autocast_path_is_unchanged_float32():
    """Outside autocast the helper runs the function as written: same dtype, same numbers."""
    from zephir.hdclip.interp import float32_math, interpolate_level

    sim, bins = torch.rand(3, 21, dtype=torch.float64), torch.arange(21.0) * 5
    assert interpolate_level(sim, bins).dtype == torch.float64
    assert torch.equal(float32_math(torch.mul)(sim, 2.0), sim * 2.0)


# --------------------------------------------------------------------------- controller wiring

def test_controller_source_follows_daclip():
    """DA-CLIP's frozen transformer adds ``control.pop()`` after block i: controller block
    n-1-i. ResNet stages cannot be reversed (widths differ): stage i -> stage i."""
    assert [M.controller_source(i, 12, "transformer") for i in range(12)] == \
        list(range(11, -1, -1))
    assert [M.controller_source(i, 4, "resnet") for i in range(4)] == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="tower kind"):
        M.controller_source(0, 4, "swin")
    with pytest.raises(IndexError):
        M.controller_source(4, 4, "resnet")


@pytest.mark.parametrize("arch,kind", [("zephir-tiny-vit", "transformer"),
                                       ("zephir-tiny-rn", "resnet")])
def test_each_frozen_stage_receives_its_controller_source(arch, kind):
    """Record, in the order the frozen stages run, which zero module each one calls and on what:
    frozen stage i gets zero module j applied to controller stage j's output,
    j = controller_source(i)."""
    torch.manual_seed(0)
    m = M.build(M.HDCLIPConfig(arch=arch, controller=True))
    assert M.tower_kind(m.clip.visual) == kind
    n = len(m.zero_modules)
    controller_out, calls = {}, []
    for j, block in enumerate(M._blocks(m.degradation_branch)):
        block.register_forward_hook(lambda mod, a, o, j=j: controller_out.__setitem__(j, o))
    for j, zm in enumerate(m.zero_modules):
        zm.register_forward_hook(lambda mod, a, o, j=j: calls.append((j, a[0])))
    frozen_done = []
    for i, block in enumerate(M._blocks(m.clip.visual)):
        block.register_forward_pre_hook(lambda mod, a, i=i: frozen_done.append((i, len(calls))))
    m(torch.rand(2, 3, m.image_size, m.image_size))
    # frozen stage i runs after i zero-module calls: the i-th call belongs to stage i
    assert frozen_done == [(i, i) for i in range(n)]
    assert [j for j, _ in calls] == [M.controller_source(i, n, kind) for i in range(n)]
    for j, inp in calls:
        assert inp is controller_out[j]
    if kind == "transformer":
        assert [j for j, _ in calls] == list(range(n - 1, -1, -1))


# --------------------------------------------------------------------------- text tower

def test_encode_text_gives_unit_embeddings_of_the_frozen_text_tower():
    torch.manual_seed(0)
    m = M.build(M.HDCLIPConfig(arch="zephir-tiny-vit"))
    keys = set(m.state_dict())
    texts = ["a photo of a cat", "a blurry photo", "a photo of a cat"]
    e = m.encode_text(texts)
    assert e.shape == (3, m.embed_dim) and e.dtype == torch.float32
    assert torch.allclose(e.norm(dim=-1), torch.ones(3), atol=1e-6)
    assert torch.equal(e[0], e[2]) and not torch.allclose(e[0], e[1])
    ref = torch.nn.functional.normalize(m.clip.encode_text(m.tokenizer(texts[:1])), dim=-1)
    assert torch.allclose(e[0], ref[0], atol=1e-6)
    # the tokenizer is a plain attribute: the state dict (and old checkpoints) are unchanged
    assert keys == set(m.state_dict()) and not any(k.startswith("tokenizer") for k in keys)
    fresh = M.build(M.HDCLIPConfig(arch="zephir-tiny-vit"))
    fresh.load_state_dict(m.state_dict())


# --------------------------------------------------------------------------- CLIP weights

@pytest.fixture()
def open_clip_call(monkeypatch) -> dict:
    """open_clip.create_model_and_transforms recorded, then stopped before any download."""
    import open_clip

    seen = {}

    def fake(arch, **kwargs):
        seen.update(arch=arch, **kwargs)
        raise RuntimeError("stop before any download")

    monkeypatch.setattr(open_clip, "create_model_and_transforms", fake)
    return seen


def test_pretrained_tag_is_passed_to_open_clip(open_clip_call):
    """A known tag of the architecture goes to open_clip as ``pretrained=`` (which downloads
    it on first use); the open_clip call is recorded here, no network."""
    seen = open_clip_call
    with pytest.raises(RuntimeError, match="stop before"):
        M.load_clip("ViT-B-32", "openai", quick_gelu=True)
    assert seen["arch"] == "ViT-B-32" and seen["pretrained"] == "openai"
    assert seen["force_quick_gelu"] is True
    assert not M.HDCLIPConfig(arch="ViT-B-32", checkpoint="openai").random_init
    assert M.HDCLIPConfig(arch="ViT-B-32", checkpoint=None).random_init


@pytest.mark.parametrize("arch,tag", [
    ("ViT-B-32-quickgelu", "openai"),   # QuickGELU in the architecture's own config and the tag's
    ("ViT-B-32", "laion2b_s34b_b79k"),  # GELU: neither config names quick_gelu
])
def test_a_tag_that_matches_the_architectures_activation_goes_to_open_clip(arch, tag,
                                                                           open_clip_call):
    with pytest.raises(RuntimeError, match="stop before"):
        M.load_clip(arch, tag)
    assert (open_clip_call["arch"], open_clip_call["pretrained"],
            open_clip_call["force_quick_gelu"], open_clip_call["pretrained_text"]) == (
        arch, tag, False, False)


@pytest.mark.parametrize("tag,quick_gelu,trained,setting", [
    ("openai", False, "QuickGELU", "true"), ("laion2b_s34b_b79k", True, "GELU", "false")])
def test_a_tag_with_the_other_activation_says_which_and_what_to_set(tag, quick_gelu, trained,
                                                                    setting, open_clip_call):
    with pytest.raises(ValueError) as err:
        M.load_clip("ViT-B-32", tag, quick_gelu=quick_gelu)
    assert str(err.value) == (f"open_clip's ViT-B-32 '{tag}' weights were trained with "
                              f"{trained}: set hdclip.model.quick_gelu to {setting}")
    assert open_clip_call == {}


def test_pretrained_tag_with_the_wrong_activation_is_an_error():
    with pytest.raises(ValueError, match="trained with QuickGELU: set hdclip.model.quick_gelu"):
        M.load_clip("ViT-B-32", "openai", quick_gelu=False)


def test_unknown_weights_list_the_tags(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nonsense not found: .*tags for ViT-B-32: "
                                                r"openai, laion400m_e31"):
        M.load_clip("ViT-B-32", "nonsense", quick_gelu=True)
    with pytest.raises(FileNotFoundError, match="no pretrained tag for zephir-tiny-vit"):
        M.load_clip("zephir-tiny-vit", str(tmp_path / "tiny.pt"))


def test_a_local_file_wins_over_a_tag_of_the_same_name(tmp_path, monkeypatch):
    torch.manual_seed(5)
    clip, _ = M.load_clip("zephir-tiny-rn")
    torch.save(clip.state_dict(), tmp_path / "openai")
    monkeypatch.chdir(tmp_path)
    again, _ = M.load_clip("zephir-tiny-rn", "openai")
    for (k, a), b in zip(clip.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), k


def test_the_shift_of_eq2_is_per_bin_or_per_type_and_the_negatives_switch_eq9():
    """hdclip.model.shift "type": one vector per type moves every bin of its type alike
    (anchors = normalise(word + PE + delta_k)); "bin" keeps one per (type, bin).
    slerp_negatives picks the loss eq. 9 is trained with."""
    from zephir.hdclip import losses
    from zephir.hdclip.ordinal import composition_anchors

    torch.manual_seed(0)
    per_bin = M.build(M.HDCLIPConfig(arch="zephir-tiny-vit"))
    per_type = M.build(M.HDCLIPConfig(arch="zephir-tiny-vit", shift="type"))
    assert per_bin.shift.shape == (4, 21, 64) and per_type.shift.shape == (4, 1, 64)
    with torch.no_grad():
        per_type.shift[2, 0] = torch.linspace(-1, 1, 64)
    ref = composition_anchors(per_type.words, per_type.bins,
                              per_type.shift.detach().repeat(1, 21, 1))
    assert torch.allclose(per_type.anchors(), ref, atol=1e-6)
    zero = composition_anchors(per_type.words, per_type.bins, torch.zeros(4, 21, 64))
    moved = (per_type.anchors() - zero).norm(dim=-1) > 1e-4
    assert moved[2].all() and not moved[[0, 1, 3]].any()
    with pytest.raises(ValueError, match="hdclip.model.shift: 'bins' is not bin or type"):
        M.build(M.HDCLIPConfig(arch="zephir-tiny-vit", shift="bins"))

    batch = M.build(M.HDCLIPConfig(arch="zephir-tiny-vit", slerp_negatives="batch"))
    batch.load_state_dict(per_bin.state_dict())
    images = torch.rand(6, 3, 128, 128)
    present = torch.zeros(6, 4)
    present[torch.arange(6), torch.tensor([0, 0, 1, 1, 0, 2])] = 1
    level = torch.rand(6, 4) * 100
    with torch.no_grad():
        out = batch(images, semantic=False)
        got = batch.loss_terms(out, present, level, terms=["slerp"])["slerp"]
        b, k = present.nonzero(as_tuple=True)
        ref = losses.slerp_loss_batch(out.embeddings[b, k], out.anchors[k], level[b, k],
                                      batch.bins, k, tau=batch.cfg.tau)
        bins = per_bin.loss_terms(out, present, level, terms=["slerp"])["slerp"]
    assert got.item() == pytest.approx(ref.item()) and got.item() != pytest.approx(bins.item())
