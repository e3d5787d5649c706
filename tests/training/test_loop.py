"""Training: every enabled loss falls; kill + resume == uninterrupted; DDP == one process."""
from __future__ import annotations

import csv
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from zephir.checkpoints import load_state
from zephir.degrade.synth import read_manifest
from zephir.hdclip.model import HDCLIPConfig, build
from zephir.seed import seed_everything
from zephir.training.batches import batch_indices
from zephir.training.loop import LAST, LOG, TrainConfig, train

from ..conftest import REPO


def _log(out: Path) -> list[dict]:
    with (out / LOG).open(newline="") as fh:
        return list(csv.DictReader(fh))


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(path)


def _config(out: Path) -> dict:
    return json.loads((out / "config.json").read_text())


def test_batches_are_a_function_of_seed_and_step():
    a = batch_indices(7, 50, 16, seed=3)
    assert np.array_equal(a, batch_indices(7, 50, 16, seed=3))
    assert len(set(np.concatenate([batch_indices(s, 48, 16, 3) for s in range(3)]))) == 48
    assert not np.array_equal(a, batch_indices(7, 50, 16, seed=4))


def test_short_run_lowers_every_enabled_loss(labelled, tmp_path):
    cfg = TrainConfig(steps=40, batch_size=16, lr=2e-3, warmup=5, eval_every=40,
                      checkpoint_every=40)
    metrics = train(labelled, tmp_path, HDCLIPConfig(arch="zephir-tiny-rn"), cfg,
                    progress=False)
    rows = _log(tmp_path)
    assert len(rows) == 40
    for term in ("loss_conf", "loss_level", "loss_slerp"):
        first = np.mean([float(r[term]) for r in rows[:8]])
        last = np.mean([float(r[term]) for r in rows[-8:]])
        assert last < first, (term, first, last)
    assert 0 <= metrics["type_acc"] <= 1 and "srocc" in metrics
    for name in ("model.safetensors", "config.json", "README.md", "last.pt", "val_metrics.csv",
                 "metrics.json"):
        assert (tmp_path / name).is_file()
    ckpt = _config(tmp_path)
    assert ckpt["random_init"] is True and ckpt["hdclip"]["arch"] == "zephir-tiny-rn"


def test_ablation_switches_remove_terms(labelled, tmp_path):
    cfg = TrainConfig(steps=2, batch_size=8, use_level=False, use_slerp=False, eval_every=100,
                      checkpoint_every=100)
    train(labelled, tmp_path, HDCLIPConfig(arch="zephir-tiny-vit"), cfg, progress=False)
    assert set(_log(tmp_path)[0]) >= {"loss_conf", "loss_align"}
    assert "loss_level" not in _log(tmp_path)[0] and "loss_slerp" not in _log(tmp_path)[0]
    # ablation A still aligns the embeddings with the anchors: the shift of eq. 2 moves
    assert _weights(tmp_path / "model.safetensors")["shift"].abs().max() > 0
    assert TrainConfig(use_level=True).terms(False) == ["conf", "level", "slerp"]


def _killed_after(step: int, labelled: Path, out: Path, model_cfg, cfg) -> int:
    """Train into ``out`` and SIGTERM the run once its last.pt has ``step`` steps (what Slurm
    sends before preemption); returns the step it stopped at."""
    def kill():
        while not (out / LAST).exists() or load_state(out / LAST)["step"] < step:
            time.sleep(0.005)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=kill, daemon=True).start()
    with pytest.raises(SystemExit) as info:  # a checkpoint every step, to see the progress
        train(labelled, out, model_cfg, replace(cfg, checkpoint_every=1), progress=False)
    assert info.value.code == 128 + signal.SIGTERM
    assert not (out / "model.safetensors").exists() and not (out / LOG).exists()
    return load_state(out / LAST)["step"]


