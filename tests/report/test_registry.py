"""The report registry: the one list of tables and figures, column formats, captions read from
the results, and figure dispatch. Small hand-written metrics.json files; no model is trained."""
from __future__ import annotations

import csv as csv_module
import inspect
import json
import math
import re
from pathlib import Path

import pandas as pd
import pytest

from zephir import cli
from zephir.report import captions, registry, render
from zephir.report.registry import Figure, Option, several

from ..test_workflow import run_snakemake, workdir  # noqa: F401 - the fixture

REPO = Path(__file__).resolve().parents[2]

NAN = float("nan")


def _result(method, single, *, gap=None, topk=2, model_gap=5.0, losses=(True, True),
            random_init=True, arch="zephir-tiny-rn", steps=2, mixtures=True):
    """A metrics.json as `zephir evaluate` writes it (the fields the report reads)."""
    acc, mae, srocc, pcc = single
    near = {"mae": mae - 1, "srocc": srocc + 0.01, "pcc": pcc, "n": 10}
    if gap is not None:
        near["gap"] = gap
    metrics = {"single": {"type_acc": acc, "mae": mae, "srocc": srocc, "pcc": pcc, "n": 40},
               "near_bin": near,
               "between_bins": {"mae": mae + 1, "srocc": srocc - 0.01, "pcc": pcc, "n": 30}}
    if mixtures:
        metrics["mixtures"] = {"type_recall": 0.5, "mae": mae + 2, "srocc": 0.5, "pcc": 0.5,
                               "n": 8}
    return {"method": method, "arch": arch, "random_init": random_init,
            "hdclip": {"arch": arch, "gap": model_gap, "topk": topk},
            "train": {"steps": steps, "use_level": losses[0], "use_slerp": losses[1]},
            "checkpoint": f"{method}/checkpoint.pt", "split": "val", "metrics": metrics}


TABLE2 = [_result("hdclip", (0.585156, 7.4567, 0.81234, 0.8)),
          _result("mmrealsr_style", (0.25, 9.1, 0.8124, 0.7)),
          _result("clip_zeroshot", (0.5, 20.0, 0.1, NAN))]


def _write(folder: Path, results) -> list[Path]:
    paths = []
    for i, r in enumerate(results):
        p = folder / f"m{i}" / "metrics.json"
        p.parent.mkdir(parents=True)
        p.write_text(json.dumps(r))
        paths.append(p)
    return paths


# ---------------------------------------------------------------------------- one list

def _choices(parser, command, dest):
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    return list(next(a for a in sub._actions if a.dest == dest).choices)


def test_cli_choices_are_the_registry():
    parser = cli.build_parser()
    assert _choices(parser, "table", "name") == [*registry.TABLES, *registry.CONFIG_TABLES]
    assert _choices(parser, "figure", "number") == list(registry.FIGURES)


def test_every_entry_resolves():
    for t in registry.TABLES.values():
        assert callable(registry.resolve(t.build)) and callable(t.caption)
        assert t.source.read is not None and t.source.many
    for f in registry.FIGURES.values():
        params = inspect.signature(registry.resolve(f.draw)).parameters
        for name in [i.dest for i in f.inputs] + [o.keyword for o in f.options] + ["out"]:
            assert name in params, f"figure {f.number}: draw function takes no {name!r}"


def _figure_commands(dry_run: str) -> dict[str, list[str]]:
    """The shell command of each job of a `snakemake -n -p` output, by rule."""
    jobs = re.findall(r"^(?:local)?rule (\w+):\n(.*?)^Shell command: (.*?)$", dry_run,
                      flags=re.MULTILINE | re.DOTALL)
    out: dict[str, list[str]] = {}
    for rule, _, command in jobs:
        out.setdefault(rule, []).append(command)
    return out


