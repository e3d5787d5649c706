"""The generated numbers page shows exactly the values of the results files it reads."""
from __future__ import annotations

import json
import os
import re
from datetime import datetime, timezone

import pytest

from zephir.report import numbers, registry

TYPES = ["blur", "noise", "jpeg", "downsample"]
# Known values, chosen so that each shows differently at the declared precision.
VAL = {"type_acc": 0.6944, "mae": 12.3456, "srocc": 0.80912, "pcc": 0.7771, "n": 288,
       "blur_srocc": 0.9612, "noise_srocc": 0.9733, "jpeg_srocc": 0.0904,
       "downsample_srocc": 0.9021}
TRANSFER = {"type_acc": 0.6101, "mae": 15.5, "srocc": 0.7049, "pcc": 0.6523, "n": 96,
            "blur_srocc": 0.8811, "noise_srocc": 0.9822, "jpeg_srocc": 0.1234,
            "downsample_srocc": 0.5555}
# 2026-11-30 12:00 UTC, 2026-12-01 12:00 UTC
WRITTEN = {"val": 1796040000, "transfer": 1796126400}


def _evaluation(single: dict, samples: str, checkpoint: str, random_init: bool) -> dict:
    return {"method": "hdclip", "arch": "zephir-tiny-rn", "random_init": random_init,
            "hdclip": {"arch": "zephir-tiny-rn", "types": TYPES}, "samples": samples,
            "train": {"steps": 1000, "use_level": True, "use_slerp": True}, "split": "val",
            "checkpoint": checkpoint, "semantic_target": "hq image",
            "metrics": {"single": single,
                        "near_bin": {"mae": 1.0, "srocc": 0.5, "pcc": 0.5, "n": 1, "gap": 5.0},
                        "between_bins": {"mae": 1.0, "srocc": 0.5, "pcc": 0.5, "n": 1,
                                         "gap": 5.0},
                        "not_modelled": [], "level_scale": True}}


def _results(root, random_init=True):
    """A results folder of hand-made files: HD-CLIP's training and evaluation metrics, its
    transfer evaluation, and table 2 written by the real table writer from them."""
    ckpt = str(root / "hdclip" / "model.safetensors")
    files = {root / "hdclip" / "metrics.json": {"step": 1000, "method": "hdclip",
                                                "random_init": random_init,
                                                "arch": "zephir-tiny-rn", "precision": "fp32",
                                                "semantic_target": "hq image", **VAL},
             root / "hdclip/eval/metrics.json": _evaluation(VAL, "validation", ckpt, random_init),
             root / "transfer/hdclip/eval/metrics.json": _evaluation(TRANSFER, "transfer", ckpt,
                                                                     random_init)}
    for path, content in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(content))
    os.utime(root / "hdclip/eval/metrics.json", (WRITTEN["val"],) * 2)
    os.utime(root / "transfer/hdclip/eval/metrics.json", (WRITTEN["transfer"],) * 2)
    registry.make_table("table2", [root / "hdclip/eval/metrics.json"], "abc12345",
                        root / "tables" / "table2")
    return root


def _row(page: str, first: str) -> list[str]:
    line = next(x for x in page.splitlines() if x.startswith(f"| {first} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def test_page_shows_the_values_of_the_files(tmp_path):
    res = _results(tmp_path / "results" / "embedded")
    page = numbers.render(res)
    header = _row(page, "Samples")
    assert header == ["Samples", "File", "n", "Type Acc (%)", "MAE", "SROCC", "PCC",
                      "blur SROCC", "noise SROCC", "jpeg SROCC", "downsample SROCC"]
    # table 2's formats: percent .1f, MAE .2f, correlations .3f
    assert _row(page, "validation") == [
        "validation", "`hdclip/eval/metrics.json` (2026-11-30)", "288", "69.4", "12.35",
        "0.809", "0.777", "0.961", "0.973", "0.090", "0.902"]
    assert _row(page, "transfer") == [
        "transfer", "`transfer/hdclip/eval/metrics.json` (2026-12-01)", "96", "61.0", "15.50",
        "0.705", "0.652", "0.881", "0.982", "0.123", "0.555"]
    day = datetime.fromtimestamp((res / "hdclip/metrics.json").stat().st_mtime, timezone.utc)
    assert (f"Trained, from `hdclip/metrics.json` ({day:%Y-%m-%d}): `zephir-tiny-rn`, 1000 steps,"
            " precision fp32, semantic target hq image." in page)


def test_every_table_is_included_as_written_and_random_init_is_labelled(tmp_path):
    res = _results(tmp_path / "res")
    page = numbers.render(res)
    table2 = (res / "tables" / "table2.md").read_text()
    assert table2.rstrip() in page
    assert "69.4" in table2 and "Config abc12345" in table2
    assert "table2.paper" not in page  # the paper comparison has its own file
    day = datetime.fromtimestamp((res / "tables/table2.md").stat().st_mtime, timezone.utc)
    assert f"### table2 — `tables/table2.md` ({day:%Y-%m-%d})" in page
    # the model's own flag labels the HD-CLIP section
    assert re.search(r"\*\*Encoders trained from random init .*not the paper's", page)


def test_pretrained_model_carries_no_random_init_label(tmp_path):
    res = _results(tmp_path / "res", random_init=False)
    assert "random init" not in numbers.render(res).split("## Tables")[0]


def test_write_puts_the_page_in_tables(tmp_path):
    res = _results(tmp_path / "res")
    out = numbers.write(res)
    assert out == res / "tables" / "numbers.md"
    assert out.read_text() == numbers.render(res)
    # the page is not one of the tables it shows
    assert "### numbers" not in numbers.render(res)


def test_missing_or_bad_results_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere: no results folder"):
        numbers.render(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty: neither hdclip/eval/metrics.json"):
        numbers.render(tmp_path / "empty")
    bad = tmp_path / "bad" / "hdclip" / "eval" / "metrics.json"
    bad.parent.mkdir(parents=True)
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="metrics.json: not a JSON file"):
        numbers.render(tmp_path / "bad")
