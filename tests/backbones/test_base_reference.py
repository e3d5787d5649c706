"""The adapters' shared plumbing (zephir/backbones/base.py) against references written another
way: rows and sentence vectors picked by hand, the paper's CFG mix row by row in float64,
prompts and ratios as their docstrings spell them, the seed of the global RNG derived by hand,
the settings' and loaders' errors word for word, and ``Backbone.restore`` run on a recording
backbone (issue 29: mutation testing; docs/mutation.md)."""
from __future__ import annotations

import contextlib
import hashlib
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from zephir.backbones import base
from zephir.backbones.base import (
    Backbone,
    Defaults,
    TextEmbeds,
    as_ratio,
    check_lq,
    join_prompt,
    torch_dtype,
)


def _embeds(n=3, length=4, width=5, pooled=True, eos=True, seed=0) -> TextEmbeds:
    g = torch.Generator().manual_seed(seed)
    return TextEmbeds(torch.randn(n, length, width, generator=g),
                      torch.randn(n, 6, generator=g) if pooled else None,
                      torch.tensor([1, 3, 0][:n]) if eos else None)


# --------------------------------------------------------------------------- TextEmbeds

def test_pooled_rows_must_be_one_per_hidden_row():
    for pooled in (torch.zeros(3, 6), torch.zeros(2), torch.zeros(2, 6, 1)):
        with pytest.raises(AssertionError):
            TextEmbeds(torch.zeros(2, 4, 5), pooled)
    with pytest.raises(AssertionError):
        TextEmbeds(torch.zeros(2, 4, 5), eos=torch.zeros(3, dtype=torch.long))
    assert len(TextEmbeds(torch.zeros(2, 4, 5), torch.zeros(2, 6))) == 2


def test_rows_pick_the_same_rows_of_every_field():
    e = _embeds()
    for index in ([2, 0], slice(1, 3)):
        r = e.rows(index)
        picked = [2, 0] if isinstance(index, list) else [1, 2]
        for i, j in enumerate(picked):
            assert torch.equal(r.hidden[i], e.hidden[j]) and torch.equal(r.pooled[i], e.pooled[j])
            assert int(r.eos[i]) == int(e.eos[j])
    bare = _embeds(pooled=False, eos=False).rows([1])
    assert bare.pooled is None and bare.eos is None and len(bare) == 1


def test_cat_joins_rows_and_drops_a_field_one_part_lacks():
    a, b = _embeds(2, seed=1), _embeds(1, seed=2)
    c = TextEmbeds.cat([a, b])
    assert len(c) == 3 and torch.equal(c.hidden[2], b.hidden[0]) and torch.equal(c.hidden[:2],
                                                                                a.hidden)
    assert torch.equal(c.pooled, torch.cat([a.pooled, b.pooled]))
    assert c.eos.tolist() == [1, 3, 1]
    mixed = TextEmbeds.cat([a, _embeds(1, pooled=False, seed=3)])
    assert mixed.pooled is None and mixed.eos.tolist() == [1, 3, 1]


def test_to_casts_the_states_and_keeps_the_positions_integers():
    e = _embeds().to(dtype=torch.float64)
    assert e.hidden.dtype == e.pooled.dtype == torch.float64 and e.eos.dtype == torch.int64
    assert e.to(device="meta").hidden.device.type == "meta" == e.to(device="meta").eos.device.type
    assert _embeds(pooled=False, eos=False).to(dtype=torch.float16).pooled is None


def test_summary_is_the_hidden_state_at_each_rows_end_token_else_the_token_mean():
    e = _embeds()
    s = e.summary()
    for i, pos in enumerate([1, 3, 0]):
        assert torch.equal(s[i], e.hidden[i, pos])
    bare = _embeds(eos=False)
    m = bare.summary()
    for i in range(3):
        ref = [sum(float(bare.hidden[i, t, c]) for t in range(4)) / 4 for c in range(5)]
        assert m[i].tolist() == pytest.approx(ref, abs=1e-6)