def test_each_figure_job_runs_its_own_figure_with_the_declared_flags(workdir):  # noqa: F811
    """The figure rules are made in a loop from the registry: every figure's job, as the paper
    config plans it (all of them, 21 and the comparisons included), runs `zephir figure` on its
    own number with exactly the flags its entry declares (a command evaluated after the loop
    would run the last figure's)."""
    proc = _snakemake(["-n", "-p", "all", "--configfile", "config/paper.yaml"], workdir)
    assert proc.returncode == 0, proc.stderr
    commands = _figure_commands(proc.stdout)
    for n, f in registry.FIGURES.items():
        assert commands.get(f.rule), f"figure {n}: no job of rule {f.rule} planned"
        declared = {i.flag for i in f.inputs} | {o.flag for o in f.options}
        for command in commands[f.rule]:
            assert command.startswith(f"zephir figure {n} "), command
            assert set(re.findall(r" --([\w-]+)", command)) - {"out"} == declared, command


def _snakemake(args, cwd):
    return run_snakemake(args, cwd, check=False)


def _jobs(out):
    stats = out.split("Job stats:")[1].split("total")[0]
    return {ln.split()[0]: int(ln.split()[1]) for ln in stats.splitlines()
            if len(ln.split()) == 2 and ln.split()[1].isdigit()}


def test_workflow_builds_what_the_registry_lists(workdir):  # noqa: F811
    """A table added to the registry (and nowhere else) is planned by the workflow; a figure
    added to it without its inputs in zephir.plan is refused, naming the figure."""
    proc = _snakemake(["-n"], workdir)
    assert proc.returncode == 0, proc.stderr
    jobs = _jobs(proc.stdout)
    # every table but table 7, which needs a restored hq: false set (RealDeg)
    assert jobs["table"] == len(registry.TABLES) - 1 and "table7" not in proc.stdout
    # every figure but 21, which needs restored hq: false sets (RealDeg) as table 7 does
    figure_rules = {f.rule for f in registry.FIGURES.values()} - {"figure21"}
    assert {k for k in jobs if k.startswith("figure")} == figure_rules

    (workdir / "Snakefile.extra").write_text(
        "import dataclasses\nimport zephir.report.registry as R\n"
        "R.TABLES['table_extra'] = dataclasses.replace(R.TABLES['table3'], name='table_extra')\n"
        'include: "Snakefile"\n')
    proc = _snakemake(["-n", "-p", "-s", "Snakefile.extra", "all"], workdir)
    assert proc.returncode == 0, proc.stderr
    assert _jobs(proc.stdout)["table"] == len(registry.TABLES)
    assert "zephir table table_extra --metrics" in proc.stdout

    (workdir / "Snakefile.extra").write_text(
        "import dataclasses\nimport zephir.report.registry as R\n"
        "R.FIGURES[99] = dataclasses.replace(R.FIGURES[8], number=99)\n"
        'include: "Snakefile"\n')
    proc = _snakemake(["-n", "-s", "Snakefile.extra", "all"], workdir)
    assert proc.returncode != 0
    assert "figure 99 of the registry has no inputs in zephir.plan" in proc.stdout + proc.stderr


# ---------------------------------------------------------------------------- formats

EXPECTED_TABLE2_MD = """\
| Method           | Type Acc (%) |      MAE |     SROCC |       PCC |
|:-----------------|-------------:|---------:|----------:|----------:|
| HD-CLIP          |     **58.5** | **7.46** | **0.812** | **0.800** |
| MM-RealSR-style  |         25.0 |     9.10 | **0.812** |     0.700 |
| CLIP (zero-shot) |         50.0 |    20.00 |     0.100 |         – |
"""


