"""The bridge from HD-CLIP space to a backbone's text space: words from a prediction, tags
by cosine, and the closed-form linear map."""
from __future__ import annotations

import cv2
import pytest
import torch
import torch.nn.functional as F

from zephir import methods
from zephir.backbones import load
from zephir.bridge import (
    TAG_TEMPLATE,
    TAGS,
    Bridge,
    BridgeOptions,
    degradation_words,
    fit_linear,
    hdclip_text,
    level_word,
    make_hd_pair,
    vocabulary,
)
from zephir.hdclip.model import HDCLIPConfig
from zephir.hdclip.predict import ImageEmbedding, embed

NEG, POS = "lowres", "a photo"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def hd_model():
    torch.manual_seed(0)
    return methods.build("hdclip", HDCLIPConfig(arch="zephir-tiny-rn")).eval()


@pytest.fixture(scope="module")
def tiny():
    return load("tiny", {"steps": 2})


def _embedding(hd_model, present, levels, semantic=None) -> ImageEmbedding:
    """An ImageEmbedding built by hand (presence and levels per type, in the model's order)."""
    d = hd_model.embed_dim
    k = len(hd_model.cfg.types)
    sem = semantic if semantic is not None else F.normalize(torch.ones(d), dim=0)
    return ImageEmbedding(semantic=sem, degradation=torch.zeros(d),
                          embeddings=F.normalize(torch.ones(k, d), dim=-1),
                          present=torch.tensor(present, dtype=torch.float32),
                          levels=torch.tensor(levels, dtype=torch.float32))


def _description(**types) -> dict:
    return {"type": "blur", "degradations": {
        t: {"present": p, "level": lvl, "value": 0.0} for t, (p, lvl) in types.items()}}


# --------------------------------------------------------------------------- words

def test_level_words_at_the_thresholds():
    assert [level_word(v) for v in (0, 32.9, 33, 65.9, 66, 100)] == [
        "slight", "slight", "moderate", "moderate", "heavy", "heavy"]
    custom = BridgeOptions(level_words=((50.0, "strong"), (0.0, "mild")))
    assert level_word(49.9, custom) == "mild" and level_word(50, custom) == "strong"


def test_degradation_words_keep_present_types_only():
    desc = _description(blur=(0.9, 80.0), noise=(0.5, 10.0), jpeg=(0.49, 90.0),
                        downsample=(0.7, 40.0))
    assert degradation_words(desc) == ["heavy blur", "slight noise", "moderate pixelation"]
    assert degradation_words(desc, BridgeOptions(present_threshold=0.8)) == ["heavy blur"]
    assert degradation_words(_description(blur=(0.1, 90.0))) == []


def test_bridge_options_from_config():
    opts = BridgeOptions.from_dict({"tags": 5, "level_words": [[70, "severe"], [0, "mild"]]})
    assert opts.tags == 5 and opts.level_words == ((70.0, "severe"), (0.0, "mild"))
    assert BridgeOptions.from_dict(opts.to_dict()) == opts
    with pytest.raises(ValueError, match="unknown key.*tagz"):
        BridgeOptions.from_dict({"tagz": 2})


# --------------------------------------------------------------------------- prompt bridge

def test_prompt_bridge_words_follow_the_prediction(hd_model, tiny):
    # types: blur, noise, jpeg, downsample
    emb = _embedding(hd_model, present=[0.95, 0.2, 0.6, 0.5], levels=[70.0, 90.0, 20.0, 50.0])
    pair, record = make_hd_pair("prompt", hd_model, tiny, emb, prompt=POS, negative_prompt=NEG)
    assert record["bridge"] == "prompt"
    assert record["degradation_words"] == ["heavy blur", "slight jpeg artifacts",
                                           "moderate pixelation"]
    assert len(record["tags"]) == 3 and set(record["tags"]) <= set(TAGS)
    negative = "lowres, heavy blur, slight jpeg artifacts, moderate pixelation"
    positive = "a photo, " + ", ".join(record["tags"])
    assert (record["hd_negative_prompt"], record["hd_positive_prompt"]) == (negative, positive)
    expected = tiny.encode_pair(negative, positive)
    assert torch.equal(pair.hidden, expected.hidden)


