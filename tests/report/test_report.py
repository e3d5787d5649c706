"""Tables and figures rendered from real evaluation results of briefly trained tiny models."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from zephir import cli, estimator_evaluation
from zephir import io as zio
from zephir.hdclip.model import HDCLIPConfig
from zephir.report import figures, registry, tables
from zephir.report.results import read_results
from zephir.training import TrainConfig, train


@pytest.fixture(scope="module")
def evaluated(labelled, tmp_path_factory):
    """metrics.json / predictions.csv / arrays.npz of HD-CLIP (losses A and D) and a baseline."""
    root = tmp_path_factory.mktemp("eval")
    out = {}
    for name, method, flags in (("D", "hdclip", (True, True)), ("A", "hdclip", (False, False)),
                                ("mm", "mmrealsr_style", (True, True))):
        cfg = TrainConfig(steps=2, batch_size=8, use_level=flags[0], use_slerp=flags[1])
        train(labelled, root / name, HDCLIPConfig(arch="zephir-tiny-rn"), cfg, method=method,
              progress=False)
        estimator_evaluation.evaluate_checkpoint(root / name / "model.safetensors", labelled,
                                                 root / name / "eval")
        out[name] = root / name / "eval"
    return out


@pytest.fixture(scope="module")
def transferred(evaluated, photo_dir, tmp_path_factory):
    """Transfer evaluations (``zephir evaluate --transfer``) of HD-CLIP (D) and the
    MM-RealSR-style baseline on a small transfer set of the four photos."""
    from zephir.degrade import transfer

    root = tmp_path_factory.mktemp("transfer")
    manifest = transfer.make(sorted(photo_dir.glob("*.png")), root / "set", per_type=4, seed=3,
                             crop_sizes=(96, 140))
    out = {}
    for name in ("D", "mm"):
        estimator_evaluation.evaluate_checkpoint(evaluated[name].parent / "model.safetensors",
                                                 manifest, root / name, transfer=True)
        out[name] = root / name
    return out


def test_evaluation_files_agree_with_each_other(evaluated):
    result = json.loads((evaluated["D"] / "metrics.json").read_text())
    table = pd.read_csv(evaluated["D"] / "predictions.csv")
    single = table[~table["types"].str.contains(r"\+")]
    true = single.apply(lambda r: r[f"{r['types']}_true"], axis=1)
    pred = single.apply(lambda r: r[f"{r['types']}_pred"], axis=1)
    assert result["metrics"]["single"]["mae"] == pytest.approx(np.mean(np.abs(true - pred)),
                                                               abs=1e-3)
    assert result["metrics"]["single"]["n"] == len(single)
    assert result["random_init"] is True and result["method"] == "hdclip"
    with np.load(evaluated["D"] / "arrays.npz") as a:
        assert a["embeddings"].shape[:2] == (len(table), 4)
        assert a["anchors"].shape == (4, 21, a["embeddings"].shape[2])


def test_table3_renders_csv_markdown_latex_with_provenance(evaluated, tmp_path):
    paths = registry.make_table("table3", [evaluated["D"] / "metrics.json",
                                           evaluated["A"] / "metrics.json"], "abc12345",
                                tmp_path / "t3")
    assert [p.name for p in paths] == ["t3.csv", "t3.md", "t3.tex", "t3.json", "t3.paper.csv",
                                       "t3.paper.md"]
    csv = pd.read_csv(paths[0])
    # beside the paper: rows (A) and (D) of its table 3, the run's value minus the printed one
    beside = pd.read_csv(paths[4])
    assert set(beside["Row"]) == {"(A)", "(D)"}
    mae_d = beside[(beside["Row"] == "(D)") & (beside["Column"] == "MAE")].iloc[0]
    assert mae_d["Run - paper"] == pytest.approx(mae_d["Run"] - mae_d["Paper"])
    assert csv.iloc[:, 0].tolist() == ["(A)", "(D)"]
    d = json.loads((evaluated["D"] / "metrics.json").read_text())["metrics"]["single"]
    # the CSV is data: the evaluation's numbers at full precision
    assert csv.loc[1, "MAE"] == pytest.approx(d["mae"], rel=1e-12)
    assert csv.loc[1, "Type Acc (%)"] == pytest.approx(100 * d["type_acc"], rel=1e-12)
    md, tex = paths[1].read_text(), paths[2].read_text()
    assert "abc12345" in md and "random init" in md and "zephir-tiny-rn" in md
    assert r"\begin{table}" in tex and r"\caption{" in tex and "abc12345" in tex
    # Markdown and LaTeX show the declared formats: MAE 2 decimals, SROCC 3, percent 1
    for text in (md, tex):
        assert f"{d['mae']:.2f}" in text and f"{d['srocc']:.3f}" in text
        assert f"{100 * d['type_acc']:.1f}" in text and f"{d['mae']:.4f}" not in text


def test_table2_and_beyond_name_the_methods(evaluated, tmp_path):
    files = [evaluated["mm"] / "metrics.json", evaluated["D"] / "metrics.json"]
    t2 = tables.table2(read_results(files))
    assert t2["Method"].tolist() == ["MM-RealSR-style", "HD-CLIP"]
    beyond = tables.table2_beyond(read_results(files))
    assert {"MAE near bin", "MAE between", "Mix type recall (%)"} <= set(beyond.columns)
    for name in ("table2", "table2_beyond"):  # every column the builders return is declared
        md = registry.make_table(name, files, "h", tmp_path / name)[1].read_text()
        assert "Config h." in md


def test_transfer_results_join_their_models_rows(evaluated, transferred, tmp_path):
    """A transfer evaluation is not a row of its own: table2_beyond gains its columns on the
    model's row, table2_transfer sets it against the validation samples per type."""
    files = [evaluated["mm"] / "metrics.json", evaluated["D"] / "metrics.json",
             transferred["D"] / "metrics.json", transferred["mm"] / "metrics.json"]
    results = read_results(files)
    assert [r["method"] for r in results] == ["mmrealsr_style", "hdclip"]
    d_val = json.loads((evaluated["D"] / "metrics.json").read_text())["metrics"]
    d_tr = json.loads((transferred["D"] / "metrics.json").read_text())
    assert d_tr["samples"] == "transfer" and d_tr["split"] == "val"
    beyond = tables.table2_beyond(results).set_index("Method")
    assert beyond.loc["HD-CLIP", "Transfer SROCC"] == d_tr["metrics"]["single"]["srocc"]
    assert beyond.loc["HD-CLIP", "Transfer acc (%)"] == pytest.approx(
        100 * d_tr["metrics"]["single"]["type_acc"])
    assert np.isnan(beyond.loc["MM-RealSR-style", "Transfer acc (%)"])  # 2 of 4 types only
    t = tables.table2_transfer(results)
    assert t[t["Method"] == "HD-CLIP"]["Type"].tolist() == ["all", "blur", "noise", "jpeg",
                                                            "downsample"]
    blur = t[(t["Method"] == "HD-CLIP") & (t["Type"] == "blur")].iloc[0]
    assert blur["Val SROCC"] == d_val["single"]["blur_srocc"]
    assert blur["Transfer SROCC"] == d_tr["metrics"]["single"]["blur_srocc"]
    assert blur["SROCC gap"] == pytest.approx(blur["Transfer SROCC"] - blur["Val SROCC"])
    per_photo = d_tr["metrics"]["per_photo"]["blur"]
    worst = min(per_photo, key=per_photo.get)
    assert blur["Worst photo"] == worst and blur["Worst photo SROCC"] == per_photo[worst]
    assert blur["Transfer SROCC within photo"] == pytest.approx(np.mean(list(per_photo.values())))
    mm_jpeg = t[(t["Method"] == "MM-RealSR-style") & (t["Type"] == "jpeg")].iloc[0]
    assert np.isnan(mm_jpeg["Transfer SROCC"])
    for name in ("table2_beyond", "table2_transfer"):  # every column returned is declared
        md = registry.make_table(name, files, "h", tmp_path / name)[1].read_text()
        assert "Config h." in md and "second implementation" in md
    # as DVC metrics: rows named by method and type, the worst photo a value
    rows = json.loads((tmp_path / "table2_transfer.json").read_text())
    assert rows["HD-CLIP / blur"]["Worst photo"] == worst
    assert "**" not in (tmp_path / "table2_transfer.md").read_text()  # no "best" across types
    # the transfer results alone, without their model's validation results: named
    with pytest.raises(ValueError, match="validation metrics.json was not given"):
        read_results([transferred["D"] / "metrics.json"])


