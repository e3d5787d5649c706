"""zephir.plan without Snakemake: for each of the three configs of config/, every table, figure
and stage target, and the files each reads, against expectations written out from the config's
keys and the paper's list of tables and figures (never from the plan itself)."""
from __future__ import annotations

from pathlib import Path

import pytest

import zephir.config
from zephir import plan as zplan
from zephir import stages
from zephir.report import registry

from .conftest import REPO

#: The paper's tables (all of them): 1 restoration on the sets with HQ images, 2 degradation
#: estimation against the baselines, 3 the loss ablation, 4 top-k x gap, 5 the CFPG weight
#: sweep, 6 model sizes (from the config alone), 7 restoration of real-world sets without HQ
#: images; and the two beside table 2 that zephir adds on a transfer set.
PAPER_TABLES = ("table1", "table2", "table3", "table4", "table5", "table6", "table7")
BEYOND_TABLES = ("table2_beyond", "table2_transfer")
#: The paper's figures zephir draws, the transfer figure beyond it, section 9.1's comparisons.
PAPER_FIGURES = (1, 3, 6, 7, 8, 9, 10, 11, 21)
BASELINES = ("clip_zeroshot", "daclip_style", "mmrealsr_style")
MODES = ("baseline", "cfg", "cfpg")


def _plan(name: str, present=()):
    cfg = zephir.config.load(REPO / "config" / f"{name}.yaml")
    return cfg, zplan.Plan(cfg, present=lambda path: path in present)


def _s(paths) -> set[str]:
    return {str(p) for p in paths}


def _model(r: str, folder: str) -> str:
    return f"{r}/{folder}/model.safetensors"


def _metrics(r: str, folder: str, what: str = "metrics.json") -> str:
    return f"{r}/{folder}/eval/{what}"


# -------------------------------------------------------------- the embedded configs
#: config.yaml and embedded-gpu.yaml plan the same runs (the GPU one trains longer): the
#: embedded photos train, held_out is restored by `tiny` in three modes and a 3 x 2 sweep, one
#: shard; ablations have a budget of their own (estimation.ablation_steps), so the default
#: combination D-k2-g5 is an ablation job, not the main model; no eval_set, no set without
#: HQ images (no table 7, no figure 21), a transfer set "transfer".
EMBEDDED = ("config", "embedded-gpu")
EMBEDDED_SWEEP = [f"cfpg-wo{wo}-wp{wp}" for wo in ("0", "0.6", "1") for wp in ("0", "1")]


def _embedded_tables(r: str) -> dict[str, set[str]]:
    table2 = {_metrics(r, f"baselines/{m}") for m in BASELINES} | {_metrics(r, "hdclip")}
    transfer = {f"{r}/transfer/{m}/eval/metrics.json" for m in (*BASELINES, "hdclip")}
    return {
        "table1": {f"{r}/scores/held_out/tiny/{m}.json" for m in MODES},
        "table2": table2,
        "table2_beyond": table2 | transfer,
        "table2_transfer": table2 | transfer,
        "table3": {_metrics(r, f"ablation/{x}-k2-g5") for x in "ABCD"},
        "table4": {_metrics(r, f"ablation/D-k{k}-g{g}") for k in ("1", "2", "all")
                   for g in ("1", "5", "10", "20")},
        "table5": {f"{r}/scores/held_out/tiny/{run}.json" for run in EMBEDDED_SWEEP},
    }


@pytest.mark.parametrize("name", EMBEDDED)
def test_embedded_tables_read_the_results_of_their_runs(name):
    cfg, plan = _plan(name)
    r = f"results/{cfg['name']}"
    expected = _embedded_tables(r)
    assert set(plan.planned_tables()) == set(expected)
    assert set(plan.planned_tables()) | set(registry.CONFIG_TABLES) == \
        set(PAPER_TABLES) - {"table7"} | set(BEYOND_TABLES)
    for table, files in expected.items():
        assert _s(plan.table_inputs(table)) == files, table
    assert len(plan.table_inputs("table4")) == 12 and len(plan.table_inputs("table5")) == 6
    assert plan.headline_inputs() == {"table2": Path(f"{r}/tables/table2.json"),
                                      "table1": Path(f"{r}/tables/table1.json")}