def test_killed_and_resumed_run_equals_uninterrupted(labelled, tmp_path):
    model_cfg = HDCLIPConfig(arch="zephir-tiny-vit")
    cfg = TrainConfig(steps=14, batch_size=8, warmup=3, eval_every=100, checkpoint_every=100)
    train(labelled, tmp_path / "full", model_cfg, cfg, progress=False)

    out = tmp_path / "killed"
    stopped = _killed_after(5, labelled, out, model_cfg, cfg)
    assert 5 <= stopped < cfg.steps
    train(labelled, out, model_cfg, cfg, resume=True, progress=False)
    full, resumed = _weights(tmp_path / "full/model.safetensors"), _weights(out / "model.safetensors")
    for key in full:
        assert torch.equal(full[key], resumed[key]), key
    assert [r["step"] for r in _log(out)] == [str(s) for s in range(1, cfg.steps + 1)]


def _record_batches(monkeypatch) -> list[np.ndarray]:
    """The sample indices of every step the trainer runs (the loop's own batches)."""
    from zephir.training import loop

    seen, real = [], loop.batches

    def recording(*args, **kwargs):
        for batch in real(*args, **kwargs):
            seen.append(batch[3].numpy().copy())
            yield batch

    monkeypatch.setattr(loop, "batches", recording)
    return seen


def test_type_balanced_run_in_epochs_has_the_per_type_counts_and_resumes_bit_exactly(
        labelled, tmp_path, monkeypatch):
    """batch_per_type 2 on the fixture's train split (3 photos x (4 types x 6 singles + 2
    mixtures) = 78 samples): every step holds 2 samples of each type alone and the mixtures'
    share, round(8 x 6 / 72) = 1; 2 epochs are ceil(2 x 78 / 9) = 18 steps, recorded in the
    checkpoint; killed and resumed, the run ends with the uninterrupted one's weights."""
    rows = read_manifest(labelled, "train")
    kinds = [r["types"] if "+" not in r["types"] else "mixture" for r in rows]
    n_mix = kinds.count("mixture")
    mixtures = round(8 * n_mix / (len(rows) - n_mix))
    assert (len(rows), n_mix, mixtures) == (78, 6, 1)
    steps = math.ceil(2 * len(rows) / (8 + mixtures))
    model_cfg = HDCLIPConfig(arch="zephir-tiny-vit")
    cfg = TrainConfig(steps=None, epochs=2, batch_size=None, batch_per_type=2, warmup=2,
                      eval_every=100, checkpoint_every=100)
    seen = _record_batches(monkeypatch)
    train(labelled, tmp_path / "full", model_cfg, cfg, progress=False)
    assert len(seen) == steps == 18
    want = {"blur": 2, "noise": 2, "jpeg": 2, "downsample": 2, "mixture": mixtures}
    for idx in seen:
        assert Counter(kinds[i] for i in idx) == want
    ckpt = _config(tmp_path / "full")
    assert (ckpt["train"]["steps"], ckpt["train"]["batch_size"]) == (steps, 9)
    assert (ckpt["train"]["epochs"], ckpt["train"]["batch_per_type"]) == (2, 2)
    assert len(_log(tmp_path / "full")) == steps

    out, uninterrupted = tmp_path / "killed", list(seen)
    seen.clear()
    stopped = _killed_after(6, labelled, out, model_cfg, cfg)
    assert 6 <= stopped < steps
    seen.clear()
    train(labelled, out, model_cfg, cfg, resume=True, progress=False)
    # the resumed run starts where the killed one stopped, with the same batches
    assert len(seen) == steps - stopped
    assert all(np.array_equal(a, b) for a, b in zip(seen, uninterrupted[stopped:]))
    full = _weights(tmp_path / "full/model.safetensors")
    resumed = _weights(out / "model.safetensors")
    for key in full:
        assert torch.equal(full[key], resumed[key]), key


def test_budget_and_batch_need_one_of_each():
    with pytest.raises(ValueError, match="set one of steps and epochs"):
        TrainConfig(epochs=3).check()
    with pytest.raises(ValueError, match="set one of batch_size and batch_per_type"):
        TrainConfig(batch_per_type=4).check()
    assert TrainConfig().with_steps(7).epochs is None
    assert TrainConfig(steps=None, epochs=2).with_steps(7).check().steps == 7


