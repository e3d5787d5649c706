"""The learned metrics (LPIPS, MUSIQ, NIQE, BRISQUE, Q-Align) as zephir runs them.

Two kinds of test:

- **published scores** (opt-in: each runs where its real weights are in the ``weights:``
  section's default places, ``zephir weights check --config config/config.yaml``, and is
  skipped, naming the missing file, where they are not): pyiqa's five calibration images
  (``ResultsCalibra/``, installed with pyiqa) scored through :func:`zephir.metrics.iqa.
  score_folder` against the official scores pyiqa calibrates with, at pyiqa's tolerances;
- **stand-in weights** (always): MUSIQ and Q-Align built with random weights in the layout of
  the real files, loaded through zephir's path, produce a number, the number the model gives
  when called directly, and a weights file holding code is refused before pyiqa reads it.
  Their numbers come from random-init weights and mean nothing as quality.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from zephir import datasets
from zephir import io as zio
from zephir.metrics import iqa
from zephir.safe_load import CheckpointError

# Official scores of the five distorted images of pyiqa's ResultsCalibra/dist_dir (I03, I04,
# I06, I08, I19; ref_dir holds their references), from chaofengc/IQA-PyTorch at commit
# 01ae427, ResultsCalibra/results_official.csv (rows brisque, lpips, niqe, musiq: the scores of
# the original implementations that pyiqa's calibration test compares with).
OFFICIAL = {
    "brisque": (94.6421, -0.107618, 0.992889, 5.35827, 72.2617),
    "lpips": (0.7237, 0.2572, 0.05079, 0.05205, 0.4253),
    "niqe": (15.7536293917814, 3.65492152353770, 3.23547743716998, 3.18403333858339,
             8.63519663862637),
    "musiq": (12.494, 75.332, 73.429, 75.188, 36.938),
}
# (atol, rtol) of pyiqa's tests/test_metric_general.py at the same commit (ATOL = RTOL = 1e-2,
# lines 10-11; TOL_DICT, lines 14-27, for brisque, niqe and musiq)
TOLERANCE = {"brisque": (1e-2, 8e-2), "niqe": (1e-2, 6e-2), "musiq": (1e-2, 3e-2),
             "lpips": (1e-2, 1e-2)}


def _calibration_images() -> tuple[Path, Path]:
    import pyiqa

    root = Path(pyiqa.__file__).resolve().parent.parent / "ResultsCalibra"
    dist, ref = root / "dist_dir", root / "ref_dir"
    if not dist.is_dir():
        pytest.skip(f"pyiqa's calibration images are not installed ({dist})")
    return dist, ref


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_published_scores_with_real_weights(name):
    ok, reason = iqa.available(name, {})
    if not ok:
        pytest.skip(f"{iqa.METRICS[name].label}: real weights absent ({reason})")
    dist, ref = _calibration_images()
    df = iqa.score_folder(dist, ref if iqa.METRICS[name].full_reference else None, [name],
                          device="cpu", weights_section={})
    assert list(df["image"]) == ["I03.bmp", "I04.bmp", "I06.bmp", "I08.bmp", "I19.bmp"]
    atol, rtol = TOLERANCE[name]
    np.testing.assert_allclose(df[name].to_numpy(), OFFICIAL[name], atol=atol, rtol=rtol)


def test_calibration_table_covers_the_paper_metrics_with_weights():
    """Every learned metric of the paper's tables either has official scores above or is
    Q-Align, for which pyiqa's calibration table has none (it is checked on stand-ins)."""
    learned = {n for n, m in iqa.METRICS.items() if m.weights}
    assert learned - set(OFFICIAL) == {"qalign"}


def _images(root: Path) -> Path:
    folder = root / "images"
    for name, size in (("astronaut", 96), ("coffee", 64)):
        img = datasets.embedded_image(name)
        zio.write_png(folder / f"{name}.png", np.ascontiguousarray(img[:size, :size + 32]))
    return folder


def _pixels(path: Path) -> torch.Tensor:
    from PIL import Image

    rgb = np.asarray(Image.open(path).convert("RGB"))
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float() / 255.0


@pytest.fixture(scope="module")
def musiq_files(tmp_path_factory):
    """Two MUSIQ state dicts of random weights (pyiqa's MUSIQ, KonIQ head), two seeds."""
    from pyiqa.archs.musiq_arch import MUSIQ

    root = tmp_path_factory.mktemp("musiq")
    files = {}
    for seed in (0, 1):
        torch.manual_seed(seed)
        files[seed] = root / f"musiq_seed{seed}.pth"
        torch.save(MUSIQ(pretrained=False).state_dict(), files[seed])
    return root, files


