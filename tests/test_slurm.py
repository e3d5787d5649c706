"""`snakemake --profile slurm` against a real single-node Slurm (tests/slurm_cluster.py).

Opt-in: ``ZEPHIR_TEST_SLURM=1`` (it installs nothing but writes /etc/slurm and starts daemons as
root; ``.ci/run`` installs Debian's Slurm and sets it). Opted in on a machine that cannot run
the cluster, the tests fail with what is missing instead of skipping.
"""
from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from .conftest import REPO
from .slurm_cluster import STATUS_FLAGS, LocalCluster, missing
from .test_workflow import BIN, run_snakemake

OPT_IN = os.environ.get("ZEPHIR_TEST_SLURM") == "1"
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not OPT_IN, reason="opt-in: ZEPHIR_TEST_SLURM=1 starts a "
                                 "single-node Slurm as root (what .ci/run does)")]
RES = "results/embedded"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    why = missing()
    if why:
        pytest.fail(f"ZEPHIR_TEST_SLURM=1 but the test cluster cannot start: {why}")
    c = LocalCluster(tmp_path_factory.mktemp("slurm"))
    try:
        c.start()
        yield c
    finally:
        c.stop()


def _workdir(folder: Path, **changes) -> Path:
    """The workflow, the profiles, the root `slurm` link and a tiny embedded config."""
    folder.mkdir(parents=True)
    shutil.copy(REPO / "Snakefile", folder)
    for sub in ("workflow", "config", "profiles"):
        shutil.copytree(REPO / sub, folder / sub)
    os.symlink("profiles/slurm", folder / "slurm")
    cfg = yaml.safe_load((folder / "config/config.yaml").read_text())
    cfg["datasets"]["embedded"]["images"] = ["coins", "camera", "chelsea", "astronaut"]
    cfg["synth"].update(levels_per_type=2, mixtures_per_image=0, val_fraction=0.25)
    cfg["hdclip"]["train"].update(steps=6, batch_size=8, warmup=1, eval_every=3,
                                  checkpoint_every=3)
    cfg["restoration"]["sweep"].update(w_orth=[], w_par=[])
    cfg["metrics"].update(with_reference=["psnr", "ssim"], without_reference=["niqe"])
    for dotted, value in changes.items():
        *path, key = dotted.split("__")
        node = cfg
        for p in path:
            node = node[p]
        node[key] = value
    (folder / "config/tiny.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return folder


def _slurm(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """`snakemake --profile slurm` as the user types it, plus the test cluster's status flags
    (no slurmdbd here: squeue instead of sacct) and the tiny config."""
    return run_snakemake(["--profile", "slurm", *args, *STATUS_FLAGS, "--verbose",
                          "--configfile", "config/tiny.yaml"], cwd=cwd, check=False)


def _sbatch_calls(log: str) -> dict[str, str]:
    """The sbatch command line of each submitted job, by its comment (rule + wildcards)."""
    calls = re.findall(r"sbatch call: (sbatch .*)", log)
    return {re.search(r"--comment (\S+)", c).group(1): c for c in calls}


def _comparable(path: Path) -> bytes:
    """A result's bytes without what a run's timing puts in it (seconds columns and keys)."""
    if path.suffix == ".json":
        def drop(obj):
            if isinstance(obj, dict):
                return {k: drop(v) for k, v in obj.items() if k != "seconds"}
            if isinstance(obj, list):
                return [drop(v) for v in obj]
            return obj
        return json.dumps(drop(json.loads(path.read_text())), sort_keys=True).encode()
    if path.name == "train_log.csv":
        rows = list(csv.DictReader(path.open(newline="")))
        out = io.StringIO()
        for r in rows:
            r.pop("seconds")
            out.write(json.dumps(r, sort_keys=True) + "\n")
        return out.getvalue().encode()
    return path.read_bytes()


def _results(folder: Path) -> dict[str, Path]:
    """Every result file of a run, but its logs and the trainer's resume state (`last.pt`
    carries the run's history with wall-clock times)."""
    res = folder / RES
    return {str(p.relative_to(res)): p for p in sorted(res.rglob("*"))
            if p.is_file() and "logs" not in p.relative_to(res).parts and p.name != "last.pt"}


def test_a_slice_through_slurm_equals_a_local_run(cluster, tmp_path):
    # HD-CLIP asks for 2 GPUs (GRES on the test node): sbatch --gpus=2 --cpus-per-gpu=1, and
    # torchrun starts 2 ranks on the CPU, locally and in the Slurm job alike
    changes = {"hdclip__resources": {"gpu": 2, "cpus_per_gpu": 1, "threads": 2, "mem_mb": 4000,
                                     "runtime": 30},
               "restoration__modes": ["baseline", "cfpg"]}
    on_slurm = _workdir(tmp_path / "slurm", **changes)
    local = _workdir(tmp_path / "local", **changes)
    targets = [f"{RES}/tables/table1.md", f"{RES}/hdclip/model.safetensors"]

    proc = _slurm(targets, on_slurm)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-6000:]
    run_snakemake(["-c2", *targets, "--configfile", "config/tiny.yaml"], cwd=local)

    calls = _sbatch_calls(log)
    train = calls["rule_hdclip_train"]
    assert "--gpus=2" in train and "--cpus-per-gpu=1" in train and "-t 30" in train
    assert "--mem 4000" in train and "--ntasks" not in train
    assert "--ntasks=1 --cpus-per-task=2" in calls["rule_synth"]
    assert any(k.startswith("rule_restore_wildcards_held_out_tiny_cfpg") for k in calls)
    # cheap rules run where Snakemake runs, never in the queue
    assert not any(k.startswith(("rule_table", "rule_hdclip_config", "rule_restore_config"))
                   for k in calls)
    # every submitted job reached slurmctld and ended COMPLETED
    states = {j["comment"]: j["state"] for j in cluster.jobs()}
    assert states["rule_hdclip_train"] == "COMPLETED"
    assert all(states[c] == "COMPLETED" for c in calls), states
    ckpt = json.loads((on_slurm / RES / "hdclip/config.json").read_text())
    assert ckpt["run"]["world_size"] == 2

    ours, theirs = _results(on_slurm), _results(local)
    assert ours.keys() == theirs.keys()
    assert {"hdclip/model.safetensors", "tables/table1.csv", "scores/held_out/tiny/cfpg.csv",
            "restore/held_out/tiny/cfpg/china.png"} <= ours.keys()
    differ = [k for k in ours if _comparable(ours[k]) != _comparable(theirs[k])]
    assert not differ


def _wait_for(what, timeout: float, proc: subprocess.Popen, step: float = 0.1):
    end = time.time() + timeout
    while time.time() < end:
        found = what()
        if found:
            return found
        if proc.poll() is not None:
            raise AssertionError(f"snakemake ended before: {proc.stdout.read()[-4000:]}")
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout} s")


