"""Training jobs under Snakemake itself: a rerun after a lost output finishes with every output,
and a job killed by SIGTERM (what Slurm sends before preemption) resumes to the uninterrupted
run's weights with its whole log. HD-CLIP, a baseline and an ablation job, on a tiny config."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from zephir.checkpoints import load_state

from .test_workflow import BIN, run_snakemake, workdir  # noqa: F401 - the fixture

STEPS = 30
JOBS = {"hdclip": "hdclip", "baseline": "baselines/mmrealsr_style", "ablation": "ablation/C-k2-g5"}


def _tiny_config(folder: Path) -> list[str]:
    """A tiny config beside the default; returns the flag that selects it (put it last: it
    takes several values)."""
    cfg = yaml.safe_load((folder / "config" / "config.yaml").read_text())
    cfg["datasets"]["embedded"]["images"] = ["coins", "camera", "chelsea", "astronaut"]
    cfg["synth"].update(levels_per_type=3, mixtures_per_image=0, val_fraction=0.25)
    cfg["hdclip"]["train"].update(steps=STEPS, batch_size=8, warmup=2, eval_every=10,
                                  checkpoint_every=1)
    cfg["estimation"].update(ablation_steps=STEPS, baseline_steps=STEPS)
    (folder / "config" / "tiny.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return ["--configfile", "config/tiny.yaml"]


def _targets(folder: Path) -> list[str]:
    return [f"results/embedded/{d}/model.safetensors" for d in JOBS.values()]


def _log_steps(out: Path) -> list[int]:
    with (out / "train_log.csv").open(newline="") as fh:
        return [int(r["step"]) for r in csv.DictReader(fh)]


def _weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(out / "model.safetensors")


def _same_weights(a: Path, b: Path) -> bool:
    wa, wb = _weights(a), _weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def _trainers(results: Path) -> dict[Path, int]:
    """The running `zephir train` processes of this workflow, by their output folder."""
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        args = [a.decode(errors="replace") for a in argv]
        if "train" in args and "--out" in args:
            out = Path(args[args.index("--out") + 1])
            out = out if out.is_absolute() else Path(os.readlink(proc / "cwd")) / out
            if results in out.parents:
                found[out] = int(proc.name)
    return found


@pytest.mark.slow
def test_lost_output_and_forcerun_finish_with_every_output(workdir):  # noqa: F811
    cfg = _tiny_config(workdir)
    run_snakemake(["-c2", *_targets(workdir), *cfg], cwd=workdir)
    res = workdir / "results/embedded"
    first = {name: _weights(res / d) for name, d in JOBS.items()}
    for d in JOBS.values():
        (res / d / "model.safetensors").unlink()
    # the trainers find their finished last.pt: nothing to train, every output written again
    run_snakemake(["-c2", *_targets(workdir), *cfg], cwd=workdir)
    for name, d in JOBS.items():
        again = _weights(res / d)
        assert all(torch.equal(first[name][k], again[k]) for k in first[name]), name
        assert _log_steps(res / d) == list(range(1, STEPS + 1)), name
        assert json.loads((res / d / "eval/metrics.json").read_text())["train"]["steps"] == STEPS
    with (res / "hdclip/val_metrics.csv").open(newline="") as fh:
        assert [int(r["step"]) for r in csv.DictReader(fh)] == [10, 20, 30]
    # --forcerun of a training rule: the same weights again (training is deterministic)
    run_snakemake(["-c2", *_targets(workdir), "--forcerun", "hdclip_train", *cfg],
                  cwd=workdir)
    assert all(torch.equal(first["hdclip"][k], v)
               for k, v in _weights(res / "hdclip").items())
    assert _log_steps(res / "hdclip") == list(range(1, STEPS + 1))


@pytest.mark.slow
def test_sigterm_midway_resumes_to_the_uninterrupted_weights(workdir, tmp_path):  # noqa: F811
    cfg = _tiny_config(workdir)
    reference = tmp_path / "reference"
    reference.mkdir()
    for part in ("Snakefile", "workflow", "config"):
        os.symlink(workdir / part, reference / part)
    # one core throughout: a job's threads set its float sums, so equal weights need equal
    # thread counts (Snakemake gives a job min(its threads, the cores))
    run_snakemake(["-c1", *_targets(reference), *cfg], cwd=reference)

    res = workdir / "results/embedded"
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    snake = subprocess.Popen([str(BIN / "snakemake"), "-c1", "--keep-going", *_targets(workdir),
                              *cfg], cwd=workdir, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    killed: set[Path] = set()
    deadline = time.monotonic() + 600
    while snake.poll() is None and time.monotonic() < deadline:
        for out, pid in _trainers(res).items():
            if out in killed or not (out / "last.pt").exists():
                continue
            try:
                step = load_state(out / "last.pt")["step"]
            except (ValueError, FileNotFoundError):
                continue  # being replaced right now
            if 3 <= step < STEPS:
                os.kill(pid, signal.SIGTERM)
                killed.add(out)
        time.sleep(0.05)
    assert snake.wait(timeout=60) != 0
    assert killed == {res / d for d in JOBS.values()}
    for d in JOBS.values():
        assert not (res / d / "model.safetensors").exists()  # no output taken as finished
        assert 3 <= load_state(res / d / "last.pt")["step"] < STEPS
    run_snakemake(["-c1", *_targets(workdir), *cfg], cwd=workdir)
    for name, d in JOBS.items():
        assert _same_weights(res / d, reference / "results/embedded" / d), name
        assert _log_steps(res / d) == list(range(1, STEPS + 1)), name