def test_resume_ignores_a_last_checkpoint_of_another_run(labelled, tmp_path, capsys):
    """A changed config (or labelled set) must not continue from the old run's last.pt."""
    model_cfg = HDCLIPConfig(arch="zephir-tiny-vit")
    old = TrainConfig(steps=4, batch_size=8, warmup=2, eval_every=100, checkpoint_every=100)
    new = TrainConfig(steps=4, batch_size=8, warmup=2, eval_every=100, checkpoint_every=100,
                      lr=3e-4)
    out = tmp_path / "run"
    train(labelled, out, model_cfg, old, progress=False)
    # how often to validate or checkpoint does not change the weights: same run, resumed
    train(labelled, out, model_cfg, replace(old, eval_every=50, checkpoint_every=2),
          resume=True, progress=False)
    assert "another run" not in capsys.readouterr().err
    train(labelled, out, model_cfg, new, resume=True, progress=False)
    assert "another run (train.lr changed)" in capsys.readouterr().err
    train(labelled, tmp_path / "fresh", model_cfg, new, progress=False)
    fresh, resumed = _weights(tmp_path / "fresh/model.safetensors"), _weights(out / "model.safetensors")
    assert all(torch.equal(fresh[k], resumed[k]) for k in fresh)
    assert len(_log(out)) == new.steps


def _config_file(tmp_path: Path, manifest: Path, **train_kw) -> Path:
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg["hdclip"]["model"]["arch"] = "zephir-tiny-vit"
    cfg["hdclip"]["train"].update(train_kw)
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_train_command_runs_an_ablation_and_evaluates_it(labelled, tmp_path):
    """`zephir train --losses --topk --gap --steps --evaluate`: what an ablation job runs."""
    from zephir import cli

    cfg_file = _config_file(tmp_path, labelled, batch_size=8)
    out = tmp_path / "abl"
    assert cli.main(["train", "--config", str(cfg_file), "--manifest", str(labelled), "--out",
                     str(out), "--losses", "C", "--topk", "all", "--gap", "10", "--steps", "2",
                     "--evaluate", "--quiet"]) == 0
    ckpt = _config(out)
    assert ckpt["hdclip"]["topk"] is None and ckpt["hdclip"]["gap"] == 10.0
    assert (ckpt["train"]["use_level"], ckpt["train"]["use_slerp"]) == (False, True)
    assert ckpt["train"]["steps"] == 2 and _weights(out / "model.safetensors")["bins"].numel() == 11
    result = json.loads((out / "eval" / "metrics.json").read_text())
    assert result["train"]["use_slerp"] is True and result["hdclip"]["gap"] == 10.0
    assert (out / "eval" / "predictions.csv").is_file() and (out / "eval" / "arrays.npz").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("batch", [{"batch_size": 16},
                                   {"batch_size": None, "batch_per_type": 6}],
                         ids=["any-type", "type-balanced"])