def _running(cluster, prefix: str):
    return next((j["id"] for j in cluster.jobs()
                 if j["comment"].startswith(prefix) and j["state"] == "RUNNING"), None)


def _kill_when(cluster, cwd: Path, targets: list[str], ready, prefix: str) -> str:
    """Run the workflow on the cluster, scancel the job of rule ``prefix`` once ``ready()``,
    and return Snakemake's output (the run must fail: the profile's retry is off here)."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.Popen([str(BIN / "snakemake"), "--profile", "slurm", *targets,
                             *STATUS_FLAGS, "--retries", "0", "--verbose",
                             "--configfile", "config/tiny.yaml"], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_for(ready, 300, proc)
        job = _wait_for(lambda: _running(cluster, prefix), 60, proc)
        subprocess.run(["scancel", job], check=True)
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0, out[-4000:]
    return out


def test_a_job_killed_by_slurm_is_rerun_to_completion(cluster, tmp_path):
    changes = {"hdclip__train__steps": 40, "hdclip__train__checkpoint_every": 5,
               "hdclip__train__eval_every": 20,
               "hdclip__resources": {"gpu": 1, "cpus_per_gpu": 2, "threads": 2, "mem_mb": 4000,
                                     "runtime": 30},
               "blind__crop": 128, "restoration__modes": ["cfpg"]}
    wd = _workdir(tmp_path / "slurm", **changes)
    hd = wd / RES / "hdclip"
    cfpg = wd / RES / "restore/held_out/tiny/cfpg"
    done = cfpg / "shard-0-of-1.done.json"
    targets = [str(done.relative_to(wd))]

    # 1. scancel HD-CLIP's training once it has saved a resume state
    _kill_when(cluster, wd, targets, lambda: (hd / "last.pt").exists(), "rule_hdclip_train")
    assert not (hd / "model.safetensors").exists()  # nothing Snakemake would take as finished
    killed_at = torch.load(hd / "last.pt", weights_only=True)["step"]
    assert 0 < killed_at < 40
    plan = run_snakemake(["-n", *targets, "--configfile", "config/tiny.yaml"], cwd=wd).stdout
    assert "hdclip_train" in plan

    # 2. the rerun resumes training; scancel the restoration after its first image
    def records():  # an image is finished once its record is written (after its PNG)
        return [p for p in cfpg.glob("*.json") if p != done]

    _kill_when(cluster, wd, targets, records, "rule_restore")
    assert (hd / "model.safetensors").exists() and not done.exists()
    kept = {f"{p.stem}.png": (cfpg / f"{p.stem}.png").stat().st_mtime_ns for p in records()}
    assert kept

    # 3. the second rerun finishes the images the kill left
    proc = _slurm(targets, wd)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    record = json.loads(done.read_text())
    assert len(record["images"]) == 4
    resumed = {i["png"] for i in record["images"] if i["resumed"]}
    assert set(kept) <= resumed and len(resumed) < 4
    assert all((cfpg / name).stat().st_mtime_ns == t for name, t in kept.items())

    with (hd / "train_log.csv").open(newline="") as fh:
        steps = [int(r["step"]) for r in csv.DictReader(fh)]
    assert steps == list(range(1, 41))  # every step once: the rerun resumed, not restarted
    # and the resumed model is the one an uninterrupted local run trains
    local = _workdir(tmp_path / "local", **changes)
    run_snakemake(["-c2", f"{RES}/hdclip/model.safetensors", "--configfile", "config/tiny.yaml"],
                  cwd=local)
    ours = load_file(hd / "model.safetensors")
    theirs = load_file(local / RES / "hdclip/model.safetensors")
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
