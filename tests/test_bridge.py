"""The bridge from HD-CLIP space to a backbone's text space: words from a prediction, tags
by cosine, the closed-form linear map, and the embedding bridge that carries HD-CLIP's
embeddings at a scale relative to the prompt's tokens."""
from __future__ import annotations

import cv2
import pytest
import torch
import torch.nn.functional as F

from zephir import estimator_registry
from zephir.backbones import load
from zephir.bridge import (
    TAG_TEMPLATE,
    TAGS,
    Bridge,
    BridgeOptions,
    degradation_words,
    fit_linear,
    level_word,
    vocabulary,
)
from zephir.conditioning import Conditioning
from zephir.embed import conditionings, hdclip_text
from zephir.hdclip.model import HDCLIPConfig

NEG, POS = "lowres", "a photo"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def hd_model():
    torch.manual_seed(0)
    return estimator_registry.build("hdclip", HDCLIPConfig(arch="zephir-tiny-rn")).eval()


@pytest.fixture(scope="module")
def tiny():
    return load("tiny", {"steps": 2})


@pytest.fixture(scope="module")
def hd_text(hd_model):
    return lambda texts: hdclip_text(hd_model, texts)


def _embedding(hd_model, present, levels, semantic=None, embeddings=None) -> Conditioning:
    """A conditioning built by hand (presence and levels per type, in the model's order)."""
    d = hd_model.embed_dim
    k = len(hd_model.cfg.types)
    sem = semantic if semantic is not None else F.normalize(torch.ones(d), dim=0)
    emb = embeddings if embeddings is not None else F.normalize(torch.ones(k, d), dim=-1)
    return Conditioning(semantic=sem, embeddings=emb,
                        present=torch.tensor(present, dtype=torch.float32),
                        levels=torch.tensor(levels, dtype=torch.float32),
                        types=tuple(hd_model.cfg.types))


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

def test_prompt_bridge_words_follow_the_prediction(hd_model, hd_text, tiny):
    # types: blur, noise, jpeg, downsample
    emb = _embedding(hd_model, present=[0.95, 0.2, 0.6, 0.5], levels=[70.0, 90.0, 20.0, 50.0])
    pair, record = Bridge("prompt", tiny, hd_text).pair(emb, prompt=POS, negative_prompt=NEG)
    assert record["bridge"] == "prompt"
    assert record["degradation_words"] == ["heavy blur", "slight jpeg artifacts",
                                           "moderate pixelation"]
    assert len(record["tags"]) == 3 and set(record["tags"]) <= set(TAGS)
    negative = "lowres, heavy blur, slight jpeg artifacts, moderate pixelation"
    positive = "a photo, " + ", ".join(record["tags"])
    assert (record["hd_negative_prompt"], record["hd_positive_prompt"]) == (negative, positive)
    expected = tiny.encode_pair(negative, positive)
    assert torch.equal(pair.hidden, expected.hidden)


def test_prompt_bridge_retrieves_the_tag_of_the_semantic_embedding(hd_model, hd_text, tiny):
    """Independent check of the retrieval: a semantic embedding equal to the text embedding of
    the template with "dog" retrieves "dog" first, with cosine 1."""
    target = hdclip_text(hd_model, [TAG_TEMPLATE.format("dog")])[0]
    emb = _embedding(hd_model, present=[0.0] * 4, levels=[0.0] * 4, semantic=target)
    bridge = Bridge("prompt", tiny, hd_text, {"tags": 2})
    tags = bridge.tags(emb)
    assert tags[0][0] == "dog" and tags[0][1] == pytest.approx(1.0, abs=1e-4)
    assert len(tags) == 2
    _, record = bridge.pair(emb, prompt="", negative_prompt="")
    assert record["degradation_words"] == [] and record["hd_negative_prompt"] == ""


def test_prompt_bridge_on_a_real_embedding_records_what_it_chose(hd_model, hd_text, tiny,
                                                                 astronaut):
    lq = cv2.resize(astronaut, (48, 48), interpolation=cv2.INTER_AREA)
    emb = conditionings(hd_model, [lq])[0]
    pair, record = Bridge("prompt", tiny, hd_text).pair(emb, prompt=POS, negative_prompt=NEG)
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


