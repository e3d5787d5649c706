"""Figure 21 and section 9.1's comparisons: planned by the paper config (a dry run), drawn from
stand-in restorations, cropped by a stated rule (where the runs differ most)."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from zephir import io as zio
from zephir.report import figures, registry

from ..test_workflow import run_snakemake, workdir  # noqa: F401 - the fixture


def _brute_force(images, size):
    """Every window of the stated grid, scored by the plain loop definition."""
    h, w = images[0].shape[:2]
    ys = sorted(set(range(0, h - size + 1, size // 2)) | {h - size})
    xs = sorted(set(range(0, w - size + 1, size // 2)) | {w - size})
    stack = np.stack(images).astype(float)
    best, corner = -1.0, None
    for y in ys:
        for x in xs:
            win = stack[:, y:y + size, x:x + size]
            score = np.mean([[win[:, i, j].std(axis=0).mean() for j in range(size)]
                             for i in range(size)])
            if score > best + 1e-12:
                best, corner = score, (y, x)
    return corner


def test_crop_is_where_the_runs_differ_most():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (70, 90, 3)).astype(np.uint8)
    runs = [base.copy() for _ in range(3)]
    runs[1][40:56, 56:72] = 0   # the runs disagree in one 16 x 16 patch only
    runs[2][40:56, 56:72] = 255
    assert figures.disagreement_crop(runs, 16) == (40, 56) == _brute_force(runs, 16)
    noisy = [rng.integers(0, 255, (37, 41, 3)) for _ in range(3)]
    assert figures.disagreement_crop(noisy, 12) == _brute_force(noisy, 12)
    # a crop larger than the image is its shorter side: the 70 x 70 window holding the patch
    assert figures.disagreement_crop(runs, 500) == (0, 20) == _brute_force(runs, 70)


def _standin_runs(root: Path, name: str, stems, modes=("baseline", "cfg", "cfpg"),
                  hq: bool = True) -> tuple[list[Path], Path]:
    """A set's LQ images (a blind manifest, or an index for an hq: false set) and one shard
    record per mode with its 'restored' images, all made up (no backbone runs)."""
    rng = np.random.default_rng(len(name))
    lq_dir = root / ("blind" if hq else "data") / name
    rows = []
    for stem in stems:
        lq = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
        zio.write_png(lq_dir / "lq" / f"{stem}.png", lq)
        if hq:
            zio.write_png(lq_dir / "hq" / f"{stem}.png", lq.repeat(4, 0).repeat(4, 1))
        rows.append({"lq": f"lq/{stem}.png", "hq": f"hq/{stem}.png"})
    if hq:
        source = lq_dir / "manifest.csv"
        with source.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, ["lq", "hq"])
            writer.writeheader()
            writer.writerows(rows)
    else:
        from zephir import datasets

        source = lq_dir / "index.csv"
        datasets.index_folder(lq_dir / "lq", source)
    records = []
    for mode in modes:
        run = root / "restore" / name / "standin" / mode
        for stem in stems:
            zio.write_png(run / f"{stem}.png", rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
        record = run / "shard-0-of-1.done.json"
        record.write_text(json.dumps({"job": {"mode": mode, "backbone": "standin"},
                                      "random_init": True, "hdclip_random_init": True}))
        records.append(record)
    return records, source


def _png(path: Path) -> np.ndarray:
    img = zio.load_image(path).pixels
    assert img.shape[0] > 100 and img.std() > 0
    return img


def test_figure21_and_comparison_from_standins(tmp_path):
    sets = [_standin_runs(tmp_path, n, ["a", "b"], hq=False)
            for n in ("realdeg_film", "realdeg_social", "realdeg_old")]
    restored = [r for records, _ in sets for r in records]
    out = registry.draw_figure(21, tmp_path / "fig21.png", restored=restored,
                               lq=[lq for _, lq in sets], crop=24)
    _png(out)
    with pytest.raises(ValueError, match="do not split"):
        registry.draw_figure(21, tmp_path / "x.png", restored=restored[:4],
                             lq=[lq for _, lq in sets])
    records, manifest = _standin_runs(tmp_path, "div2k_val", ["c", "d", "e", "f"])
    _png(registry.draw_figure("comparison", tmp_path / "cmp.png", restored=records,
                              lq=[manifest], crop=24))
    with pytest.raises(ValueError, match="no image"):
        registry.draw_figure("comparison", tmp_path / "x.png", restored=records,
                             lq=[sets[0][1]])


@pytest.mark.slow
def test_paper_config_plans_figure21_and_every_comparison(workdir):  # noqa: F811
    """Dry run of config/paper.yaml: figure 21 draws FaithDiff on RealDeg's three subsets in
    the three modes; a comparison figure for every test set x backbone."""
    cfg = yaml.safe_load((workdir / "config" / "paper.yaml").read_text())
    out = run_snakemake(["-n", "-p", "--configfile", "config/paper.yaml"], cwd=workdir).stdout
    blocks = out.split("\n\n")
    (fig21,) = [b for b in blocks if "rule figure21:" in b]
    for subset in ("realdeg_film", "realdeg_social", "realdeg_old"):
        for mode in ("baseline", "cfg", "cfpg"):
            assert f"results/paper/restore/{subset}/faithdiff/{mode}/shard-0-of-4" in fig21
        assert f"results/paper/data/{subset}/index.csv" in fig21
    comparisons = [b for b in blocks if "rule figure_comparison:" in b]
    res = cfg["restoration"]
    realdeg = [s for s in res["sets"] if cfg["datasets"][s].get("hq", True) is False]
    planned = {(s, b) for s in res["sets"] for b in (
        res["realworld"]["backbones"] if s in realdeg else res["backbones"])}
    assert len(comparisons) == len(planned) == 3 * 3 + 3  # table 1's sets, RealDeg's FaithDiff
    for s, b in planned:
        assert any(f"results/paper/figures/comparison/{s}-{b}.png" in c for c in comparisons)