def test_musiq_stand_in_gives_the_models_own_number(musiq_files):
    """Random-init MUSIQ through zephir: a finite score per image, equal to the network called
    directly on the same pixels (read by PIL here), and a change of weights file changes it."""
    from pyiqa.archs.musiq_arch import MUSIQ

    root, files = musiq_files
    folder = _images(root)
    scores = {}
    for seed, path in files.items():
        df = iqa.score_folder(folder, None, ["musiq"], device="cpu",
                              weights_section={"musiq": str(path)})
        assert df.attrs["unavailable"] == {} and np.isfinite(df["musiq"]).all()
        scores[seed] = df["musiq"].to_numpy()
    net = MUSIQ(pretrained=False)
    net.load_state_dict(torch.load(files[0], weights_only=True))
    net.eval()
    with torch.no_grad():
        direct = [float(net(_pixels(folder / name))) for name in df["image"]]
    np.testing.assert_allclose(scores[0], direct, rtol=1e-4)
    assert not np.allclose(scores[0], scores[1])


class _RunsCode:
    """An object whose unpickling calls ``os.system``: what a weights file must never do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_weights_file_holding_code_is_refused_before_pyiqa_reads_it(tmp_path):
    marker = tmp_path / "code-ran"
    path = tmp_path / "musiq_koniq_ckpt.pth"
    torch.save({"weight": torch.zeros(2), "payload": _RunsCode(marker)}, path)
    with pytest.raises(CheckpointError) as err:
        iqa.create("musiq", device="cpu", weights_section={"musiq": str(path)})
    assert str(path) in str(err.value) and "posix.system" in str(err.value)
    assert "musiq_koniq_ckpt-e95806b9.pth" in str(err.value)  # where the real file comes from
    assert not marker.exists()


def _standin_qalign(hub: Path) -> Path:
    """q-future/one-align in the layout of a Hugging Face cache, at toy sizes: an mPLUG-Owl2
    (pyiqa's vendored classes) of random weights, a SentencePiece tokenizer trained here on
    Q-Align's prompt and its five level words, and a CLIP image processor for 28-px inputs."""
    import sentencepiece as spm
    from pyiqa.archs.q_align.configuration_mplug_owl2 import MPLUGOwl2Config
    from transformers import CLIPImageProcessor, LlamaTokenizer

    repo = hub / "models--q-future--one-align"
    snap = repo / "snapshots" / ("0" * 40)
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    corpus = hub / "corpus.txt"
    corpus.write_text("USER: How would you rate the quality of this image?\nASSISTANT: The "
                      "quality of the image is excellent good fair poor bad\n" * 20)
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(snap / "tokenizer"), vocab_size=64,
        model_type="bpe", user_defined_symbols=["excellent", "good", "fair", "poor", "bad"],
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, minloglevel=2)
    LlamaTokenizer.from_pretrained(str(snap)).save_pretrained(snap)
    CLIPImageProcessor(size={"shortest_edge": 28},
                       crop_size={"height": 28, "width": 28}).save_pretrained(snap)
    visual = {"visual_model": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                   num_attention_heads=2, image_size=28, patch_size=14,
                                   projection_dim=32),
              "visual_abstractor": dict(num_learnable_queries=4, hidden_size=32,
                                        num_hidden_layers=1, num_attention_heads=2,
                                        intermediate_size=64, encoder_hidden_size=32,
                                        grid_size=2)}
    MPLUGOwl2Config(visual_config=visual, vocab_size=64, hidden_size=32, intermediate_size=64,
                    num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                    max_position_embeddings=128).save_pretrained(snap)
    return snap


def test_qalign_stand_in_gives_a_score_between_one_and_five(tmp_path, monkeypatch):
    """Q-Align (pyiqa 0.1.16 on transformers 5) from a stand-in cache: the model and its
    tokenizer load offline, and the score, the softmax over the five level words weighted
    5 (excellent) .. 1 (bad), lies in [1, 5] for every image."""
    from huggingface_hub import constants
    from pyiqa.archs.q_align.configuration_mplug_owl2 import MPLUGOwl2Config
    from pyiqa.archs.q_align.modeling_mplug_owl2 import MPLUGOwl2LlamaForCausalLM

    hub = tmp_path / "hub"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub))
    # the model's __init__ loads its tokenizer by name: from the cache, never the network
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    snap = _standin_qalign(hub)
    torch.manual_seed(0)
    MPLUGOwl2LlamaForCausalLM(MPLUGOwl2Config.from_pretrained(snap)).save_pretrained(snap)
    assert iqa.available("qalign", {}) == (True, "weights found")
    df = iqa.score_folder(_images(tmp_path), None, ["qalign"], device="cpu",
                          weights_section={})
    assert df.attrs["unavailable"] == {}
    scores = df["qalign"].to_numpy()
    assert np.isfinite(scores).all() and ((scores >= 1.0) & (scores <= 5.0)).all()
    metric = iqa.create("qalign", device="cpu", weights_section={})
    words = metric.net.model.preferential_ids_
    assert len(set(words)) == 5  # the five level words are five tokens