def test_embedding_bridge_adds_the_mapped_embeddings_at_the_stated_scale(hd_model, hd_text,
                                                                         tiny):
    """v+ = delta(s), v- = sum_k p_k delta(e_k), added to every token times
    embedding_scale * (median token norm) / (RMS of delta over the vocabulary): recomputed
    here from the fitted map with numpy, independently of Bridge.pair."""
    import numpy as np

    g = torch.Generator().manual_seed(0)
    k, d = len(hd_model.cfg.types), hd_model.embed_dim
    e = F.normalize(torch.randn(k, d, generator=g), dim=-1)
    present = [0.9, 0.3, 0.0, 0.6]
    emb = _embedding(hd_model, present=present, levels=[80.0, 10.0, 50.0, 40.0],
                     semantic=hdclip_text(hd_model, ["a photo of a cat."])[0], embeddings=e)
    bridge = Bridge("embedding", tiny, hd_text, {"embedding_scale": 0.25})
    pair, record = bridge.pair(emb, prompt=POS, negative_prompt=NEG)
    text = tiny.encode_pair(NEG, POS)
    assert pair.hidden.shape == text.hidden.shape == (2, 77, 32)
    m = bridge.maps()["hidden"]
    assert m.A.shape == (hd_model.embed_dim, 32) and set(bridge.maps()) == {"hidden"}
    A, xm = m.A.numpy(), m.x_mean.numpy()
    X = hdclip_text(hd_model, vocabulary()).double().numpy()
    n_vocab = np.sqrt(np.mean(np.sum(((X - xm) @ A) ** 2, axis=1)))
    n_tok = np.median(np.linalg.norm(text.hidden.detach().double().numpy(), axis=-1))
    factor = 0.25 * n_tok / n_vocab
    v_pos = (emb.semantic.double().numpy() - xm) @ A
    v_neg = sum(p * ((e[i].double().numpy() - xm) @ A) for i, p in enumerate(present))
    added = (pair.hidden - text.hidden).detach().double().numpy()
    # one vector added to every token of each row
    assert np.allclose(added, added[:, :1], atol=1e-5)
    assert np.allclose(added[1, 0], factor * v_pos, rtol=1e-4, atol=1e-5)
    assert np.allclose(added[0, 0], factor * v_neg, rtol=1e-4, atol=1e-5)
    norms = record["norms"]["hidden"]
    assert norms["reference"] == pytest.approx(n_tok, rel=1e-4)
    assert norms["vocabulary_rms"] == pytest.approx(n_vocab, rel=1e-4)
    assert norms["added_negative"] == pytest.approx(np.linalg.norm(factor * v_neg), rel=1e-3)
    assert record["vocabulary"] == len(vocabulary()) and 0 < record["fit_r2"]["hidden"] <= 1
    assert bridge.maps() is bridge.maps()  # fitted once per bridge


def test_embedding_bridge_negative_is_zero_for_a_clean_image_and_linear_in_presence(
        hd_model, hd_text, tiny):
    bridge = Bridge("embedding", tiny, hd_text)
    clean = _embedding(hd_model, present=[0.0] * 4, levels=[0.0] * 4)
    pair, _ = bridge.pair(clean, prompt=POS, negative_prompt=NEG)
    text = tiny.encode_pair(NEG, POS)
    assert torch.equal(pair.hidden[0], text.hidden[0])
    half = bridge.vectors(_embedding(hd_model, present=[0.5, 0, 0, 0], levels=[50.0] * 4))
    full = bridge.vectors(_embedding(hd_model, present=[1.0, 0, 0, 0], levels=[50.0] * 4))
    assert torch.allclose(2 * half[0], full[0], atol=1e-10)


def test_unknown_bridge(hd_text, tiny):
    with pytest.raises(ValueError, match="bridge: expected one of embedding, prompt"):
        Bridge("clip", tiny, hd_text)


# --------------------------------------------------------------------------- a trained model

def blur_series_distances(checkpoint, photo, levels, bridge_kind="embedding") -> list[float]:
    """How far the HD conditioning of ``photo`` blurred at each 0..100 level is from the clean
    photo's, through ``bridge_kind`` into the tiny backbone's text space (Frobenius norm of the
    difference of the two ``[negative, positive]`` pairs). Used with the embedded default's
    trained HD-CLIP (tests/test_workflow.py's end-to-end run)."""
    from zephir import io as zio
    from zephir.checkpoints import load_pretrained
    from zephir.degrade import levels as dlevels
    from zephir.degrade import ops

    hd_model, _ = load_pretrained(checkpoint)
    x = zio.to_float(photo)
    images = [photo] + [zio.to_uint8(ops.gaussian_blur(x, float(dlevels.denormalize("blur", lv))))
                        for lv in levels]
    conds = conditionings(hd_model, images)
    bridge = Bridge(bridge_kind, load("tiny", {"steps": 1}),
                    lambda texts: hdclip_text(hd_model, texts))
    pairs = [bridge.pair(c, prompt="", negative_prompt="")[0].hidden.float() for c in conds]
    return [float((p - pairs[0]).norm()) for p in pairs[1:]]
