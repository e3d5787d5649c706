"""The tiny backbone's files (zephir/backbones/tiny.py): the offline CLIP tokenizer written into
any folder, the stand-in's marker word for word, and the error when open_clip's BPE file cannot
be found (issue 29: mutation testing; docs/mutation.md)."""
from __future__ import annotations

import importlib.util
import json
import types

import pytest

from zephir.backbones import tiny
from zephir.backbones.sd_x4_upscaler import STANDIN_MARKER, is_standin


def test_the_tokenizer_is_written_into_a_folder_that_does_not_exist_yet(tmp_path):
    folder = tiny.write_clip_tokenizer(tmp_path / "a" / "b")
    vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    assert len(vocab) == tiny.VOCAB and vocab["<|endoftext|>"] == tiny.VOCAB - 1
    assert (folder / "merges.txt").read_text(encoding="utf-8").startswith("#version: 0.2\n")
    assert json.loads((folder / "tokenizer_config.json").read_text()) == {
        "model_max_length": tiny.CONTEXT}


def test_the_stand_ins_marker_says_random_init_who_built_it_and_the_seed(tmp_path):
    folder = tiny.save_standin(tmp_path / "standin", seed=3)
    text = (folder / STANDIN_MARKER).read_text()
    assert text.endswith("}\n") and text.count("\n") == 1
    assert json.loads(text) == {"random_init": True,
                                "built_by": "zephir.backbones.tiny.save_standin", "seed": 3}
    assert is_standin(folder)


@pytest.mark.parametrize("spec", [None, types.SimpleNamespace(submodule_search_locations=[])])
def test_without_open_clip_the_tokenizer_says_what_to_install(spec, monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: spec)
    with pytest.raises(FileNotFoundError) as err:
        tiny.bpe_file()
    assert str(err.value) == ("the tiny backbone's tokenizer reads open_clip's bundled BPE "
                              "file: pip install open_clip_torch")
