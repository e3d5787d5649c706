"""The headline numbers `dvc metrics show` prints (zephir.report.headline)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from zephir import cli
from zephir.report import headline

SETS = ("DIV2K-Val", "RealSR", "DRealSR")
METRICS = ("PSNR", "SSIM", "LPIPS", "MUSIQ", "Q-Align")


def _paper_shaped(tmp_path: Path) -> tuple[Path, Path]:
    """Stand-ins of tables 2 and 1 as `zephir table` writes their JSON: the paper's shape
    (4 methods; 3 backbones x 3 modes x 3 sets x 5 metrics), made-up distinct numbers."""
    t2 = {m: {"Type Acc (%)": 50.0 + i, "MAE": 9.0 - i, "SROCC": 0.5 + i / 10,
              "PCC": 0.4 + i / 10} for i, m in enumerate(
                  ("CLIP (zero-shot)", "DA-CLIP-style", "MM-RealSR-style", "HD-CLIP"))}
    t1 = {}
    for b, backbone in enumerate(("seesr", "pasd", "faithdiff")):
        for m, mode in enumerate(("baseline", "CFG", "CFPG")):
            t1[f"{backbone} / {mode}"] = {f"{s}/{metric}": 10 * b + m + j + k / 10
                                          for j, s in enumerate(SETS)
                                          for k, metric in enumerate(METRICS)}
    paths = tmp_path / "table2.json", tmp_path / "table1.json"
    for p, t in zip(paths, (t2, t1)):
        p.write_text(json.dumps(t))
    return paths


def test_headline_values_are_the_tables_means(tmp_path):
    t2, t1 = _paper_shaped(tmp_path)
    out = tmp_path / "metrics"
    assert cli.main(["headline", "--table2", str(t2), "--table1", str(t1), "--out", str(out),
                     "--metrics", "psnr", "lpips"]) == 0
    files = sorted(p.name for p in out.iterdir())
    assert len(files) == 10 and "hdclip.json" in files and "faithdiff-cfpg.json" in files
    assert json.loads((out / "hdclip.json").read_text()) == {"Acc": 53.0, "MAE": 6.0,
                                                             "SROCC": 0.8, "PCC": 0.7}
    # pasd (b=1), CFG (m=1): PSNR (k=0) over the sets j=0..2 is 10+1+(0+1+2)/3 = 12
    pasd = json.loads((out / "pasd-cfg.json").read_text())
    assert pasd == pytest.approx({"PSNR": 12.0, "LPIPS": 12.2})
    total = sum(len(json.loads(p.read_text())) for p in out.iterdir())
    assert total == 4 + 9 * 2 <= headline.MAX_VALUES


def test_too_many_values_and_missing_numbers(tmp_path):
    t2, t1 = _paper_shaped(tmp_path)
    tables = json.loads(t2.read_text()), json.loads(t1.read_text())
    with pytest.raises(ValueError, match="more than 40"):
        headline.headline(*tables, ["psnr", "ssim", "lpips", "musiq", "qalign"])
    # a metric without weights ("n/a ...") in one set is left out of that row, not averaged
    tables[1]["seesr / CFG"]["RealSR/LPIPS"] = "n/a (weights missing)"
    rows = headline.headline(*tables, ["psnr", "lpips"])
    assert set(rows["seesr-cfg"]) == {"PSNR"} and set(rows["seesr-cfpg"]) == {"PSNR", "LPIPS"}
    with pytest.raises(ValueError, match="no HD-CLIP row"):
        headline.headline({"CLIP": {}}, None, ["psnr"])


@pytest.mark.skipif(shutil.which("dvc", path=str(Path(sys.executable).parent)) is None,
                    reason="dvc is not installed beside this python")
def test_dvc_metrics_show_fits_a_terminal(tmp_path):
    """`dvc metrics show` on the paper-shaped headline: every line within 100 columns."""
    t2, t1 = _paper_shaped(tmp_path)
    repo = tmp_path / "repo"
    out = repo / "results/paper/metrics"
    headline.make(t2, t1, ["psnr", "lpips"], out)
    dvc = str(Path(sys.executable).parent / "dvc")
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "COLUMNS": "100"}
    subprocess.run([dvc, "init", "--no-scm", "-q"], cwd=repo, check=True, env=env)
    (repo / "dvc.yaml").write_text("metrics:\n  - results/paper/metrics\n")
    shown = subprocess.run([dvc, "metrics", "show"], cwd=repo, check=True, env=env,
                           capture_output=True, text=True).stdout
    lines = [ln for ln in shown.splitlines() if ln.strip()]
    assert len(lines) == 1 + 10, shown  # a header and one line per file
    assert max(map(len, lines)) <= 100, shown
    assert "faithdiff-baseline.json" in shown and "53" in shown