@pytest.mark.parametrize("name", EMBEDDED)
def test_embedded_figures_read_the_results_they_draw(name):
    cfg, plan = _plan(name)
    r = f"results/{cfg['name']}"
    hd, mm = _model(r, "hdclip"), _model(r, "baselines/mmrealsr_style")
    modes = [f"{r}/restore/held_out/tiny/{m}/shard-0-of-1.done.json" for m in MODES]
    sweep = [f"{r}/restore/held_out/tiny/{run}/shard-0-of-1.done.json" for run in EMBEDDED_SWEEP]
    blind = f"{r}/blind/held_out/manifest.csv"
    transfer = [f"{r}/transfer/{m}/eval" for m in (*BASELINES, "hdclip")]
    expected = {
        1: {"checkpoint": hd},
        3: {"arrays": _metrics(r, "hdclip", "arrays.npz"),
            "predictions": _metrics(r, "hdclip", "predictions.csv"),
            "metrics": _metrics(r, "hdclip")},
        7: {"predictions": [f"{Path(c).parent}/eval/predictions.csv" for c in (hd, mm)],
            "metrics": [f"{Path(c).parent}/eval/metrics.json" for c in (hd, mm)]},
        8: {"sources": f"{r}/data/embedded/index.csv"},
        9: {"predictions": _metrics(r, "hdclip", "predictions.csv"),
            "metrics": _metrics(r, "hdclip"), "manifest": f"{r}/synth/embedded/manifest.csv",
            "sources": f"{r}/data/embedded/index.csv"},
        10: {"arrays": [_metrics(r, f"ablation/{x}-k2-g5", "arrays.npz") for x in "ABCD"],
             "metrics": [_metrics(r, f"ablation/{x}-k2-g5") for x in "ABCD"]},
        6: {"restored": modes, "shards": modes, "blind": blind},
        11: {"restored": sweep, "shards": sweep, "blind": blind},
        "transfer": {"predictions": [f"{t}/predictions.csv" for t in transfer],
                     "metrics": [f"{t}/metrics.json" for t in transfer]},
    }
    assert set(plan.planned_figures()) == set(PAPER_FIGURES) - {21} | {"transfer"}
    assert set(plan.planned_figures()) == set(expected)
    for number, inputs in expected.items():
        got = plan.figure_inputs(number)
        assert {k: [str(p) for p in v] if isinstance(v, list) else str(v)
                for k, v in got.items()} == inputs, number
    assert plan.comparisons() == [("held_out", "tiny")]
    got = plan.figure_inputs("comparison", "held_out", "tiny")
    assert _s(got["restored"]) == set(modes) and str(got["lq"]) == blind
    est, res = cfg["estimation"], cfg["restoration"]
    assert plan.figure_options(1) == {"type": est["figure_type"]}
    assert plan.figure_options(8) == {"level": est["figure_level"]}
    assert plan.figure_options(6) == plan.figure_options(11) == {"crop": res["figure_crop"]}
    assert plan.figure_options(3) == {}
    assert str(plan.figure_file("comparison", "held_out", "tiny")) == \
        f"{r}/figures/comparison/held_out-tiny.png"
    assert str(plan.figure_file("transfer")) == f"{r}/figures/fig-transfer.png"


