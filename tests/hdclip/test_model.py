"""The model: loading through open_clip, clear errors, shapes, controller, eq. 4 heads."""
from __future__ import annotations

import pytest
import torch

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