def test_prompt_bridge_retrieves_the_tag_of_the_semantic_embedding(hd_model, tiny):
    """Independent check of the retrieval: a semantic embedding equal to the text embedding of
    the template with "dog" retrieves "dog" first, with cosine 1."""
    target = hdclip_text(hd_model, [TAG_TEMPLATE.format("dog")])[0]
    emb = _embedding(hd_model, present=[0.0] * 4, levels=[0.0] * 4, semantic=target)
    bridge = Bridge("prompt", hd_model, tiny, {"tags": 2})
    tags = bridge.tags(emb)
    assert tags[0][0] == "dog" and tags[0][1] == pytest.approx(1.0, abs=1e-4)
    assert len(tags) == 2
    _, record = bridge.pair(emb, prompt="", negative_prompt="")
    assert record["degradation_words"] == [] and record["hd_negative_prompt"] == ""


def test_prompt_bridge_on_a_real_embedding_records_what_it_chose(hd_model, tiny, astronaut):
    lq = cv2.resize(astronaut, (48, 48), interpolation=cv2.INTER_AREA)
    emb = embed(hd_model, [lq], semantic=True)[0]
    pair, record = make_hd_pair("prompt", hd_model, tiny, emb, prompt=POS, negative_prompt=NEG)
    assert pair.hidden.shape == (2, 77, 32)
    assert record["tags"] and all(isinstance(s, float) for s in record["tag_scores"])
    assert record["bridge_options"]["present_threshold"] == 0.5


# --------------------------------------------------------------------------- linear bridge

def test_fit_linear_recovers_a_known_map():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(200, 16, generator=g, dtype=torch.float64)
    A = torch.randn(16, 8, generator=g, dtype=torch.float64)
    b = torch.randn(8, generator=g, dtype=torch.float64)
    for ridge in (0.0, 1e-10):
        m = fit_linear(X, X @ A + b, ridge=ridge)
        assert torch.allclose(m.A, A, atol=1e-8)
        assert torch.allclose(m(X[:5]), X[:5] @ A + b, atol=1e-8)
        assert m.r2 == pytest.approx(1.0)
    shrunk = fit_linear(X, X @ A, ridge=1e3)
    assert shrunk.A.norm() < 0.5 * A.norm()


def test_fit_linear_underdetermined_gives_the_minimum_norm_solution():
    g = torch.Generator().manual_seed(1)
    X = torch.randn(10, 30, generator=g, dtype=torch.float64)
    Y = torch.randn(10, 4, generator=g, dtype=torch.float64)
    m = fit_linear(X, Y, ridge=0.0)
    assert torch.allclose(m(X), Y, atol=1e-8)  # interpolates the data
    assert torch.isfinite(fit_linear(X, Y, ridge=0.1).A).all()


def test_linear_bridge_shapes_and_what_it_adds(hd_model, tiny):
    emb = _embedding(hd_model, present=[0.9, 0.1, 0.1, 0.1], levels=[80.0, 0.0, 0.0, 0.0],
                     semantic=hdclip_text(hd_model, ["a photo of a cat."])[0])
    bridge = Bridge("linear", hd_model, tiny)
    pair, record = bridge.pair(emb, prompt=POS, negative_prompt=NEG)
    text = tiny.encode_pair(NEG, POS)
    assert pair.hidden.shape == text.hidden.shape == (2, 77, 32)
    m = bridge.maps()["hidden"]
    assert m.A.shape == (hd_model.embed_dim, 32) and set(bridge.maps()) == {"hidden"}
    added = pair.hidden - text.hidden
    # one vector added to every token of each row: the centred map of the HD-CLIP embedding
    assert torch.allclose(added, added[:, :1].expand_as(added), atol=1e-5)
    assert torch.allclose(added[1, 0], m.delta(emb.semantic).float(), atol=1e-5)
    neg_x = hdclip_text(hd_model, ["heavy blur"])[0]
    assert torch.allclose(added[0, 0], m.delta(neg_x).float(), atol=1e-5)
    assert record["degradation_words"] == ["heavy blur"]
    assert record["vocabulary"] == len(vocabulary()) and 0 < record["fit_r2"]["hidden"] <= 1
    assert bridge.maps() is bridge.maps()  # fitted once per bridge


def test_unknown_bridge(hd_model, tiny):
    with pytest.raises(ValueError, match="bridge: expected one of prompt, linear"):
        Bridge("clip", hd_model, tiny)