def test_transfer_figure_keeps_numeric_photo_names(transferred, tmp_path, monkeypatch):
    """DIV2K's photos are named 0801...: the legend reads each one's SROCC under that name."""
    drawn = {}
    monkeypatch.setattr(figures, "_save", lambda fig, path: drawn.setdefault("fig", fig))
    table = pd.read_csv(transferred["D"] / "predictions.csv")
    names = {p: f"{801 + i:04d}" for i, p in enumerate(sorted(table["source"].unique()))}
    table["source"] = table["source"].map(names)
    table.to_csv(tmp_path / "predictions.csv", index=False)
    result = json.loads((transferred["D"] / "metrics.json").read_text())
    per_photo = result["metrics"]["per_photo"]
    result["metrics"]["per_photo"] = {t: {names[p]: v for p, v in per.items()}
                                      for t, per in per_photo.items()}
    (tmp_path / "metrics.json").write_text(json.dumps(result))
    figures.figure_transfer([tmp_path / "predictions.csv"], [tmp_path / "metrics.json"],
                            tmp_path / "f.png")
    blur = next(ax for ax in drawn["fig"].axes if ax.get_title() == "blur")
    labels = [t.get_text() for t in blur.get_legend().get_texts()]
    expect = {f"{names[p]} ({v:.2f})" for p, v in per_photo["blur"].items()}
    assert set(labels) == expect and all(lb.startswith("08") for lb in labels)


def test_missing_results_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope/metrics.json"):
        read_results([tmp_path / "nope" / "metrics.json"])


