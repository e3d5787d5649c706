"""HD-CLIP's model (zephir/hdclip/model.py) against references written another way: the
controller's residuals added by hand stage by stage, CLIP's input normalisation with OpenAI's
constants written out, the tower's stages named one by one, the anchors' settings reaching
eq. 2, and the errors word for word (issue 29: mutation testing; docs/mutation.md)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from open_clip.modified_resnet import ModifiedResNet
from torch import nn

from zephir.hdclip import model as M
from zephir.hdclip.ordinal import composition_anchors

#: OpenAI CLIP's input statistics (open_clip/constants.py), written out.
MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)


def test_clip_normalisation_against_openais_constants():
    images = torch.rand(2, 3, 4, 5, generator=torch.Generator().manual_seed(0))
    got = M.normalize(images)
    for c in range(3):
        assert torch.allclose(got[:, c], (images[:, c] - MEAN[c]) / STD[c], atol=1e-6)


def test_normalisation_stays_on_the_images_device():
    """The constants are made where the images are ("meta" stands in for a GPU)."""
    assert M.normalize(torch.zeros(1, 3, 4, 4, device="meta")).device.type == "meta"


def test_the_controller_stages_of_a_resnet_are_its_four_layers_in_order():
    visual = M.load_clip("zephir-tiny-rn")[0].visual
    assert M._blocks(visual) == [visual.layer1, visual.layer2, visual.layer3, visual.layer4]
    vit = M.load_clip("zephir-tiny-vit")[0].visual
    assert M._blocks(vit) == list(vit.transformer.resblocks)


def test_a_tower_without_all_four_layers_has_no_controller_support():
    class ThreeLayers(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer2, self.layer3, self.layer4 = nn.Identity(), nn.Identity(), nn.Identity()

    with pytest.raises(TypeError) as err:
        M.tower_kind(ThreeLayers())
    assert str(err.value) == "no controller support for vision tower ThreeLayers"


def test_a_zero_module_maps_its_stages_output_channels_even_with_several_blocks():
    """A stage of two bottlenecks (RN50 has 3-6): the 1x1 map's width is the stage's output
    width (its last block's), not an inner one."""
    tower = ModifiedResNet(layers=[2, 2, 1, 1], output_dim=32, heads=2, image_size=64, width=16)
    for i in range(1, 5):
        stage = getattr(tower, f"layer{i}")
        out = stage(torch.zeros(1, stage[0].conv1.in_channels, 8, 8))
        zm = M._zero_module(stage)
        assert zm.in_channels == zm.out_channels == out.shape[1], i
        assert not zm.weight.any() and not zm.bias.any()


def test_the_controller_adds_its_residuals_as_written_out_by_hand():
    """With non-zero zero modules (as after training): the steered semantic embedding equals
    the frozen ResNet run stage by stage here, each stage's output plus zero module i of
    controller stage i (the resnet order), then the attention pool, normalised. After the
    call the frozen tower is plain CLIP again."""
    torch.manual_seed(0)
    m = M.build(M.HDCLIPConfig(arch="zephir-tiny-rn", controller=True)).eval()
    for zm in m.zero_modules:
        nn.init.normal_(zm.weight, std=0.2)
        nn.init.normal_(zm.bias, std=0.2)
    x = m.normalize(torch.rand(2, 3, m.image_size, m.image_size))
    branch, frozen = m.degradation_branch, m.clip.visual
    with torch.no_grad():
        h, residuals = branch.stem(x), []
        for i in range(1, 5):
            h = getattr(branch, f"layer{i}")(h)
            residuals.append(h)
        y = frozen.stem(x)
        for i in range(1, 5):
            y = getattr(frozen, f"layer{i}")(y) + m.zero_modules[i - 1](residuals[i - 1])
        expected = F.normalize(frozen.attnpool(y), dim=-1)
        plain = frozen.attnpool(frozen.layer4(frozen.layer3(frozen.layer2(frozen.layer1(
            frozen.stem(x))))))
        got = m.encode_semantic(x, residuals)
        assert torch.allclose(got, expected, atol=1e-5)
        assert not torch.allclose(got, F.normalize(plain, dim=-1), atol=1e-3)
        assert torch.allclose(frozen(x), plain, atol=1e-6)  # no residual left behind
    assert torch.allclose(got.norm(dim=-1), torch.ones(2), atol=1e-6)  # each row unit


def test_train_mode_trains_the_branch_and_keeps_clip_frozen():
    m = M.build(M.HDCLIPConfig(arch="zephir-tiny-rn"))
    m.eval()
    assert m.train() is m
    assert m.training and m.degradation_branch.training and m.heads.training
    assert not m.clip.training and not m.clip.visual.training
    m.train(False)
    assert not m.degradation_branch.training


@pytest.mark.parametrize("shift", ["bin", "type"])
def test_the_models_anchors_use_its_configured_eq2_settings(shift):
    torch.manual_seed(0)
    m = M.build(M.HDCLIPConfig(arch="zephir-tiny-rn", freq_base=100.0, pe_scale=0.5,
                               shift=shift))
    with torch.no_grad():
        m.shift.normal_(std=0.3)
    per_bin = m.shift.expand(-1, m.bins.numel(), -1)
    ref = composition_anchors(m.words, m.bins, per_bin, base=100.0, pe_scale=0.5)
    assert torch.allclose(m.anchors(), ref, atol=1e-6)
    assert not torch.allclose(m.anchors(), composition_anchors(m.words, m.bins, per_bin),
                              atol=1e-3)


def test_encode_text_sends_the_tokens_to_the_models_device(monkeypatch):
    """The tokens go where the model is ("meta" stands in for a GPU)."""
    m = M.build(M.HDCLIPConfig(arch="zephir-tiny-rn")).to("meta")
    seen = []

    def encode(tokens):
        seen.append(tokens.device.type)
        return torch.ones(tokens.shape[0], m.embed_dim, device="meta")

    monkeypatch.setattr(m.clip, "encode_text", encode)
    m.encode_text(["a photo"])
    assert seen == ["meta"]


def test_errors_word_for_word():
    with pytest.raises(ValueError) as err:
        M.type_word("haze")
    assert str(err.value) == ("unknown degradation type 'haze'; expected one of blur, noise, "
                              "jpeg, downsample")
    with pytest.raises(IndexError) as err:
        M.controller_source(4, 4, "resnet")
    assert str(err.value) == "stage 4 of 4"
    with pytest.raises(ValueError) as err:
        M.build(M.HDCLIPConfig(arch="zephir-tiny-rn", slerp_negatives="all"))
    assert str(err.value) == "hdclip.model.slerp_negatives: 'all' is not bins or batch"


# --------------------------------------------------------------------------- loading CLIP

def _quick_gelu(model: nn.Module) -> bool:
    from open_clip.transformer import QuickGELU

    return any(isinstance(mod, QuickGELU) for mod in model.modules())


def test_clip_is_built_with_gelu_unless_quick_gelu_is_asked():
    assert not _quick_gelu(M.load_clip("zephir-tiny-vit")[0])
    assert _quick_gelu(M.load_clip("zephir-tiny-vit", quick_gelu=True)[0])
    assert _quick_gelu(M.build(M.HDCLIPConfig(arch="zephir-tiny-vit", quick_gelu=True)).clip)
    assert not _quick_gelu(M.build(M.HDCLIPConfig(arch="zephir-tiny-vit")).clip)


def test_build_loads_the_configured_local_clip_weights(tmp_path):
    torch.manual_seed(5)
    clip, _ = M.load_clip("zephir-tiny-rn")
    path = tmp_path / "clip.pt"
    torch.save(clip.state_dict(), path)
    torch.manual_seed(6)
    m = M.build(M.HDCLIPConfig(arch="zephir-tiny-rn", checkpoint=str(path)))
    for key, value in clip.state_dict().items():
        assert torch.equal(m.clip.state_dict()[key], value), key


def test_an_unknown_architecture_lists_the_tiny_ones():
    with pytest.raises(ValueError) as err:
        M.load_clip("ViT-Q-99")
    assert str(err.value) == ("unknown CLIP architecture 'ViT-Q-99'; shipped tiny ones: "
                              "zephir-tiny-rn, zephir-tiny-vit; open_clip knows e.g. ViT-B-32")


def test_convolutional_towers_run_channels_last_and_transformers_do_not():
    rn = M.build(M.HDCLIPConfig(arch="zephir-tiny-rn"))
    assert rn.channels_last is True
    for tower in (rn.clip.visual, rn.degradation_branch):
        assert tower.conv1.weight.is_contiguous(memory_format=torch.channels_last)
        assert not tower.conv1.weight.is_contiguous()
    assert M.build(M.HDCLIPConfig(arch="zephir-tiny-vit")).channels_last is False


def test_a_fresh_controller_model_runs_its_towers_on_their_own():
    """Before any forward: the frozen tower is plain CLIP (no residual pending) and the
    degradation branch runs by itself."""
    torch.manual_seed(0)
    m = M.build(M.HDCLIPConfig(arch="zephir-tiny-rn", controller=True)).eval()
    clip, _ = M.load_clip("zephir-tiny-rn")
    clip.load_state_dict(m.clip.state_dict())
    x = m.normalize(torch.rand(1, 3, m.image_size, m.image_size))
    with torch.no_grad():
        assert torch.allclose(m.clip.visual(x), clip.eval().visual(x), atol=1e-5)
        assert m.degradation_branch(x).shape == (1, m.embed_dim)


def test_the_tiny_architectures_are_registered_with_open_clip_once(monkeypatch):
    import open_clip

    calls = []
    real = open_clip.add_model_config
    monkeypatch.setattr(M, "_registered", False)
    monkeypatch.setattr(open_clip, "add_model_config", lambda p: (calls.append(p), real(p))[1])
    M.register_architectures()
    M.register_architectures()
    assert len(calls) == 1 and "zephir-tiny-rn" in open_clip.list_models()