def test_mix_is_c_plus_r_times_hd_minus_c_row_by_row_in_float64():
    text, hd = _embeds(2, seed=4), _embeds(2, seed=5)
    got = text.mix(hd, (0.25, 0.75))
    for row, r in enumerate((0.25, 0.75)):
        for name in ("hidden", "pooled"):
            c = getattr(text, name)[row].double()
            ref = c + r * (getattr(hd, name)[row].double() - c)
            assert torch.allclose(getattr(got, name)[row].double(), ref, atol=1e-6), (name, row)
    assert torch.equal(got.eos, text.eos)
    # an HD pair without pooled embeddings leaves the text's pooled ones as they are
    kept = text.mix(_embeds(2, pooled=False, seed=6), (0.5, 0.5))
    assert torch.equal(kept.pooled, text.pooled)
    assert text.mix(hd, (0.0, 0.0)).hidden.equal(text.hidden)
    assert _embeds(2, pooled=False, seed=7).mix(hd, (1.0, 1.0)).pooled is None
    with pytest.raises(AssertionError, match=r"HD pair \(2, 3, 5\) and text pair \(2, 4, 5\)"):
        text.mix(_embeds(2, length=3, seed=8), (0.5, 0.5))
    with pytest.raises(AssertionError, match=r"^mix works on \[negative, positive\] pairs$"):
        _embeds(3, seed=9).mix(_embeds(2, seed=10), (0.5, 0.5))


def test_mix_works_in_the_texts_dtype_and_device():
    """An HD pair of another dtype is cast to the text's; on another device ("meta" for a
    GPU) the ratios follow the text there."""
    text, hd = _embeds(2, seed=4), _embeds(2, seed=5).to(dtype=torch.float64)
    got = text.mix(hd, (0.25, 0.75))
    assert got.hidden.dtype == got.pooled.dtype == torch.float32
    ref = text.hidden[1].double() + 0.75 * (hd.hidden[1] - text.hidden[1].double())
    assert torch.allclose(got.hidden[1].double(), ref, atol=1e-6)
    on_meta = _embeds(2, seed=4).to(device="meta").mix(_embeds(2, seed=5).to(device="meta"),
                                                       (0.25, 0.75))
    assert on_meta.hidden.device.type == "meta"
    hd_elsewhere = _embeds(2, seed=4).to(device="meta").mix(_embeds(2, seed=5), (0.25, 0.75))
    assert hd_elsewhere.hidden.device.type == "meta"  # the HD pair follows the text


# --------------------------------------------------------------------------- small helpers

def test_as_ratio_reads_one_number_or_a_pair():
    assert as_ratio(0.3) == (0.3, 0.3) and as_ratio(1) == (1.0, 1.0)
    assert isinstance(as_ratio(1)[0], float)
    assert as_ratio([0.2, 0.7]) == (0.2, 0.7) and as_ratio((1, 0)) == (1.0, 0.0)
    with pytest.raises(ValueError) as err:
        as_ratio([1, 2, 3])
    assert str(err.value) == "cfg_ratio: one number or [negative, positive], got [1, 2, 3]"


def test_join_prompt_comma_joins_the_parts_that_say_something():
    assert join_prompt("a cat", "", "8k") == "a cat, 8k"
    assert join_prompt(" a cat, ", ",8k,", "  ", ",", " , ") == "a cat, 8k"
    assert join_prompt("", "  ") == "" and join_prompt() == ""
    assert join_prompt("clean, high-resolution") == "clean, high-resolution"
    assert join_prompt("X-ray,", "8kX") == "X-ray, 8kX"  # only commas and spaces are trimmed
    assert join_prompt("X", "a") == "X, a"


def test_check_lq_gives_contiguous_rgb_uint8_and_names_what_it_got():
    img = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)[:, ::2]
    assert not img.flags.c_contiguous
    out = check_lq(img)
    assert out.flags.c_contiguous and np.array_equal(out, img)
    for bad, words in [(img.astype(np.float32), "float32 (4, 3, 3)"),
                       (img[..., 0], "uint8 (4, 3)"),
                       (np.zeros((4, 3, 4), np.uint8), "uint8 (4, 3, 4)")]:
        with pytest.raises(ValueError) as err:
            check_lq(bad)
        assert str(err.value) == f"expected an RGB uint8 image (H, W, 3), got {words}"