@pytest.mark.parametrize("name", EMBEDDED)
def test_embedded_stage_targets(name):
    cfg, plan = _plan(name)
    r = f"results/{cfg['name']}"
    tables = _embedded_tables(r)
    figures = {f"{r}/figures/fig{n}.png" for n in set(PAPER_FIGURES) - {21}}
    report = ({f"{r}/tables/{t}.md" for t in [*tables, "table6"]} | figures
              | {f"{r}/figures/fig-transfer.png", f"{r}/figures/comparison/held_out-tiny.png",
                 f"{r}/metrics"})
    runs = [("tiny", m) for m in MODES] + [("tiny", run) for run in EMBEDDED_SWEEP]
    estimate = (tables["table2"] | tables["table3"] | tables["table4"]
                | tables["table2_transfer"]) - {_metrics(r, "hdclip")}
    expected = {
        "synthesize": {f"{r}/data/{d}/index.csv" for d in ("embedded", "held_out", "transfer")}
        | {f"{r}/synth/embedded/manifest.csv", f"{r}/blind/held_out/manifest.csv"},
        "train": {_model(r, "hdclip")},
        "estimate": estimate,
        "restore": {f"{r}/restore/held_out/{b}/{run}/shard-0-of-1.done.json" for b, run in runs},
        "score": {f"{r}/scores/held_out/{b}/{run}.json" for b, run in runs},
        "report": report,
    }
    assert set(expected) == set(stages.NAMES)
    for stage, targets in expected.items():
        assert _s(plan.stage_targets(stage)) == targets, stage
    # the dry run's job counts: 3 baselines + 15 ablations + 4 transfer evaluations; 9 runs
    assert len(estimate) == 22 and len(expected["restore"]) == 9
    assert _s(plan.all_targets()) == ({f"{r}/synth/embedded/manifest.csv",
                                       f"{r}/blind/held_out/manifest.csv", _model(r, "hdclip")}
                                      | report)
    assert _s(plan.figures_targets()) == ({f"{r}/tables/{t}.{e}" for t in tables
                                           for e in ("csv", "md", "tex")}
                                          | figures | {f"{r}/figures/fig-transfer.png"})


# -------------------------------------------------------------- the paper
#: config/paper.yaml: DIV2K trains, its validation set evaluates (eval_set) and is, with RealSR
#: and DRealSR, restored by SeeSR, PASD and FaithDiff; the three RealDeg sets (no HQ images)
#: by FaithDiff alone (restoration.realworld.backbones); a 5 x 5 sweep on DIV2K-val with
#: FaithDiff; four shards per run; ablations at the full budget, so D with the configured
#: top-k 2 and gap 5 is the main model.
R = "results/paper"
HQ_SETS = ("div2k_val", "realsr", "drealsr")
REALDEG = ("realdeg_film", "realdeg_social", "realdeg_old")
BACKBONES = ("seesr", "pasd", "faithdiff")
WEIGHTS = ("0", "0.3", "0.6", "0.9", "1")
PAPER_SWEEP = [f"cfpg-wo{wo}-wp{wp}" for wo in WEIGHTS for wp in WEIGHTS]


def _paper_runs() -> dict[str, list[tuple[str, str, str]]]:
    return {"table1": [(d, b, m) for d in HQ_SETS for b in BACKBONES for m in MODES],
            "table7": [(d, "faithdiff", m) for d in REALDEG for m in MODES],
            "table5": [("div2k_val", "faithdiff", run) for run in PAPER_SWEEP]}


def _paper_tables(released: bool) -> dict[str, set[str]]:
    methods = [*BASELINES, "daclip_released"] if released else list(BASELINES)
    table2 = {_metrics(R, f"baselines/{m}") for m in methods} | {_metrics(R, "hdclip")}
    transfer = {f"{R}/transfer/{m}/eval/metrics.json" for m in (*methods, "hdclip")}
    d_model = {(k, g): _metrics(R, "hdclip") if (k, g) == ("2", "5")
               else _metrics(R, f"ablation/D-k{k}-g{g}")
               for k in ("1", "2", "all") for g in ("1", "5", "10", "20")}
    scores = {t: {f"{R}/scores/{d}/{b}/{run}.json" for d, b, run in runs}
              for t, runs in _paper_runs().items()}
    return {"table2": table2, "table2_beyond": table2 | transfer,
            "table2_transfer": table2 | transfer,
            "table3": {_metrics(R, f"ablation/{x}-k2-g5") for x in "ABC"}
            | {_metrics(R, "hdclip")},
            "table4": set(d_model.values()), **scores}


