"""The conditioning file (zephir.conditioning): what is written is read back, the same
conditioning gives the same bytes in any process, and a file of another layout is refused."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from zephir import conditioning

TYPES = ("blur", "noise", "jpeg", "downsample")
TEXTS = ("a photo of a dog.", "a photo of a cat.", "a blurry photo.")

#: Writes a fixed conditioning of two images to argv[1] (run in a fresh interpreter each time).
WRITER = """
import sys, torch
from zephir import conditioning
g = torch.Generator().manual_seed(0)
def one():
    return conditioning.Conditioning(torch.randn(8, generator=g), torch.randn(4, 8, generator=g),
                                     torch.rand(4, generator=g), 100 * torch.rand(4, generator=g),
                                     types=("blur", "noise", "jpeg", "downsample"))
images = {"b": one(), "a": one()}
conditioning.write(sys.argv[1], images, texts=["x", "y", "z"], text=torch.randn(3, 8, generator=g),
                   hdclip={"checkpoint": "m/model.safetensors", "step": 3, "random_init": True},
                   lq_sha1={"b": "22", "a": "11"})
"""


def _conditioning(g: torch.Generator) -> conditioning.Conditioning:
    return conditioning.Conditioning(torch.randn(8, generator=g), torch.randn(4, 8, generator=g),
                                     torch.rand(4, generator=g), 100 * torch.rand(4, generator=g),
                                     types=TYPES)


def test_what_is_written_is_read_back(tmp_path):
    g = torch.Generator().manual_seed(1)
    images = {"kodim04": _conditioning(g), "china": _conditioning(g)}
    text = torch.randn(len(TEXTS), 8, generator=g)
    hdclip = {"checkpoint": "results/x/hdclip/model.safetensors", "random_init": True}
    path = conditioning.write(tmp_path / "e.safetensors", images, texts=TEXTS, text=text,
                              hdclip=hdclip, lq_sha1={"kodim04": "aa", "china": "bb"})
    back = conditioning.read(path)
    assert back.texts == TEXTS and back.hdclip == hdclip
    assert back.lq_sha1 == {"kodim04": "aa", "china": "bb"}
    assert torch.equal(back.text, text)
    for stem, c in images.items():
        r = back.images[stem]
        assert r.types == TYPES
        for name in conditioning.FIELDS:
            assert torch.equal(getattr(r, name), getattr(c, name)), (stem, name)
    assert not list(tmp_path.glob(".*.tmp"))  # written through a temporary file


def test_the_same_conditioning_gives_the_same_bytes_in_every_process(tmp_path):
    """safetensors writes its metadata map in a per-process random order; with several keys,
    three writers would agree with a chance of about 1 in 14,400 (5! orders)."""
    files = [tmp_path / f"{i}.safetensors" for i in range(3)]
    for f in files:
        subprocess.run([sys.executable, "-c", WRITER, str(f)], check=True)
    first = files[0].read_bytes()
    assert all(f.read_bytes() == first for f in files[1:])
    assert conditioning.read(files[0]).lq_sha1 == {"a": "11", "b": "22"}


def test_a_file_of_another_layout_is_refused_by_name(tmp_path):
    old = tmp_path / "old.safetensors"  # format 1: one metadata key per field
    save_file({"text": torch.zeros(3, 8)}, str(old),
              metadata={"format": "1", "types": json.dumps(list(TYPES)), "texts": "[]",
                        "hdclip": "{}", "lq_sha1": "{}"})
    with pytest.raises(ValueError, match=r"old\.safetensors: embeddings format '1', this "
                                         r"zephir reads 2; recompute it with `zephir embed`"):
        conditioning.read(old)
    bare = tmp_path / "weights.safetensors"  # some other safetensors file
    save_file({"w": torch.zeros(2)}, str(bare))
    with pytest.raises(ValueError, match=r"weights\.safetensors: embeddings format None"):
        conditioning.read(bare)
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match=r"broken\.safetensors: not a readable safetensors"):
        conditioning.read(broken)


def test_a_file_without_an_image_tensor_is_incomplete(tmp_path):
    g = torch.Generator().manual_seed(2)
    path = conditioning.write(tmp_path / "e.safetensors", {"a": _conditioning(g)}, texts=TEXTS,
                              text=torch.randn(len(TEXTS), 8, generator=g), hdclip={},
                              lq_sha1={"a": "1", "ghost": "2"})
    with pytest.raises(ValueError, match=r"e\.safetensors: incomplete HD-CLIP embeddings file"):
        conditioning.read(path)