def test_torch_dtype_auto_is_half_on_cuda_and_float_elsewhere():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert torch_dtype(None, cpu) == torch_dtype("auto", cpu) == torch.float32
    assert torch_dtype(None, cuda) == torch_dtype("auto", cuda) == torch.float16
    assert [torch_dtype(n, cuda) for n in ("float32", "float16", "bfloat16")] == [
        torch.float32, torch.float16, torch.bfloat16]
    with pytest.raises(ValueError) as err:
        torch_dtype("half", cpu)
    assert str(err.value) == "dtype: expected auto or one of float32, float16, bfloat16, got 'half'"


def test_dtype_kwargs_follows_diffusers_rename(monkeypatch):
    new = types.ModuleType("diffusers.utils.deprecation_utils")
    new._resolve_dtype = lambda *a: None
    monkeypatch.setitem(sys.modules, "diffusers.utils.deprecation_utils", new)
    assert base.dtype_kwargs(torch.float16) == {"dtype": torch.float16}
    old = types.ModuleType("diffusers.utils.deprecation_utils")
    monkeypatch.setitem(sys.modules, "diffusers.utils.deprecation_utils", old)
    assert base.dtype_kwargs(torch.float16) == {"torch_dtype": torch.float16}


def test_the_global_rng_is_seeded_from_the_generators_state_and_put_back():
    """Inside: torch's global RNG seeded with the first 8 bytes (little-endian) of the sha1
    of the generator's state, shifted right once (a non-negative int64); the generator is not
    advanced; after: the global RNG continues where it was."""
    g = torch.Generator().manual_seed(12)
    state = g.get_state().clone()
    digest = hashlib.sha1(state.numpy().tobytes()).digest()
    seed = int.from_bytes(digest[:8], "little") >> 1
    expected = torch.Generator().manual_seed(seed)
    with base.global_rng_from(g):
        inside = torch.rand(4)
    assert torch.equal(inside, torch.rand(4, generator=expected))
    assert torch.equal(g.get_state(), state)
    torch.manual_seed(99)
    torch.rand(3)
    continued = torch.rand(2)
    torch.manual_seed(99)
    torch.rand(3)
    with base.global_rng_from(g):
        torch.rand(10)
    assert torch.equal(torch.rand(2), continued)


# --------------------------------------------------------------------------- settings

DEFAULTS = Defaults(steps=20, scale=7.5, negative_prompt="dotted", added_prompt="clean",
                    extra={"tile": 64}, source="a repository")


def test_settings_lay_over_the_defaults_and_the_loaders_keys_are_left_to_the_loader():
    got = DEFAULTS.with_settings({"steps": 3, "tile": 32, "dtype": "float16"}, backbone="x",
                                 loader=("dtype",))
    assert (got.steps, got.scale, got.negative_prompt, got.added_prompt, got.extra,
            got.source) == (3, 7.5, "dotted", "clean", {"tile": 32}, "a repository")
    assert DEFAULTS.extra == {"tile": 64}  # the shipped defaults are not changed
    assert DEFAULTS.with_settings(None, backbone="x") == DEFAULTS
    assert got.to_dict() == {"steps": 3, "scale": 7.5, "negative_prompt": "dotted",
                             "added_prompt": "clean", "tile": 32}