@pytest.mark.parametrize("released", [False, True])
def test_paper_tables_read_the_results_of_their_runs(released):
    cfg, plan = _plan("paper", present={cfg_weights()} if released else ())
    expected = _paper_tables(released)
    assert set(plan.planned_tables()) | set(registry.CONFIG_TABLES) == \
        set(PAPER_TABLES) | set(BEYOND_TABLES)
    assert set(registry.TABLES) | set(registry.CONFIG_TABLES) == \
        set(PAPER_TABLES) | set(BEYOND_TABLES)  # every table of the registry is covered here
    assert set(plan.planned_tables()) == set(expected)
    for table, files in expected.items():
        assert _s(plan.table_inputs(table)) == files, table
    assert [len(expected[t]) for t in ("table1", "table7", "table5")] == [27, 9, 25]
    assert plan.daclip_released is released


def cfg_weights() -> str:
    """DA-CLIP's released weights as config/paper.yaml names them."""
    return zephir.config.load(REPO / "config" / "paper.yaml")["estimation"]["daclip_weights"]


def test_paper_figures_read_the_results_they_draw():
    cfg, plan = _plan("paper")
    hd = _model(R, "hdclip")

    def done(d, b, run):
        return [f"{R}/restore/{d}/{b}/{run}/shard-{i}-of-4.done.json" for i in range(4)]

    fig6 = [("div2k_val", "seesr", m) for m in MODES]  # first set with HQ images, first backbone
    fig21 = _paper_runs()["table7"]
    sweep = _paper_runs()["table5"]
    assert set(plan.planned_figures()) == set(PAPER_FIGURES) | {"transfer"}
    assert set(registry.FIGURES) == set(PAPER_FIGURES) | {"transfer", "comparison"}
    got = {n: plan.figure_inputs(n) for n in plan.planned_figures()}
    assert str(got[1]["checkpoint"]) == hd
    assert str(got[9]["manifest"]) == f"{R}/synth_eval/div2k_val/manifest.csv"
    assert str(got[9]["sources"]) == f"{R}/data/div2k_val/index.csv"
    assert str(got[8]["sources"]) == f"{R}/data/div2k_train/index.csv"
    # figure 10: the loss ablations, the fourth (D) being the main model
    assert [str(p) for p in got[10]["metrics"]] == \
        [_metrics(R, f"ablation/{x}-k2-g5") for x in "ABC"] + [_metrics(R, "hdclip")]
    for number, runs in ((6, fig6), (11, sweep), (21, fig21)):
        assert [str(p) for p in got[number]["restored"]] == [done(*r)[0] for r in runs]
        assert _s(got[number]["shards"]) == {f for r in runs for f in done(*r)}
    assert str(got[6]["blind"]) == str(got[11]["blind"]) == f"{R}/blind/div2k_val/manifest.csv"
    assert [str(p) for p in got[21]["lq"]] == [f"{R}/data/{d}/index.csv" for d in REALDEG]
    assert plan.figure21_backbone() == "faithdiff"
    assert len(got["transfer"]["metrics"]) == 4
    comparisons = [(d, b) for d in HQ_SETS for b in BACKBONES] + [(d, "faithdiff")
                                                                   for d in REALDEG]
    assert plan.comparisons() == comparisons
    for d, b in comparisons:
        inputs = plan.figure_inputs("comparison", d, b)
        assert [str(p) for p in inputs["restored"]] == [done(d, b, m)[0] for m in MODES]
        assert str(inputs["lq"]) == (f"{R}/blind/{d}/manifest.csv" if d in HQ_SETS
                                     else f"{R}/data/{d}/index.csv")