def test_table2_markdown_formats_columns_and_bolds_the_best(tmp_path):
    paths = registry.make_table("table2", _write(tmp_path, TABLE2), "abc123", tmp_path / "t2")
    assert [p.name for p in paths] == ["t2.csv", "t2.md", "t2.tex", "t2.json", "t2.paper.csv",
                                       "t2.paper.md"]
    md = paths[1].read_text()
    table, caption = md.split("\n\n")
    assert table + "\n" == EXPECTED_TABLE2_MD  # ties at the shown precision are both bold
    assert caption.startswith("Table 2: degradation estimation on the single-type validation "
                              "samples. Config abc123. Encoders trained from random init")
    assert "tiny architecture zephir-tiny-rn" in caption
    assert caption.endswith("Training steps: 2 per model. Bold: the best value of each column "
                            "(lower is better for MAE; higher is better for Type Acc (%), SROCC, "
                            "PCC).\n")


def test_csv_keeps_full_precision_and_tex_uses_the_formats(tmp_path):
    paths = registry.make_table("table2", _write(tmp_path, TABLE2), "abc123", tmp_path / "t2")
    csv = pd.read_csv(paths[0])
    assert csv["Type Acc (%)"].tolist()[:2] == [100 * 0.585156, 25.0]  # data, not rounded
    assert csv["MAE"].tolist() == [7.4567, 9.1, 20.0] and math.isnan(csv["PCC"].iloc[2])
    tex = paths[2].read_text()
    assert r"\begin{tabular}{lrrrr}" in tex and r"\toprule" in tex and r"\label{tab:table2}" in tex
    assert r"Method & Type Acc (\%) & MAE & SROCC & PCC \\" in tex
    assert (r"HD-CLIP & \textbf{58.5} & \textbf{7.46} & \textbf{0.812} & \textbf{0.800} \\"
            in tex)
    assert r"CLIP (zero-shot) & 50.0 & 20.00 & 0.100 & -- \\" in tex
    assert r"\caption{Table 2: degradation" in tex and "Type Acc (\\%)" in tex


def test_json_holds_the_csv_cells_by_row_for_dvc_metrics(tmp_path):
    paths = registry.make_table("table2", _write(tmp_path, TABLE2), "abc123", tmp_path / "t2")
    metrics = json.loads((tmp_path / "t2.json").read_text())
    with paths[0].open(newline="") as fh:
        rows = list(csv_module.DictReader(fh))
    assert list(metrics) == [r["Method"] for r in rows]
    for r in rows:
        for col in ("Type Acc (%)", "MAE", "SROCC", "PCC"):
            if r[col] == "":
                assert metrics[r["Method"]][col] is None  # NaN: null, as DVC shows it
            else:
                assert metrics[r["Method"]][col] == float(r[col])
    assert "Method" not in metrics["HD-CLIP"]  # the label names the row, not a cell


def test_table3_and_4_show_settings_from_the_results(tmp_path):
    ablations = [_result("hdclip", (0.6, 6.0, 0.8, 0.8), losses=(False, False)),
                 _result("hdclip", (0.7, 5.0, 0.9, 0.9), losses=(True, True))]
    md = registry.make_table("table3", _write(tmp_path / "3", ablations), "h",
                             tmp_path / "t3")[1].read_text()
    assert "| (A) | no      | no      |" in md and "**70.0**" in md and "**5.00**" in md
    assert "All with top-k 2 and gap 5." in md
    grid = [_result("hdclip", (0.6, 6.0, 0.8, 0.8), topk=None, model_gap=20.0),
            _result("hdclip", (0.7, 5.0, 0.9, 0.9), topk=1, model_gap=1.0)]
    t4 = registry.make_table("table4", _write(tmp_path / "4", grid), "h", tmp_path / "t4")
    rows = pd.read_csv(t4[0], dtype=str)
    assert rows[["top-k", "gap size"]].values.tolist() == [["1", "1"], ["all", "20"]]
    assert "All with the losses of (D)." in t4[1].read_text()


def test_an_undeclared_numeric_column_is_refused():
    df = pd.DataFrame({"Method": ["a"], "MAE": [1.0], "Other": [2.0]})
    with pytest.raises(ValueError, match="'Other'"):
        render.check_columns(df, {"MAE": render.MAE}, "tab:x")


