"""The weights registry: every entry documented, stand-in files found where the config says,
missing ones reported at once with the key, the file and how to get them."""
from __future__ import annotations

import time

import pytest

from zephir import weights


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache, as huggingface_hub would see it."""
    from huggingface_hub import constants

    cache = tmp_path / "hf"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


def _section(root) -> dict:
    """Every configurable path moved under ``root`` (same layout as the defaults)."""
    return {k: str(root / v) for k, v in weights.DEFAULTS.items()}


def test_every_entry_is_documented_and_every_key_used(tmp_path, hf_cache):
    entries = weights.registry(None)
    names = [w.name for w in entries]
    assert len(set(names)) == len(names)
    assert set(weights.DEFAULTS) - {"torch_home"} <= set(names)
    for w in entries:
        assert w.kind in ("file", "folder", "hf-cache")
        assert w.what and w.used_by and w.source, w.name
    for key in weights.DEFAULTS:
        assert f"`{key}`" in weights.__doc__ or f"{key}:" in weights.__doc__, key


def test_stand_in_files_are_found_at_the_configured_paths(tmp_path, hf_cache):
    section = _section(tmp_path)
    for w in weights.registry(section):
        if w.kind == "file":
            w.path.parent.mkdir(parents=True, exist_ok=True)
            w.path.write_bytes(b"stand-in")
        elif w.kind == "folder":
            w.path.mkdir(parents=True)
            (w.path / "model_index.json").write_text("{}")
        else:
            snapshot = w.path / "snapshots" / "0123abc"
            snapshot.mkdir(parents=True)
            (snapshot / "config.json").write_text("{}")
    rows = weights.check(section)
    assert {r["status"] for r in rows} == {"found"}
    assert weights.resolve(section, "niqe") == tmp_path / weights.DEFAULTS["niqe"]
    assert weights.resolve(section, "qalign") == hf_cache / "models--q-future--one-align"
    assert weights.resolve(section, "lpips_alexnet") == (
        tmp_path / weights.DEFAULTS["torch_home"] / "hub" / "checkpoints" / weights.ALEXNET_FILE)
    assert weights.format_check(rows).endswith(f"{len(rows)} of {len(rows)} weights found.\n")


def test_empty_folder_and_empty_cache_entry_are_missing(tmp_path, hf_cache):
    section = {"sd15": str(tmp_path / "sd15")}
    (tmp_path / "sd15").mkdir()
    (hf_cache / "models--q-future--one-align" / "snapshots" / "abc").mkdir(parents=True)
    rows = weights.check(section, names=["sd15", "qalign"])
    assert [r["status"] for r in rows] == ["missing", "missing"]


def test_missing_weight_names_key_file_and_source_fast(tmp_path, hf_cache):
    section = {"clip": str(tmp_path / "nope" / "ViT-B-32.pt")}
    start = time.perf_counter()
    with pytest.raises(FileNotFoundError) as err:
        weights.resolve(section, "clip")
    rows = weights.check(_section(tmp_path))
    assert time.perf_counter() - start < 0.5
    msg = str(err.value)
    assert "weights.clip" in msg and section["clip"] in msg and "openaipublic" in msg
    assert {r["status"] for r in rows} == {"missing"}
    alexnet = weights.entry(section, "lpips_alexnet")
    assert alexnet.setting == "weights.torch_home"
    with pytest.raises(FileNotFoundError, match="weights.torch_home"):
        weights.resolve(section, "lpips_alexnet")
    with pytest.raises(FileNotFoundError, match="q-future/one-align"):
        weights.resolve(section, "qalign")


def test_format_check_tells_how_to_get_each_missing_weight(tmp_path, hf_cache):
    section = _section(tmp_path)
    found = weights.entry(section, "brisque").path
    found.parent.mkdir(parents=True)
    found.write_bytes(b"x")
    text = weights.format_check(weights.check(section, names=["brisque", "musiq", "faithdiff"]))
    lines = text.splitlines()
    assert lines[0].startswith("found") and "brisque" in lines[0]
    assert sum(ln.startswith("missing") for ln in lines) == 2
    how = [ln for ln in lines if "get it:" in ln]
    assert len(how) == 2 and all("hf download" in ln for ln in how)
    assert "jychen9811/FaithDiff" in text and lines[-1] == "1 of 3 weights found."


def test_section_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown key"):
        weights.registry({"clipp": "x"})
    with pytest.raises(ValueError, match="clip need a path"):
        weights.registry({"clip": None})
    with pytest.raises(ValueError, match="unknown weight"):
        weights.resolve(None, "torch_home")