def test_settings_errors_name_the_backbone_the_key_and_the_known_ones():
    with pytest.raises(ValueError) as err:
        DEFAULTS.with_settings({"stepz": 1, "dtype": "x"}, backbone="seesr")
    assert str(err.value) == ("backbone seesr: unknown setting(s) dtype, stepz; expected some of "
                              "added_prompt, negative_prompt, scale, steps, tile")
    for bad in ({"steps": 0}, {"scale": -0.5}):
        with pytest.raises(ValueError) as err:
            DEFAULTS.with_settings(bad, backbone="pasd")
        steps, scale = bad.get("steps", 20), bad.get("scale", 7.5)
        assert str(err.value) == (f"backbone pasd: steps must be >= 1 and scale >= 0, got "
                                  f"{steps} and {scale}")
    assert DEFAULTS.with_settings({"steps": 1, "scale": 0}, backbone="x").scale == 0


# --------------------------------------------------------------------------- Backbone.restore

class _Recording(Backbone):
    """A backbone whose text encoder is a lookup and whose pipeline records its call."""

    name = "recording"
    DEFAULTS = DEFAULTS

    def __init__(self):
        super().__init__(types.SimpleNamespace(unet=None), defaults=DEFAULTS, random_init=True,
                         weights={"w": "/x"}, device="cpu")
        self.samples, self.guided = [], []

    def encode_prompt(self, texts):
        rows = [torch.full((1, 2, 3), float(len(t))) for t in texts]
        return TextEmbeds(torch.cat(rows), torch.cat([r[:, 0] for r in rows]))

    def _sample(self, lq, cond, *, steps, scale, generator):
        self.samples.append({"cond": cond, "steps": steps, "scale": scale,
                             "generator": generator, "global": torch.rand(1).item(),
                             "guided": bool(self.guided and self.guided[-1]["open"])})
        return np.zeros((lq.shape[0] * 4, lq.shape[1] * 4, 3), np.uint8)

    @contextlib.contextmanager
    def _guided(self, hd, **kw):
        entry = {"hd": hd, **kw, "open": True}
        self.guided.append(entry)
        try:
            yield
        finally:
            entry["open"] = False


LQ = np.zeros((2, 3, 3), np.uint8)


def test_restore_hands_each_mode_its_conditioning_and_settings():
    b = _Recording()
    hd = TextEmbeds(torch.ones(2, 2, 3) * 10, torch.ones(2, 3) * 10)
    g = torch.Generator().manual_seed(3)
    out = b.restore(LQ, prompt="long prompt", negative_prompt="neg", hd_pair=hd, mode="cfg",
                    cfg_ratio=(0.5, 0.25), steps=2, scale=3.0, generator=g)
    assert out.shape == (8, 12, 3)
    (s,) = b.samples
    assert (s["steps"], s["scale"], s["generator"], s["guided"]) == (2, 3.0, g, False)
    # [negative; positive] rows: len("neg") = 3 and len("long prompt") = 11, mixed toward 10
    assert s["cond"].hidden[:, 0, 0].tolist() == [3 + 0.5 * (10 - 3), 11 + 0.25 * (10 - 11)]
    assert b.guided == []

    b.restore(LQ, prompt="ab", negative_prompt="", hd_pair=hd, mode="cfpg", w_par=1.5,
              w_orth=0.5, scale=2.0, seed=4, controlnet="reuse")
    (entry,) = b.guided
    assert entry["hd"] is hd and not entry["open"]
    assert {k: entry[k] for k in ("w_par", "w_orth", "scale", "controlnet")} == {
        "w_par": 1.5, "w_orth": 0.5, "scale": 2.0, "controlnet": "reuse"}
    s = b.samples[-1]
    assert s["guided"] and s["cond"].hidden[:, 0, 0].tolist() == [0.0, 2.0]
    assert (s["steps"], s["scale"]) == (20, 2.0)  # the default steps
    # made from the seed (the recording pipeline draws nothing from it)
    assert torch.equal(s["generator"].get_state(), torch.Generator().manual_seed(4).get_state())

    b.restore(LQ, prompt="ab", negative_prompt="c", mode="baseline", seed=4)
    s = b.samples[-1]
    assert (s["steps"], s["scale"], s["guided"]) == (20, 7.5, False)
    assert s["cond"].hidden[:, 0, 0].tolist() == [1.0, 2.0]
    assert len(b.guided) == 1