def test_two_process_ddp_matches_one_process(labelled, tmp_path, batch):
    """gloo DDP over 2 processes, each with half of the global batch of 16, against 1 process,
    on a set with mixtures: the ranks hold different numbers of present types, and the level
    and slerp losses still weight every term as one process does (``global_share``).

    The tiny ViT has LayerNorm only (no batch statistics), so both runs compute the same
    gradient up to the order of float32 sums (all-reduce, batch reductions): ~1e-7 relative.
    AdamW's first steps divide by sqrt(v), so a parameter whose gradient is ~0 can move by
    +-lr on either run; a max-abs comparison would measure that noise. The test therefore
    compares the whole update: ||update_1 - update_2|| must be under 1 % of ||update_1||.
    A wrong split (a different batch, a doubled or unaveraged gradient) moves it by O(1).
    Type-balanced: 6 per type and 2 mixtures, 26 a step, 13 a rank.
    """
    cfg_file = _config_file(tmp_path, labelled, steps=6, warmup=2, eval_every=100,
                            checkpoint_every=100, **batch)
    args = ["train", "--config", str(cfg_file), "--manifest", str(labelled), "--quiet",
            "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "zephir", *args, "--out", str(tmp_path / "one")],
                   check=True, env=env, capture_output=True)
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    proc = subprocess.run([torchrun, "--standalone", "--nproc_per_node", "2", "-m", "zephir",
                           *args, "--out", str(tmp_path / "two")], env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    one, two = _weights(tmp_path / "one/model.safetensors"), _weights(tmp_path / "two/model.safetensors")
    seed_everything(0)  # the initial weights of both runs
    init = build(HDCLIPConfig(arch="zephir-tiny-vit")).state_dict()
    trained = [k for k in one if k.startswith(("degradation_branch.", "heads.", "shift"))]
    upd1 = torch.cat([(one[k] - init[k]).flatten() for k in trained])
    upd2 = torch.cat([(two[k] - init[k]).flatten() for k in trained])
    assert upd1.norm() > 1e-2
    assert (upd1 - upd2).norm() / upd1.norm() < 0.01


def test_semantic_losses_train_the_controller(labelled, photo_dir, tmp_path):
    from zephir import datasets

    index = tmp_path / "sources.csv"
    datasets.write_index(index, sorted(photo_dir.glob("*.png")))
    cfg = TrainConfig(steps=12, batch_size=8, lr=2e-3, warmup=2, lambda_semantic=1.0,
                      lambda_clip=0.1, eval_every=100, checkpoint_every=100)
    model_cfg = HDCLIPConfig(arch="zephir-tiny-vit", controller=True)
    train(labelled, tmp_path / "run", model_cfg, cfg, sources=index, progress=False)
    rows = _log(tmp_path / "run")
    assert {"loss_semantic", "loss_clip"} <= set(rows[0])
    # the zero-initialised residuals start at plain CLIP (semantic loss ~0 on clean-ish crops
    # is not guaranteed), and training moves them away from zero
    weights = _weights(tmp_path / "run/model.safetensors")
    zero = [v for k, v in weights.items() if k.startswith("zero_modules.")]
    assert zero and any(v.abs().max() > 0 for v in zero)
    assert json.loads((tmp_path / "run/metrics.json").read_text())["semantic_target"] == \
        "hq image"
    captions = tmp_path / "captions.tsv"
    captions.write_text("filepath\ttitle\n" + "".join(
        f"/hq/{p.name}\ta photo of {p.stem}\n" for p in sorted(photo_dir.glob("*.png"))))
    train(labelled, tmp_path / "captioned", model_cfg, replace(cfg, steps=2), sources=index,
          captions=captions, progress=False)
    assert json.loads((tmp_path / "captioned/metrics.json").read_text())[
        "semantic_target"] == "captions"
    assert "loss_clip" in _log(tmp_path / "captioned")[0]
    # a captions file that is named but not there stops the run before any step
    with pytest.raises(FileNotFoundError, match="missing.tsv: no such captions file.*"
                                                "'filepath<TAB>title'"):
        train(labelled, tmp_path / "nocaps", model_cfg, cfg, sources=index,
              captions=tmp_path / "missing.tsv", progress=False)
    assert not (tmp_path / "nocaps" / LAST).exists()
    with pytest.raises(ValueError, match="need hdclip.model.controller: true"):
        train(labelled, tmp_path / "bad", HDCLIPConfig(arch="zephir-tiny-vit"), cfg,
              sources=index, progress=False)


def test_run_identity_covers_clip_weights_content_world_size_and_precision(labelled, tmp_path):
    from zephir.training.loop import run_identity

    weights = tmp_path / "clip.pt"
    weights.write_bytes(b"weights, first download")
    model_cfg = HDCLIPConfig(arch="zephir-tiny-rn", checkpoint=str(weights))
    cfg = TrainConfig()
    base = run_identity("hdclip", model_cfg, cfg, labelled)
    assert base["clip_weights"].startswith("sha1:")
    weights.write_bytes(b"weights, another download at the same path")
    changed = run_identity("hdclip", model_cfg, cfg, labelled)
    assert {k for k in base if base[k] != changed[k]} == {"clip_weights"}
    assert run_identity("hdclip", replace(model_cfg, checkpoint="openai"), cfg,
                        labelled)["clip_weights"] == "open_clip:openai"
    assert run_identity("hdclip", replace(model_cfg, checkpoint=None), cfg,
                        labelled)["clip_weights"] is None
    two = run_identity("hdclip", model_cfg, cfg, labelled, world_size=2, precision="bf16")
    assert {k for k in changed if changed[k] != two[k]} == {"world_size", "precision"}
    # loader workers and caching read the same batches: they do not make another run
    same = run_identity("hdclip", model_cfg, replace(cfg, loader_workers=8,
                                                     cache_images=False), labelled)
    assert same == changed


def test_precision_resolves_by_device_and_bf16_runs_on_cpu(labelled, tmp_path):
    from zephir.training.loop import resolve_precision

    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    assert resolve_precision("auto", torch.device("cuda")) == "bf16"
    assert resolve_precision("fp32", torch.device("cuda")) == "fp32"
    with pytest.raises(ValueError, match="hdclip.train.precision: 'fp16'"):
        resolve_precision("fp16", torch.device("cpu"))
    cfg = TrainConfig(steps=2, batch_size=8, warmup=1, eval_every=100, checkpoint_every=100,
                      precision="bf16")
    train(labelled, tmp_path, HDCLIPConfig(arch="zephir-tiny-rn"), cfg, progress=False)
    assert json.loads((tmp_path / "metrics.json").read_text())["precision"] == "bf16"
    assert all(np.isfinite(float(r["loss"])) for r in _log(tmp_path))


def _agree(rank: int, port: int, values: list[int], results):
    import torch.distributed as dist

    from zephir.training import distributed

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=len(values))
    world = distributed.World(rank, len(values))
    results[rank] = distributed.agree_max(values[rank], world, torch.device("cpu"))
    dist.destroy_process_group()