def test_paper_stage_targets():
    cfg, plan = _plan("paper")
    tables = _paper_tables(False)
    runs = [r for t in ("table1", "table7", "table5") for r in _paper_runs()[t]]
    datasets = ("div2k_train", "div2k_val", *HQ_SETS[1:], *REALDEG)
    figures = ({f"{R}/figures/fig{n}.png" for n in PAPER_FIGURES}
               | {f"{R}/figures/fig-transfer.png"})
    comparisons = {f"{R}/figures/comparison/{d}-{b}.png" for d in HQ_SETS for b in BACKBONES} \
        | {f"{R}/figures/comparison/{d}-faithdiff.png" for d in REALDEG}
    report = ({f"{R}/tables/{t}.md" for t in [*PAPER_TABLES, *BEYOND_TABLES]} | figures
              | comparisons | {f"{R}/metrics"})
    estimate = set().union(*(tables[t] for t in ("table2", "table3", "table4",
                                                 "table2_transfer"))) - {_metrics(R, "hdclip")}
    expected = {
        "synthesize": {f"{R}/data/{d}/index.csv" for d in datasets}
        | {f"{R}/synth/div2k_train/manifest.csv", f"{R}/synth_eval/div2k_val/manifest.csv"}
        | {f"{R}/blind/{d}/manifest.csv" for d in HQ_SETS},
        "train": {_model(R, "hdclip")},
        "estimate": estimate,
        "restore": {f"{R}/restore/{d}/{b}/{run}/shard-{i}-of-4.done.json"
                    for d, b, run in runs for i in range(4)},
        "score": {f"{R}/scores/{d}/{b}/{run}.json" for d, b, run in runs},
        "report": report,
    }
    for stage, targets in expected.items():
        assert _s(plan.stage_targets(stage)) == targets, stage
    # the paper's dry run: 3 baselines + 14 ablations + 4 transfer evaluations, 61 runs of 4
    # shards, 12 comparisons
    assert (len(estimate), len(runs), len(comparisons)) == (21, 61, 12)
    assert _s(plan.all_targets()) == ({f"{R}/synth/div2k_train/manifest.csv",
                                       f"{R}/synth_eval/div2k_val/manifest.csv",
                                       _model(R, "hdclip")}
                                      | {f"{R}/blind/{d}/manifest.csv" for d in HQ_SETS}
                                      | report)


# -------------------------------------------------------------- variations of a config
def test_no_transfer_set_plans_no_transfer_tables_or_figure():
    cfg, _ = _plan("config")
    cfg["estimation"]["transfer"]["set"] = None
    plan = zplan.Plan(cfg, present=lambda path: False)
    assert plan.transfer_manifest is None and plan.transfer_results() == []
    assert "table2_transfer" not in plan.planned_tables()
    assert plan.table_inputs("table2_beyond") == plan.table_inputs("table2")
    assert "transfer" not in plan.planned_figures()
    assert not any("transfer" in str(p) for p in plan.stage_targets("estimate"))


def test_no_sweep_plans_no_table5_or_figure11():
    cfg, _ = _plan("config")
    cfg["restoration"]["sweep"]["w_par"] = []
    plan = zplan.Plan(cfg, present=lambda path: False)
    assert "table5" not in plan.planned_tables() and 11 not in plan.planned_figures()
    assert len(plan.stage_targets("score")) == 3


def test_captions_are_an_input_only_when_the_file_is_there():
    cfg, _ = _plan("paper")
    captions = cfg["datasets"]["div2k_train"]["captions"]
    assert zplan.Plan(cfg, present=lambda p: False).present_captions is None
    assert zplan.Plan(cfg, present=lambda p: p == captions).present_captions == captions


def test_run_names_round_trip_and_a_bad_one_is_named():
    for mode in MODES:
        assert zplan.run_name(mode) == mode and zplan.run_settings(mode) == {"mode": mode}
    assert zplan.run_name("cfpg", 0.0, 1) == "cfpg-wo0-wp1"
    assert zplan.run_settings("cfpg-wo0.6-wp1") == {"mode": "cfpg", "w_orth": "0.6",
                                                    "w_par": "1"}
    with pytest.raises(ValueError, match="cfg-wo1"):
        zplan.run_settings("cfg-wo1")


def test_an_unknown_stage_is_named():
    _, plan = _plan("config")
    with pytest.raises(ValueError, match="'estimation'.*synthesize"):
        plan.stage_targets("estimation")
