"""`benchmarks/gpu.sh`, the one script a session lent a GPU runs, at toy sizes on this machine
(SMOKE=1): every stage exits 0, and the transfer stage writes the transfer set of the
embedded-gpu config's photos and reports both models (as configured, randomised, and on the
fixed pipeline) on both sample sets."""
from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys

import pytest
import yaml

from zephir.degrade import transfer

from .conftest import REPO

pytestmark = pytest.mark.slow


def test_gpu_script_runs_every_stage_at_toy_sizes(tmp_path):
    env = {**os.environ, "SMOKE": "1", "PYTHON": sys.executable}
    run = subprocess.run(["bash", "benchmarks/gpu.sh", str(tmp_path / "w")], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=900)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-3000:]
    exits = re.findall(r"^-- \d+s, exit (\d+): (.*)$", out, flags=re.M)
    assert len(exits) == 11, out[-3000:]  # tests 1, HD-CLIP 2, transfer 5, benchmarks 3
    assert [cmd for rc, cmd in exits if rc != "0"] == []

    work = tmp_path / "w"
    cfg = yaml.safe_load((REPO / "config" / "embedded-gpu.yaml").read_text())
    photos = cfg["datasets"][cfg["estimation"]["transfer"]["set"]]["images"]
    with (work / "transfer-set" / "manifest.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert sorted({r["source"] for r in rows}) == sorted(photos)
    assert len(rows) == len(photos) * 4 * 2  # SMOKE: 2 per photo and type
    low, high = transfer.crop_sizes(cfg["synth"]["crop_size"])
    assert all(low <= int(r["crop_size"]) <= high for r in rows)
    assert {r["types"] for r in rows} == set(cfg["synth"]["types"])

    assert cfg["synth"]["randomise"] is True  # the config randomises; the comparison does not
    with (work / "synth" / "manifest.csv").open() as fh:
        assert "resample_down" in next(csv.reader(fh))
    with (work / "synth-fixed" / "manifest.csv").open() as fh:
        assert "resample_down" not in next(csv.reader(fh))
    summary = (work / "transfer.txt").read_text()
    for model in ("hdclip", "hdclip-fixed"):
        metrics = json.loads((work / model / "transfer" / "metrics.json").read_text())
        assert metrics["samples"] == "transfer" and metrics["random_init"] is True
        acc = 100 * metrics["metrics"]["single"]["type_acc"]
        line = re.search(rf"^{re.escape(model)}\* +transfer +([\d.]+) %", summary, flags=re.M)
        assert line and float(line.group(1)) == pytest.approx(acc, abs=0.05), summary
        assert re.search(rf"^{re.escape(model)}\* +validation +[\d.]+ %", summary, flags=re.M)