def _png_has_content(path):
    img = zio.load_image(path).pixels
    assert img.shape[0] > 200 and img.shape[1] > 200
    assert img.std() > 10  # not a blank canvas


def _restorations(hdclip, photo_dir, tmp_path) -> dict:
    """Figures 6 and 11's inputs: 32-px LQ crops of two photos restored by the tiny backbone,
    baseline and CFPG at two w_orth."""
    from zephir import restore
    from zephir.degrade import blind
    from zephir.embed import embed_set

    lq = tmp_path / "blind"
    blind.blind_folder(sorted(photo_dir.glob("*.png"))[:2], lq, progress=False,
                       config=blind.BlindConfig(crop=128))
    embeddings = embed_set(hdclip, lq / blind.MANIFEST, tmp_path / "emb.safetensors").path
    runs = {"baseline": {"mode": "baseline"}, "cfpg": {"mode": "cfpg"},
            "w0": {"mode": "cfpg", "w_orth": 0.0}}
    done = {name: restore.restore_folder(lq / blind.MANIFEST, tmp_path / name,
                                         embeddings=embeddings, steps=2, **kw)
            and restore.done_path(tmp_path / name, 0, 1) for name, kw in runs.items()}
    return {6: {"restored": [done["baseline"], done["cfpg"]], "blind": lq / blind.MANIFEST,
                "crop": 64},
            11: {"restored": [done["w0"], done["cfpg"]], "blind": lq / blind.MANIFEST},
            21: {"restored": [done["baseline"], done["cfpg"]], "lq": [lq / blind.MANIFEST]},
            "comparison": {"restored": [done["baseline"], done["cfpg"]],
                           "lq": [lq / blind.MANIFEST], "crop": 24}}


def test_every_figure_is_drawn(evaluated, transferred, labelled, photo_dir, tmp_path):
    """Each figure of the registry, drawn through its dispatch from real evaluation files."""
    from zephir import datasets

    index = tmp_path / "index.csv"
    datasets.index_folder(photo_dir, index)
    d, a, mm = evaluated["D"], evaluated["A"], evaluated["mm"]
    inputs = {
        1: {"checkpoint": d.parent / "model.safetensors"},
        3: {"arrays": d / "arrays.npz", "predictions": d / "predictions.csv",
            "metrics": d / "metrics.json"},
        7: {"predictions": [d / "predictions.csv", mm / "predictions.csv"],
            "metrics": [d / "metrics.json", mm / "metrics.json"]},
        8: {"sources": index},
        9: {"predictions": d / "predictions.csv", "metrics": d / "metrics.json",
            "manifest": labelled, "sources": index},
        10: {"arrays": [d / "arrays.npz", a / "arrays.npz"],
             "metrics": [d / "metrics.json", a / "metrics.json"]},
        "transfer": {"predictions": [transferred["D"] / "predictions.csv",
                                     transferred["mm"] / "predictions.csv"],
                     "metrics": [transferred["D"] / "metrics.json",
                                 transferred["mm"] / "metrics.json"]},
        **_restorations(d.parent / "model.safetensors", photo_dir, tmp_path),
    }
    assert set(inputs) == set(registry.FIGURES)  # a new figure gets a case here
    for n, given in inputs.items():
        path = registry.draw_figure(n, tmp_path / f"f{n}.png", **given)
        assert path == tmp_path / f"f{n}.png"
        _png_has_content(path)


def test_figure_cli_names_missing_inputs(tmp_path, capsys):
    assert cli.main(["figure", "9", "--out", str(tmp_path / "f.png")]) != 0
    assert "figure 9 needs --predictions, --metrics" in capsys.readouterr().err
    assert not (tmp_path / "f.png").exists()


def test_figure10_needs_hdclip_arrays(evaluated, tmp_path):
    with pytest.raises(ValueError, match="no anchors"):
        figures.figure10([evaluated["mm"] / "arrays.npz"], [evaluated["mm"] / "metrics.json"],
                         tmp_path / "f.png")


def test_figure7_says_which_types_a_method_does_not_model(evaluated, tmp_path, monkeypatch):
    """MM-RealSR-style models blur and noise only: its JPEG and downsample panels say "not
    modelled" instead of drawing nothing, and its series says it is a degree, not a level."""
    drawn = {}
    monkeypatch.setattr(figures, "_save", lambda fig, path: drawn.setdefault("fig", fig))
    d, mm = evaluated["D"], evaluated["mm"]
    figures.figure7([d / "predictions.csv", mm / "predictions.csv"],
                    [d / "metrics.json", mm / "metrics.json"], tmp_path / "f7.png")
    panels = {ax.get_title(): ax for ax in drawn["fig"].axes}
    notes = {t: [x.get_text() for x in ax.texts] for t, ax in panels.items()}
    assert notes["jpeg"] and "not modelled: MM-RealSR" in notes["jpeg"][0]
    assert notes["downsample"] and not notes["blur"] and not notes["noise"]
    legend = [x.get_text() for x in panels["blur"].get_legend().get_texts()]
    assert any(t.startswith("MM-RealSR") and t.endswith("(degree x 100)") for t in legend)
    assert any(t.startswith("HD-CLIP") and "degree" not in t for t in legend)