def test_column_declaration_is_checked():
    with pytest.raises(ValueError, match="better"):
        render.Column(".2f", "smaller")
    assert render.Column(".2f", "lower").best([3.004, 3.001, 5.0, NAN]) == {0, 1}
    assert render.Column(".2f", None).best([1.0, 2.0]) == set()
    assert render.Column(".2f", "lower").best([1.0, NAN]) == set()  # nothing to compare
    assert render.Column(".1f", "higher").best([50.0, 50.04]) == set()  # all tie as shown


# ---------------------------------------------------------------------------- captions

def test_beyond_caption_says_the_gap_of_the_results(tmp_path):
    results = [_result("hdclip", (0.6, 6.0, 0.8, 0.8), gap=10.0),
               _result("mmrealsr_style", (0.5, 7.0, 0.7, 0.7), gap=10.0)]
    md = registry.make_table("table2_beyond", _write(tmp_path / "a", results), "h",
                             tmp_path / "b")[1].read_text()
    assert "within 2.5 (gap/4) of a multiple of the gap 10;" in md
    assert "gap 5" not in md and "of 5" not in md
    assert "**5.00**" in md  # MAE near bin of HD-CLIP (6 - 1), lower is better
    # an evaluation that did not record its gap used evaluate_table's default, 5
    unrecorded = [_result("hdclip", (0.6, 6.0, 0.8, 0.8))]
    assert "multiple of the gap 5;" in captions.near_bin("T.", unrecorded, "h")
    mixed = [_result("hdclip", (0.6, 6.0, 0.8, 0.8), gap=10.0),
             _result("mmrealsr_style", (0.5, 7.0, 0.7, 0.7), gap=5.0)]
    assert "gaps differ: HD-CLIP 10, MM-RealSR-style 5" in captions.near_bin("T.", mixed, "h")


def test_captions_label_random_init_and_tiny_encoders_only_when_so():
    pretrained = [_result("hdclip", (0.6, 6.0, 0.8, 0.8), random_init=False, arch="ViT-B-32")]
    text = captions.estimation("T.", pretrained, "h")
    assert "random init" not in text and "tiny" not in text and "Config h." in text
    assert captions.figure_note(pretrained) == ""
    tiny = [_result("hdclip", (0.6, 6.0, 0.8, 0.8), random_init=True)]
    assert "random init" in captions.estimation("T.", tiny, "h")
    assert (captions.figure_note(tiny)
            == " [random-init encoder, zephir-tiny-rn: not the paper's numbers]")
    # the flags are found wherever a results file keeps them (a restoration's score file, say)
    nested = [{"backbone": "tiny", "estimator": {"random_init": True,
                                                 "hdclip": {"arch": "zephir-tiny-vit"}}}]
    text = captions.provenance("Table 1.", nested, "h")
    assert "random init" in text and "zephir-tiny-vit" in text


# ---------------------------------------------------------------------------- CLI

def test_table_cli_writes_the_three_files(tmp_path, capsys):
    files = _write(tmp_path, TABLE2)
    code = cli.main(["table", "table2", "--metrics", *map(str, files), "--config-hash", "c0ffee",
                     "--out", str(tmp_path / "out" / "table2")])
    assert code == 0, capsys.readouterr().err
    assert "Config c0ffee." in (tmp_path / "out" / "table2.md").read_text()
    assert (tmp_path / "out" / "table2.csv").is_file() and (tmp_path / "out/table2.tex").is_file()


def test_table_cli_names_a_missing_source(tmp_path, capsys):
    code = cli.main(["table", "table3", "--config-hash", "h", "--out", str(tmp_path / "t")])
    assert code == 2 and "table3 needs --metrics" in capsys.readouterr().err


# ---------------------------------------------------------------------------- figures