def test_ranks_agree_on_a_signal_that_reached_only_one():
    """SIGTERM reaches rank 1 alone: both ranks must learn of it after the same step."""
    import socket

    import torch.multiprocessing as mp

    from zephir.training import distributed

    assert distributed.agree_max(15, distributed.World(), torch.device("cpu")) == 15
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    results = mp.get_context("spawn").Manager().dict()
    mp.spawn(_agree, args=(port, [0, 15], results), nprocs=2, join=True)
    assert dict(results) == {0: 15, 1: 15}


def _rank_pids(parent: int) -> dict[int, int]:
    """The torchrun workers under ``parent``, by their RANK."""
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            env = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) != parent:
            continue
        ranks = [e for e in env if e.startswith(b"RANK=")]
        if ranks:
            found[int(ranks[0].split(b"=")[1])] = int(proc.name)
    return found


@pytest.mark.slow
def test_sigterm_to_one_rank_stops_every_rank_after_the_same_step(labelled, tmp_path):
    """Slurm's signal can reach the ranks of a job at different steps: a rank that left the
    loop alone would leave the others waiting forever in the next all-reduce. With the stop
    agreed across ranks, the job ends, and the rerun finishes every step once."""
    steps = 40
    cfg_file = _config_file(tmp_path, labelled, steps=steps, batch_size=8, warmup=2,
                            eval_every=100, checkpoint_every=1)
    out = tmp_path / "run"
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    cmd = [torchrun, "--standalone", "--nproc_per_node", "2", "-m", "zephir", "train",
           "--config", str(cfg_file), "--manifest", str(labelled), "--quiet", "--device", "cpu",
           "--out", str(out), "--resume"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not ((out / LAST).exists() and load_state(out / LAST)["step"] >= 3):
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read()[-2000:]
        time.sleep(0.05)
    os.kill(_rank_pids(proc.pid)[1], signal.SIGTERM)
    try:
        proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("rank 0 kept waiting for rank 1 after rank 1 stopped")
    stopped = load_state(out / LAST)["step"]
    assert 3 <= stopped < steps and not (out / "model.safetensors").exists()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert [int(r["step"]) for r in _log(out)] == list(range(1, steps + 1))
