"""Restoration under Snakemake, end to end on a tiny config: blind LQ crops of two held-out
photos and a folder of real LQ images (hq: false) restored by the tiny backbone in every mode
and the CFPG sweep, scored, and shown in tables 1, 5, 7 and figures 6, 11."""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from zephir import datasets
from zephir import io as zio

from .test_workflow import run_snakemake, workdir  # noqa: F401 - the fixture


@pytest.mark.slow
def test_restoration_tables_and_figures_from_the_restored_images(workdir):  # noqa: F811
    cfg = yaml.safe_load((workdir / "config" / "config.yaml").read_text())
    cfg["datasets"]["embedded"]["images"] = ["coins", "camera", "chelsea", "astronaut"]
    cfg["datasets"]["held_out"]["images"] = ["china", "kodim04"]
    lq = workdir / "data" / "reallq"
    for name in ("coffee", "rocket"):  # real LQ images as they are: a 32-px crop of each
        zio.write_png(lq / f"{name}.png", datasets.embedded_image(name)[100:132, 100:132])
    cfg["datasets"]["reallq"] = {"kind": "folder", "path": "data/reallq", "hq": False,
                                 "label": "Real LQ"}
    cfg["synth"].update(levels_per_type=2, mixtures_per_image=0, val_fraction=0.25)
    cfg["hdclip"]["train"].update(steps=3, batch_size=8, warmup=1, eval_every=3,
                                  checkpoint_every=3)
    cfg["blind"]["crop"] = 64
    cfg["restoration"]["sets"] = ["held_out", "reallq"]
    cfg["restoration"]["sweep"].update(w_orth=[0.0, 0.6], w_par=[1.0])
    cfg["metrics"].update(with_reference=["psnr", "ssim", "lpips"],
                          without_reference=["niqe"])
    (workdir / "config" / "tiny.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    res = workdir / "results" / "embedded"
    targets = [f"results/embedded/tables/{t}.md" for t in ("table1", "table5", "table7")]
    targets += [f"results/embedded/figures/fig{n}.png" for n in (6, 11)]
    run_snakemake(["-c2", *targets, "--configfile", "config/tiny.yaml"], cwd=workdir)

    # every restored image is the LQ crop times 4, as the HQ crop it is scored against
    for run in ("baseline", "cfg", "cfpg", "cfpg-wo0-wp1"):
        folder = res / "restore/held_out/tiny" / run
        done = json.loads((folder / "shard-0-of-1.done.json").read_text())
        assert sorted(i["stem"] for i in done["images"]) == ["china", "kodim04"]
        for stem in ("china", "kodim04"):
            out = zio.load_image(folder / f"{stem}.png").pixels
            hq = zio.load_image(res / "blind/held_out/hq" / f"{stem}.png").pixels
            assert out.shape == hq.shape == (64, 64, 3)
    real = zio.load_image(res / "restore/reallq/tiny/cfpg/coffee.png").pixels
    assert real.shape == (128, 128, 3)

    # tables hold the score files' means (CSV at full precision), n/a for missing weights
    def means(d, run):
        return json.loads((res / f"scores/{d}/tiny/{run}.json").read_text())["means"]

    t1 = list(csv.DictReader((res / "tables/table1.csv").open(newline="")))
    assert [r["Mode"] for r in t1] == ["baseline", "CFG", "CFPG"]
    for row, run in zip(t1, ("baseline", "cfg", "cfpg")):
        assert float(row["held-out photos/PSNR"]) == pytest.approx(means("held_out", run)["psnr"])
        assert float(row["held-out photos/SSIM"]) == pytest.approx(means("held_out", run)["ssim"])
    md = (res / "tables/table1.md").read_text()
    assert "n/a (weights missing)" in md and "LPIPS" in md and "random-init" in md
    t5 = list(csv.DictReader((res / "tables/table5.csv").open(newline="")))
    assert [(r["w_orth"], r["w_par"]) for r in t5] == [("0", "1"), ("0.6", "1")]
    assert float(t5[1]["PSNR"]) == pytest.approx(means("held_out", "cfpg")["psnr"])
    t7 = (res / "tables/table7.md").read_text()
    assert "Real LQ/NIQE" in t7 and "n/a (weights missing)" in t7
    for n in (6, 11):
        img = zio.load_image(res / f"figures/fig{n}.png").pixels
        assert img.shape[1] > 500 and img.std() > 10
    again = run_snakemake(["-n", *targets, "--configfile", "config/tiny.yaml"], cwd=workdir)
    assert "Nothing to be done" in again.stdout + again.stderr


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def figures_load_in_chromium(report: Path, tmp: Path) -> dict[str, bool]:
    """Open every image embedded in a Snakemake report in headless Chromium; name -> loaded."""
    text = report.read_text()
    found = dict(re.findall(r'"filename": "([^"]+\.png)".*?"data_uri": "(data:image/png[^"]+)"',
                            text))
    page = tmp / "figures.html"
    imgs = "".join(f'<img id="{name}" src="{uri}">' for name, uri in found.items())
    page.write_text(
        "<html><body>" + imgs + "<script>window.addEventListener('load', () => {"
        "for (const i of document.images) i.setAttribute('data-ok', i.complete && "
        "i.naturalWidth > 0 ? 'yes' : 'no');});</script></body></html>")
    dom = subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu",
                          "--dump-dom", "--virtual-time-budget=10000", page.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    return {name: f'id="{name}" src' in dom and bool(re.search(
        rf'<img id="{re.escape(name)}"[^>]*data-ok="yes"', dom)) for name in found}


@pytest.mark.slow
def test_html_report_shows_every_table_and_figure(workdir, tmp_path):  # noqa: F811
    """`snakemake --report` writes one self-contained HTML file with the tables and figures
    (the workflow's report() declarations); each figure loads in headless Chromium."""
    if chromium() is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (.ci/run installs it)")
        pytest.skip("headless Chromium not installed (apt-get install chromium)")
    cfg = yaml.safe_load((workdir / "config" / "config.yaml").read_text())
    cfg["datasets"]["embedded"]["images"] = ["coins", "camera", "chelsea", "astronaut"]
    cfg["datasets"]["held_out"]["images"] = ["china"]
    cfg["synth"].update(levels_per_type=2, mixtures_per_image=0, val_fraction=0.25)
    cfg["hdclip"]["train"].update(steps=3, batch_size=8, warmup=1, eval_every=3,
                                  checkpoint_every=3)
    cfg["blind"]["crop"] = 64
    cfg["restoration"].update(modes=["baseline", "cfpg"])
    cfg["restoration"]["sweep"].update(w_orth=[0.6], w_par=[0.0, 1.0])
    cfg["metrics"].update(with_reference=["psnr"])
    (workdir / "config" / "tiny.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    targets = ["results/embedded/tables/table1.md", "results/embedded/figures/fig6.png",
               "results/embedded/figures/fig11.png", "results/embedded/figures/fig8.png"]
    run_snakemake(["-c2", *targets, "--configfile", "config/tiny.yaml"], cwd=workdir)
    report = workdir / "report.html"
    run_snakemake(["--report", str(report), *targets, "--configfile", "config/tiny.yaml"],
                  cwd=workdir)
    text = report.read_text()
    assert "table1.csv" in text and "Figure 6: restorations" in text
    loaded = figures_load_in_chromium(report, tmp_path)
    assert set(loaded) == {"fig6.png", "fig8.png", "fig11.png"}
    assert all(loaded.values()), loaded