@pytest.fixture()
def fake_figure(monkeypatch):
    """Figure 99 in the registry, drawing nothing but recording its keyword arguments."""
    calls = []

    def draw(*, metrics, sources, out, level):
        calls.append({"metrics": metrics, "sources": sources, "out": out, "level": level})
        return out

    fig = Figure(99, "test", draw, (several(registry.METRICS), registry.SOURCES),
                 (Option("level", float, 80.0, "level"),))
    monkeypatch.setitem(registry.FIGURES, 99, fig)
    return calls


def test_figure_dispatch_passes_declared_inputs_and_options(fake_figure, tmp_path, capsys):
    assert cli.main(["figure", "99", "--metrics", "a.json", "b.json", "--sources", "i.csv",
                     "--out", str(tmp_path / "f.png")]) == 0
    assert fake_figure[-1] == {"metrics": [Path("a.json"), Path("b.json")],
                               "sources": Path("i.csv"), "out": tmp_path / "f.png", "level": 80.0}
    registry.draw_figure(99, tmp_path / "g.png", metrics="a.json", sources=["i.csv"], level="30")
    assert fake_figure[-1]["metrics"] == [Path("a.json")] and fake_figure[-1]["level"] == 30.0
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["99", "--metrics", "a"], "figure 99 needs --sources"),
    (["3", "--arrays", "a", "b", "--predictions", "p", "--metrics", "m"],
     "figure 3 takes one --arrays file, not 2"),
    (["99", "--metrics", "a", "--sources", "i", "--type", "noise"],
     "figure 99 does not take --type (it takes --metrics, --sources, --level)"),
    (["8", "--sources", "i", "--metrics", "m"], "figure 8 does not take --metrics"),
    (["7", "--predictions", "p", "q", "--metrics", "m"],
     "figure 7: --predictions has 2, --metrics has 1 file(s)"),
    (["9"], "figure 9 needs --predictions, --metrics, --manifest, --sources"),
])
def test_figure_dispatch_errors_are_clear(fake_figure, tmp_path, capsys, argv, message):
    assert cli.main(["figure", *argv, "--out", str(tmp_path / "f.png")]) == 2
    assert message in capsys.readouterr().err
    assert not fake_figure and not (tmp_path / "f.png").exists()


def test_cli_flags_are_derived_from_the_declarations():
    inputs, options = registry.figure_inputs(), registry.figure_options()
    assert inputs["arrays"].many and not inputs["manifest"].many  # a list where any takes one
    assert "figures 3, 7, 9, 10" in inputs["metrics"].help
    assert options["type"].keyword == "kind" and "default blur" in options["type"].help
    help_text = cli.build_parser()._actions[1].choices["figure"].format_help()
    for flag in [*inputs, *options]:
        assert f"--{flag}" in help_text


def test_table2_caption_names_hdclips_choices_and_the_captions_fallback(tmp_path):
    """The readings of eq. 2 and 9 and the learning rate at its batch, from the results; the
    CLIP loss without captions (semantic_target "hq image") is said to be the fallback."""
    hd = _result("hdclip", (0.6, 7.0, 0.8, 0.8))
    hd["hdclip"].update(shift="type", slerp_negatives="batch")
    hd["train"].update(lr=3e-5, batch_size=2048, batch_per_type=512, lambda_clip=1.0)
    hd["semantic_target"] = "hq image"
    caption = captions.table2("Table 2.", [hd], "h")
    assert ("eq. 2's shift one vector per type; eq. 9's negatives the batch's other texts of "
            "the type (NumCLIP); learning rate 3e-05 at a batch of 2048 (512 per type)."
            ) in caption
    assert "had no captions file (fallback)" in caption
    hd["semantic_target"] = "captions"
    assert "fallback" not in captions.table2("Table 2.", [hd], "h")
    plain = _result("hdclip", (0.6, 7.0, 0.8, 0.8))  # older results: the readings of then
    assert "shift one vector per (type, bin); eq. 9's negatives the type's bin anchors" in \
        captions.table2("Table 2.", [plain], "h")
