"""The CUDA paths of training (skipped without a GPU; `benchmarks/gpu.sh` runs them)."""
from __future__ import annotations

import csv
import json
from dataclasses import replace

import pytest
import torch

from zephir.hdclip.model import HDCLIPConfig
from zephir.training.loop import TrainConfig, train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _first_loss(out) -> float:
    with (out / "train_log.csv").open(newline="") as fh:
        return float(next(csv.DictReader(fh))["loss"])


def test_trainer_on_cuda_in_bf16_reads_the_same_batches_from_disk_and_cache(labelled,
                                                                            tmp_path):
    cfg = TrainConfig(steps=6, batch_size=16, warmup=2, eval_every=3, checkpoint_every=3,
                      cache_images=True)
    model_cfg = HDCLIPConfig(arch="zephir-tiny-rn")
    train(labelled, tmp_path / "cached", model_cfg, cfg, device="cuda", progress=False)
    train(labelled, tmp_path / "disk", model_cfg,
          replace(cfg, cache_images=False, loader_workers=2), device="cuda", progress=False)
    metrics = json.loads((tmp_path / "cached" / "metrics.json").read_text())
    assert metrics["precision"] == "bf16" and 0 <= metrics["type_acc"] <= 1
    # same initial weights, same batch and flips: the first forward pass agrees
    assert _first_loss(tmp_path / "cached") == pytest.approx(_first_loss(tmp_path / "disk"),
                                                             rel=1e-5)


def test_fp32_precision_on_cuda_is_recorded_and_resumes_only_itself(labelled, tmp_path,
                                                                    capsys):
    cfg = TrainConfig(steps=3, batch_size=8, warmup=1, eval_every=10, checkpoint_every=1,
                      precision="fp32")
    model_cfg = HDCLIPConfig(arch="zephir-tiny-rn")
    train(labelled, tmp_path / "run", model_cfg, cfg, device="cuda", progress=False)
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["precision"] == "fp32"
    train(labelled, tmp_path / "run", model_cfg, replace(cfg, precision="bf16"), resume=True,
          device="cuda", progress=False)
    assert "another run (precision, train.precision changed)" in capsys.readouterr().err