def test_restore_seeds_the_global_rng_from_the_generator():
    b = _Recording()
    b.restore(LQ, prompt="a", negative_prompt="", seed=5)
    b.restore(LQ, prompt="a", negative_prompt="", generator=torch.Generator().manual_seed(5))
    b.restore(LQ, prompt="a", negative_prompt="", seed=6)
    first, same, other = (s["global"] for s in b.samples)
    assert first == same != other


def test_restore_errors_word_for_word():
    b = _Recording()
    with pytest.raises(ValueError) as err:
        b.restore(LQ, prompt="", negative_prompt="", mode="guided")
    assert str(err.value) == "mode: expected one of baseline, cfg, cfpg, got 'guided'"
    for mode in ("cfg", "cfpg"):
        with pytest.raises(ValueError) as err:
            b.restore(LQ, prompt="", negative_prompt="", mode=mode)
        assert str(err.value) == f"mode {mode!r} needs the HD-CLIP pair (hd_pair)"
    assert b.samples == []


def test_the_record_and_the_default_prompts():
    b = _Recording()
    assert b.record() == {"backbone": "recording", "random_init": True, "weights": {"w": "/x"},
                          "defaults": {"steps": 20, "scale": 7.5, "negative_prompt": "dotted",
                                       "added_prompt": "clean", "tile": 64}}
    assert b.compose_prompts(None, "a cat") == ("a cat, clean", "dotted")
    assert b.compose_prompts(None, "a cat", "") == ("a cat, clean", "")
    assert b.compose_prompts() == ("clean", "dotted")
    assert b.cfg_enabled(1.01) and not b.cfg_enabled(1.0)
    assert b.device == torch.device("cpu") and b.scale_factor == 4
    assert _Recording.resolve_defaults({"steps": 2}).steps == 2
    with pytest.raises(ValueError, match="backbone recording: unknown setting"):
        _Recording.resolve_defaults({"variantz": 1})
    assert _Recording.resolve_defaults({"dtype": "float16", "variant": "fp16"}) == DEFAULTS


def test_guided_wraps_the_pipeline_with_the_hd_pair_cast_to_the_unet(monkeypatch):
    """_guided hands wrap_pipeline the HD hidden states in the UNet's device and dtype, the
    pooled pair as added text embeddings, whether CFG runs at this scale, and the weights."""
    seen = []

    @contextlib.contextmanager
    def recording_wrap(pipe, **kw):
        seen.append(kw)
        yield

    monkeypatch.setattr(base, "wrap_pipeline", recording_wrap)
    b = _Recording()
    b.pipe.unet = torch.nn.Linear(2, 2).to(torch.float64)
    hd = TextEmbeds(torch.ones(2, 2, 3), torch.ones(2, 3))
    with Backbone._guided(b, hd, w_par=1.5, w_orth=0.25, scale=1.0, controlnet="reuse"):
        pass
    (kw,) = seen
    assert kw["hd_encoder_hidden_states"].dtype == torch.float64
    assert kw["hd_added_cond_kwargs"]["text_embeds"].dtype == torch.float64
    assert (kw["w_par"], kw["w_orth"], kw["guidance"], kw["controlnet"]) == (1.5, 0.25, False,
                                                                           "reuse")
    with Backbone._guided(b, TextEmbeds(torch.ones(2, 2, 3)), w_par=1, w_orth=1, scale=7.5):
        pass
    assert seen[1]["hd_added_cond_kwargs"] is None and seen[1]["guidance"] is True
    assert seen[1]["controlnet"] == "rerun"


# --------------------------------------------------------------------------- upstream code

