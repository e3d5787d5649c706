"""Tables 1, 5, 7 from fixed score files: the text a reader sees, n/a cells, bold best values,
and the paper's numbers beside the run's."""
from __future__ import annotations

import csv
import io
import json
from importlib import resources

import pytest

from zephir.report import registry

LABELS = {"psnr": "PSNR", "ssim": "SSIM", "lpips": "LPIPS"}
LOWER = {"psnr": False, "ssim": False, "lpips": True}


def _score(path, *, dataset, label, backbone, run, means, random_init=False):
    missing = {k: "weights missing" for k, v in means.items() if isinstance(v, str)}
    path.write_text(json.dumps({
        "n_images": 2, "means": means, "labels": {k: LABELS[k] for k in means},
        "lower_better": {k: LOWER[k] for k in means},
        "conventions": {k: f"{LABELS[k]} convention." for k in means},
        "unavailable": missing,
        "meta": {"dataset": dataset, "label": label, "backbone": backbone, "run": run,
                 "random_init": random_init, "hdclip_random_init": random_init,
                 "job": {"mode": run, "bridge": "prompt", "w_orth": 0.6, "w_par": 1.0}}}))
    return path


def test_table1_from_fixed_score_files(tmp_path):
    files = [
        _score(tmp_path / "a.json", dataset="div2k_val", label="DIV2K-Val", backbone="pasd",
               run="baseline", means={"psnr": 18.5, "ssim": 0.4355, "lpips": "n/a (weights missing)"}),
        _score(tmp_path / "b.json", dataset="div2k_val", label="DIV2K-Val", backbone="pasd",
               run="cfpg", means={"psnr": 18.75, "ssim": 0.4012, "lpips": "n/a (weights missing)"}),
    ]
    paths = registry.make_table("table1", files, "cafe1234", tmp_path / "table1")
    md = (tmp_path / "table1.md").read_text()
    assert md.splitlines()[:4] == [
        "| Backbone | Mode     | DIV2K-Val/PSNR | DIV2K-Val/SSIM |       DIV2K-Val/LPIPS |",
        "|:---------|:---------|---------------:|---------------:|----------------------:|",
        "| pasd     | baseline |          18.50 |     **0.4355** | n/a (weights missing) |",
        "| pasd     | CFPG     |      **18.75** |         0.4012 | n/a (weights missing) |",
    ]
    assert "n/a (weights missing): LPIPS" in md and "Config cafe1234." in md
    assert "prompt bridge" in md and "CFPG: w_orth 0.6, w_par 1." in md
    # the CSV keeps the numbers as they were
    rows = list(csv.DictReader((tmp_path / "table1.csv").open(newline="")))
    assert float(rows[1]["DIV2K-Val/PSNR"]) == 18.75
    # the paper's table 1 prints PASD's rows: the run's values beside them
    assert tmp_path / "table1.paper.csv" in paths
    beside = list(csv.DictReader((tmp_path / "table1.paper.csv").open(newline="")))
    text = resources.files("zephir.report").joinpath("paper_values.csv").read_text()
    printed = {(r["row"], r["column"]): float(r["value"])
               for r in csv.DictReader(io.StringIO(text)) if r["table"] == "table1"}
    psnr = next(r for r in beside if r["Row"] == "PASD baseline" and r["Column"] ==
                "DIV2K-Val/PSNR")
    assert float(psnr["Paper"]) == printed[("PASD baseline", "DIV2K-Val/PSNR")]
    assert float(psnr["Run - paper"]) == pytest.approx(18.5 - float(psnr["Paper"]))
    assert not [r for r in beside if r["Column"] == "DIV2K-Val/LPIPS" and r["Run - paper"]]


def test_table5_and_table7_columns_and_random_init_caption(tmp_path):
    sweep = [_score(tmp_path / f"s{i}.json", dataset="held_out", label="held-out",
                    backbone="tiny", run=run, means={"psnr": p}, random_init=True)
             for i, (run, p) in enumerate([("cfpg-wo0-wp1", 16.2), ("cfpg-wo0.6-wp1", 16.6)])]
    registry.make_table("table5", sweep, "x", tmp_path / "table5")
    md = (tmp_path / "table5.md").read_text()
    assert md.splitlines()[2:4] == ["| 0      | 1     |     16.20 |",
                                    "| 0.6    | 1     | **16.60** |"]
    assert "random-init" in md
    beside = list(csv.DictReader((tmp_path / "table5.paper.csv").open(newline="")))
    assert {r["Row"] for r in beside} == {"sweep 3 w_orth=0.0 w_par=1.0",
                                          "sweep 2 w_orth=0.6 w_par=1.0"}
    real = [_score(tmp_path / "r.json", dataset="realdeg_film", label="Classic Film",
                   backbone="faithdiff", run="cfg", means={"psnr": 20.0})]
    registry.make_table("table7", real, "x", tmp_path / "table7")
    assert "Classic Film/PSNR" in (tmp_path / "table7.md").read_text()