def test_require_diffusers_matches_a_series_and_says_where_to_run(monkeypatch):
    from importlib import metadata

    versions = {"diffusers": "0.21.4"}

    def version(name):
        if name not in versions:
            raise metadata.PackageNotFoundError(name)
        return versions[name]

    monkeypatch.setattr(metadata, "version", version)
    assert base.require_diffusers("0.21", backbone="seesr", env="e.yaml") == "0.21.4"
    versions["diffusers"] = "0.21"
    assert base.require_diffusers("0.21", backbone="seesr", env="e.yaml") == "0.21"
    for found in ("0.210.1", "0.29.2", None):
        versions.pop("diffusers", None)
        if found:
            versions["diffusers"] = found
        with pytest.raises(RuntimeError) as err:
            base.require_diffusers("0.21", backbone="seesr", env="workflow/envs/seesr.yaml")
        assert str(err.value) == (
            f"backbone seesr: its upstream code needs diffusers 0.21.x, found {found or 'none'}; "
            "run it in its own environment (workflow/envs/seesr.yaml: `conda env create -f "
            "workflow/envs/seesr.yaml`, or snakemake --software-deployment-method conda), see "
            "docs/restoration.md")


def test_checkout_on_path_puts_the_checkout_first_once(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", ["/somewhere"])
    repo = tmp_path / "SeeSR"
    (repo / "pipelines").mkdir(parents=True)
    (repo / "pipelines" / "p.py").write_text("")
    relative = Path(repo.relative_to(tmp_path))
    monkeypatch.chdir(tmp_path)
    got = base.checkout_on_path(relative, backbone="seesr", probe="pipelines/p.py")
    assert got == repo.resolve() and sys.path == [str(repo.resolve()), "/somewhere"]
    base.checkout_on_path(repo, backbone="seesr", probe="pipelines/p.py")
    assert sys.path == [str(repo.resolve()), "/somewhere"]
    with pytest.raises(FileNotFoundError) as err:
        base.checkout_on_path(repo, backbone="pasd", probe="pasd/x.py")
    assert str(err.value) == (f"backbone pasd: {repo.resolve()} is not a checkout of its code "
                              "(pasd/x.py is missing)")


# --------------------------------------------------------------------------- prompt encoding

@pytest.fixture(scope="module")
def clip_text():
    from zephir.backbones.tiny import build_pipeline

    pipe = build_pipeline()
    return pipe.tokenizer, pipe.text_encoder


def test_clip_encode_pads_to_max_length_and_finds_each_rows_end_token(clip_text, monkeypatch):
    """As diffusers' SD pipelines encode a prompt: ids padded to the tokenizer's max length,
    the text model's last hidden state without a mask, cast to its dtype; the end token's
    position found in the ids by hand."""
    tokenizer, encoder = clip_text
    texts = ["a cat", "a much longer prompt about a dog"]
    calls = []
    real = encoder.forward

    def recording(input_ids, attention_mask=None, **kw):
        calls.append((input_ids.clone(), attention_mask))
        return real(input_ids, attention_mask=attention_mask, **kw)

    monkeypatch.setattr(encoder, "forward", recording)
    got = base.clip_encode(tokenizer, encoder, texts, torch.device("cpu"))
    (ids, mask), = calls
    assert mask is None and ids.shape == (2, tokenizer.model_max_length)
    for row, text in enumerate(texts):
        plain = tokenizer(text)["input_ids"]
        assert ids[row, :len(plain)].tolist() == plain
        assert int(got.eos[row]) == plain.index(tokenizer.eos_token_id) == len(plain) - 1
    with torch.no_grad():
        assert torch.equal(got.hidden, real(ids)[0])
    assert got.hidden.dtype == encoder.dtype and got.pooled is None

    # a prompt longer than the text model's context is cut to it, as the pipelines cut it
    long = " ".join(["word"] * (tokenizer.model_max_length + 5))
    cut = base.clip_encode(tokenizer, encoder, [long], torch.device("cpu"))
    assert calls[-1][0].shape == (1, tokenizer.model_max_length)
    assert int(cut.eos[0]) == tokenizer.model_max_length - 1

    monkeypatch.setattr(encoder.config, "use_attention_mask", True, raising=False)
    base.clip_encode(tokenizer, encoder, texts, torch.device("cpu"))
    mask = calls[-1][1]
    assert mask is not None and mask.sum(dim=1).tolist() == [len(tokenizer(t)["input_ids"])
                                                             for t in texts]
