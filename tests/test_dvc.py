"""DVC over the Snakemake workflow. Quick: dvc.yaml (the embedded default) and
workflow/dvc/paper/dvc.yaml (the paper) are what `zephir dvc` writes from zephir.stages, and
zephir.stages agrees with the workflow's DAG, its rules and the package's imports. Slow: a
fresh clone on a tiny config, where `dvc repro` after `snakemake -c2` recomputes nothing, a
second `dvc repro` is a quick no-op, metrics / params / plots work, a config or code change
makes `dvc status` and Snakemake name the same stages, and `dvc checkout` plus
`snakemake --touch --forceall` leaves Snakemake nothing to do."""
from __future__ import annotations

import ast
import csv
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

import zephir.config
from zephir import cli, stages
from zephir.report import registry

from .conftest import REPO
from .test_workflow import BIN, run_snakemake, workdir  # noqa: F401 - the fixture

DVC_FILES = {"dvc.yaml": ("config/config.yaml", "snakemake -c2", None),
             "workflow/dvc/paper/dvc.yaml": ("config/paper.yaml", "snakemake --profile slurm",
                                             "../../..")}
#: Rules of no stage: `all`, the copy of the report into results/<name>/paper/, the stage targets.
NO_STAGE = {"all", "figures"} | {s.target for s in stages.STAGES}


def _dvc_file(path: str) -> dict:
    return yaml.safe_load((REPO / path).read_text())


def _results(config_file: str) -> tuple[dict, str]:
    cfg = zephir.config.load(REPO / config_file)
    return cfg, str(zephir.config.results_dir(cfg))


def _under(path: str, folders) -> bool:
    return any(path == f or path.startswith(f + "/") for f in folders)


def _outs(stage: dict) -> dict:
    return {k: v for o in stage["outs"] for k, v in o.items()}


def test_committed_dvc_files_are_what_zephir_dvc_writes(tmp_path, capsys):
    """`zephir dvc --check` passes on the repository; on a copy where a file was edited by
    hand it names that file and exits 1, and `zephir dvc` writes back the committed text."""
    assert cli.main(["dvc", "--check", "--root", str(REPO)]) == 0
    shutil.copytree(REPO / "config", tmp_path / "config")
    for path in DVC_FILES:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / path, tmp_path / path)
    edited = tmp_path / "workflow/dvc/paper/dvc.yaml"
    edited.write_text(edited.read_text().replace("stage_score", "stage_report"))
    capsys.readouterr()
    assert cli.main(["dvc", "--check", "--root", str(tmp_path)]) == 1
    assert capsys.readouterr().out.split(":")[0] == "workflow/dvc/paper/dvc.yaml"
    assert cli.main(["dvc", "--root", str(tmp_path)]) == 0
    assert edited.read_text() == (REPO / "workflow/dvc/paper/dvc.yaml").read_text()


@pytest.mark.parametrize("path", list(DVC_FILES))
def test_dvc_files_run_each_stage_target_on_their_config(path):
    """What the writer makes of zephir.stages: each stage in order runs its Snakemake target
    the file's way, on the file's config, depends on files that exist (data/ is DVC's), and
    persists outs under that config's results folder."""
    config_file, invocation, wdir = DVC_FILES[path]
    _, res = _results(config_file)
    declared = _dvc_file(path)["stages"]
    assert list(declared) == list(stages.NAMES)
    for s in stages.STAGES:
        d = declared[s.name]
        assert d.get("wdir") == wdir and d["cmd"] == f"{invocation} {s.target}", s.name
        assert list(d["params"][0]) == [config_file], s.name
        assert all(_under(o, [res]) and v == {"persist": True} for o, v in _outs(d).items())
        for p in d["deps"]:
            assert p.startswith(("results/", "data/")) or (REPO / p).exists(), (s.name, p)


def test_paper_stages_depend_on_the_data_they_read():
    """The paper's datasets are deps of synthesize; its CLIP weights of train and estimate;
    the backbones' weights and repositories of restore; the IQA weights of score. DVC links
    the stages to data.dvc."""
    cfg, _ = _results("config/paper.yaml")
    paper = _dvc_file("workflow/dvc/paper/dvc.yaml")["stages"]
    data = {n: [p for p in s["deps"] if _under(p, ("data",))] for n, s in paper.items()}
    folders = [ds["path"] for ds in cfg["datasets"].values() if ds["kind"] == "folder"]
    assert folders and all(_under(f, data["synthesize"]) for f in folders)
    clip = [cfg["hdclip"]["model"]["checkpoint"], cfg["estimation"]["daclip_model"]["checkpoint"]]
    assert all(_under(c, data["train"]) and _under(c, data["estimate"]) for c in clip)
    assert _under(cfg["estimation"]["daclip_weights"], data["estimate"])
    iqa = ("torch_home", "lpips", "musiq", "niqe", "brisque")
    assert all(_under(w, data["restore"]) for k, w in cfg["weights"].items() if k not in iqa)
    assert all(_under(cfg["weights"][k], data["score"]) for k in iqa)
    assert data["report"] == []
    dot = subprocess.run([str(BIN / "dvc"), "dag", "--dot", "workflow/dvc/paper/dvc.yaml"],
                         cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert '"data.dvc" -> "workflow/dvc/paper/dvc.yaml:synthesize"' in dot


def _summary(folder: Path, targets: list[str], config_file: str) -> dict[str, tuple[str, list]]:
    """Snakemake's detailed summary of the DAG of ``targets``: output -> (rule, inputs)."""
    out = run_snakemake(["-D", *targets, "--configfile", config_file], cwd=folder).stdout
    rows = csv.DictReader(io.StringIO(out[out.index("output_file"):]), delimiter="\t")
    return {r["output_file"]: (r["rule"], [i for i in r["input-file(s)"].split(",") if i])
            for r in rows}


@pytest.mark.parametrize("config_file", ["config/config.yaml", "config/paper.yaml"])
def test_stage_targets_split_the_dag_of_all_into_the_stages(workdir, config_file):  # noqa: F811
    """Every job of `all` belongs to one stage and writes under that stage's outs; what it
    reads from other stages' jobs is from earlier stages and declared in its reads; each
    stage_<name> target builds every job of its stage that `all` needs, and nothing of later
    stages; the six targets build exactly `all`."""
    cfg, res = _results(config_file)
    stage_of = {r: s.name for s in stages.STAGES for r in s.rules}
    order = {n: i for i, n in enumerate(stages.NAMES)}
    with ThreadPoolExecutor(2) as pool:
        full = pool.submit(_summary, workdir, ["all"], config_file)
        per = {s.name: pool.submit(_summary, workdir, [s.target], config_file)
               for s in stages.STAGES}
        full, per = full.result(), {n: f.result() for n, f in per.items()}
    assert full
    for out, (rule, inputs) in full.items():
        name = stage_of[rule]
        assert _under(out, [f"{res}/{o}" for o in stages.outs(name, cfg)]), (out, rule)
        for i in inputs:
            if i in full and stage_of[full[i][0]] != name:
                assert order[stage_of[full[i][0]]] < order[name], (rule, i)
                assert _under(i, [f"{res}/{r}" for r in stages.reads(name, cfg)]), (rule, i)
    for s in stages.STAGES:
        mine = {out for out, (rule, _) in full.items() if stage_of[rule] == s.name}
        assert mine and mine <= set(per[s.name]), s.name
        assert all(order[stage_of[rule]] <= order[s.name] for rule, _ in per[s.name].values())
    assert set().union(*per.values()) == set(full)


def test_every_rule_carries_the_code_fingerprint_of_its_stage():
    """Each rule of workflow/rules/ has `code=CODE["<its stage>"]` in its params, and the
    stages name every rule once."""
    carried = {}
    for f in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        for block in re.split(r"^(?=rule \w+:|for fig in )", f.read_text(),
                              flags=re.MULTILINE)[1:]:
            # the loop of report.smk makes one rule per figure of the registry
            names = ([fig.rule for fig in registry.FIGURES.values()] if block.startswith("for ")
                     else [re.match(r"rule (\w+):", block).group(1)])
            for rule in names:
                carried[rule] = re.findall(r'^ +code=CODE\["(\w+)"\],$', block,
                                           flags=re.MULTILINE)
    declared = {r: s.name for s in stages.STAGES for r in s.rules}
    assert sum(len(s.rules) for s in stages.STAGES) == len(declared)
    assert carried == {r: [declared[r]] for r in carried}
    assert set(declared) == set(carried)
    snakefile = (REPO / "Snakefile").read_text()  # all, figures and the stage_<name> targets
    assert set(re.findall(r"^rule (\w+):", snakefile, flags=re.MULTILINE)) == NO_STAGE - {
        s.target for s in stages.STAGES}
    assert 'f"stage_{stage}"' in snakefile and "for stage in zephir.stages.NAMES:" in snakefile


# The `zephir` commands (handlers of zephir/commands/<module>.py) that each stage's rules run.
COMMANDS = {"synthesize": ["data:embedded", "data:index", "degrade:synth", "degrade:blind"],
            "train": ["train:train"], "estimate": ["train:train", "evaluate:import_daclip"],
            "restore": ["restore:restore"], "score": ["score:score"],
            "report": ["report:table", "report:figure"]}


def _modules() -> dict[str, Path]:
    found = {}
    for f in (REPO / "zephir").rglob("*.py"):
        if "__pycache__" not in f.parts:
            parts = f.relative_to(REPO).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return found


def _imports(tree: ast.AST, modules) -> set[str]:
    """The zephir modules a piece of code imports (`from zephir import io` names zephir.io)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("zephir"):
            out |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
    return {m for m in out if m in modules}


def test_stage_code_covers_what_its_commands_import():
    """zephir.stages' code of a stage holds every module its commands import, directly or
    not (the module-level imports of zephir/cli.py and of every zephir/commands module; the
    stage's handlers and the functions of their module they call; for the report, the builders
    the registry names)."""
    from zephir.commands import COMMANDS as MODULES
    from zephir.report import registry

    modules = _modules()
    trees = {m: ast.parse((REPO / "zephir" / "commands" / f"{m}.py").read_text())
             for m in MODULES}
    parsing = [ast.parse((REPO / "zephir" / "cli.py").read_text()), *trees.values()]
    top = set().union(*(_imports(ast.Module([n for n in t.body if isinstance(
        n, (ast.Import, ast.ImportFrom))], []), modules) for t in parsing))
    builders = {e.build.split(":")[0] for e in registry.TABLES.values()}
    builders |= {e.draw.split(":")[0] for e in registry.FIGURES.values()}
    for name, commands in COMMANDS.items():
        todo, seen, entry = list(commands), set(), set(top) | {"zephir"}
        while todo:
            ref = todo.pop()
            if ref not in seen:
                seen.add(ref)
                module, func = ref.split(":")
                funcs = {n.name: n for n in trees[module].body if isinstance(n, ast.FunctionDef)}
                entry |= _imports(funcs[func], modules)
                todo += [f"{module}:{c.func.id}" for c in ast.walk(funcs[func])
                         if isinstance(c, ast.Call) and isinstance(c.func, ast.Name)
                         and c.func.id in funcs]
        if name == "report":
            entry |= builders
        closure, todo = set(), list(entry)
        while todo:
            m = todo.pop()
            if m not in closure:
                closure.add(m)
                todo += [".".join(m.split(".")[:i]) for i in range(1, m.count(".") + 1)]
                todo += _imports(ast.parse(modules[m].read_text()), modules)
        code = stages.stage(name).code
        missing = sorted(str(modules[m].relative_to(REPO)) for m in closure
                         if not _under(str(modules[m].relative_to(REPO)), code))
        assert not missing, f"stage {name} runs {missing}, which zephir.stages does not list"
        assert "zephir/cli.py" in code and "zephir/commands" in code


def test_fingerprint_follows_the_code_of_its_stage(tmp_path):
    """A stage's fingerprint changes with its code only; compiled files do not count."""
    shutil.copytree(REPO / "zephir", tmp_path / "zephir",
                    ignore=shutil.ignore_patterns("__pycache__"))
    before = {n: stages.fingerprint(n, tmp_path) for n in stages.NAMES}
    assert before == {n: stages.fingerprint(n) for n in stages.NAMES}  # the package's own
    assert len(set(before.values())) == len(before)  # estimate's code: train's + the transfer set
    (tmp_path / "zephir/metrics/__pycache__").mkdir()
    (tmp_path / "zephir/metrics/__pycache__/iqa.cpython-311.pyc").write_bytes(b"compiled")

    def changed():
        return {n for n in stages.NAMES if stages.fingerprint(n, tmp_path) != before[n]}

    assert changed() == set()
    with (tmp_path / "zephir/metrics/iqa.py").open("a") as fh:
        fh.write("# a change\n")
    assert changed() == {"score"}
    with (tmp_path / "zephir/hdclip/configs/zephir-tiny-rn.json").open("a") as fh:
        fh.write("\n")
    assert changed() == {"score", "train", "estimate", "restore", "report"}  # table 6, figure 1
    now = {n: stages.fingerprint(n, tmp_path) for n in stages.NAMES}
    with (tmp_path / "zephir/degrade/transfer.py").open("a") as fh:
        fh.write("# a change\n")
    assert {n for n in stages.NAMES if stages.fingerprint(n, tmp_path) != now[n]} == {"estimate"}


# -------------------------------------------------------------------- slow: a fresh clone
TINY_PHOTOS = ["coins", "camera", "chelsea", "astronaut"]


def _env(**extra) -> dict:
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "DVC_NO_ANALYTICS": "1", **extra}


def _run(args: list[str], cwd: Path, **extra) -> str:
    proc = subprocess.run(args, cwd=cwd, env=_env(**extra), capture_output=True, text=True,
                          timeout=900, check=False)
    if proc.returncode:
        raise AssertionError(f"{' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout + proc.stderr


def _status(clone: Path) -> dict:
    """`dvc status` of dvc.yaml's stages: stage -> what changed ({} when up to date)."""
    return json.loads(_run(["dvc", "status", "dvc.yaml", "--json"], clone))


def _files(clone: Path) -> dict[str, tuple[int, str]]:
    """Every file of dvc.yaml's outs: (mtime in ns, md5)."""
    out = {}
    for stage in yaml.safe_load((clone / "dvc.yaml").read_text())["stages"].values():
        for folder in _outs(stage):
            for f in sorted((clone / folder).rglob("*")):
                if f.is_file():
                    out[str(f.relative_to(clone))] = (f.stat().st_mtime_ns,
                                                      hashlib.md5(f.read_bytes()).hexdigest())
    return out


def _tiny_config(path: Path) -> None:
    """The embedded default at its smallest: 4 photos (1 held out), 2 levels per type, 3
    training steps, one ablation, one restoration mode and one sweep point of 2 held-out
    photos, 2 sampling steps, the metrics that need no weights."""
    cfg = yaml.safe_load(path.read_text())
    cfg["datasets"]["embedded"]["images"] = TINY_PHOTOS
    cfg["datasets"]["held_out"]["images"] = ["china", "kodim04"]
    cfg["synth"].update(levels_per_type=2, mixtures_per_image=0, val_fraction=0.25)
    cfg["hdclip"]["train"].update(steps=3, batch_size=8, warmup=1, eval_every=3,
                                  checkpoint_every=3)
    cfg["estimation"].update(ablation_steps=3, baseline_steps=3, losses=["D"], topk=[2], gap=[5])
    cfg["blind"]["crop"] = 64
    cfg["restoration"].update(modes=["cfpg"], steps=2)
    cfg["restoration"]["sweep"].update(w_orth=[0.0], w_par=[1.0])
    cfg["metrics"].update(with_reference=["psnr", "ssim"], without_reference=["niqe"])
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    """A fresh clone (the repository's files that git tracks or would track, committed in a
    new repository) on a tiny config, after the README's first command, `snakemake -c2`, and
    then `dvc repro`. Returns the clone, the files of the outs before `dvc repro` and its output.
    """
    folder = tmp_path_factory.mktemp("clone")
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO, capture_output=True, check=True).stdout.decode()
    for name in filter(None, listed.split("\0")):
        src, dst = REPO / name, folder / name
        if src.is_symlink() or src.is_file():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst, follow_symlinks=False)
    _tiny_config(folder / "config" / "config.yaml")
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.org"]
    _run(["git", "init", "-q"], folder)
    _run(["git", "add", "-A"], folder)
    _run([*git, "commit", "-qm", "fresh clone"], folder)
    _run(["snakemake", "-c2"], folder)
    before = _files(folder)
    repro = _run(["dvc", "repro"], folder)
    return folder, before, repro


@pytest.mark.slow
def test_dvc_repro_after_snakemake_recomputes_nothing(clone):
    folder, before, repro = clone
    assert repro.count("Running stage") == len(stages.NAMES)
    for s in stages.STAGES:
        assert f"> snakemake -c2 {s.target}" in repro
    assert repro.count("Nothing to be done") == len(stages.NAMES)
    assert "Finished job" not in repro
    after = _files(folder)
    assert after == before  # not one file rewritten: same mtimes, same contents
    assert "results/embedded/hdclip/model.safetensors" in after
    assert _status(folder) == {}
    lock = yaml.safe_load((folder / "dvc.lock").read_text())["stages"]
    assert set(lock) == set(stages.NAMES)


@pytest.mark.slow
def test_second_dvc_repro_is_a_quick_no_op(clone):
    folder, _, _ = clone
    start = time.monotonic()
    out = _run(["dvc", "repro"], folder)
    took = time.monotonic() - start
    assert "Running stage" not in out and "Data and pipelines are up to date" in out
    assert out.count("didn't change, skipping") == len(stages.NAMES)
    assert took < 30, f"a second dvc repro took {took:.0f} s"
    assert "Nothing to be done" in _run(["snakemake", "-n"], folder)


@pytest.mark.slow
def test_metrics_params_and_plots(clone):
    folder, _, _ = clone
    shown = json.loads(_run(["dvc", "metrics", "show", "--json"], folder))
    data = shown[""]["data"]
    # the headline numbers (zephir.report.headline): HD-CLIP's row of table 2 and table 1's
    # means, at most 40 values, every line of the printed table within 100 columns
    metrics = "results/embedded/metrics"
    table2 = json.loads((folder / "results/embedded/tables/table2.json").read_text())
    hd = data[f"{metrics}/hdclip.json"]["data"]
    assert hd["Acc"] == table2["HD-CLIP"]["Type Acc (%)"] and hd["SROCC"] == \
        table2["HD-CLIP"]["SROCC"]
    modes = yaml.safe_load((folder / "config/config.yaml").read_text())["restoration"]["modes"]
    assert {f"{metrics}/tiny-{m}.json" for m in modes} <= set(data)
    assert sum(len(v["data"]) for v in data.values()) <= 40
    printed = _run(["dvc", "metrics", "show"], folder)
    assert "failed" not in printed and max(map(len, printed.splitlines())) <= 100
    # every table's cells, by row (its label columns) and column, as the CSV holds them, by path
    tables = [f"results/embedded/tables/{n}.json" for n in
              ("table1", "table2", "table2_beyond", "table3", "table4", "table5", "table6")]
    data = json.loads(_run(["dvc", "metrics", "show", "--json", *tables], folder))[""]["data"]
    with (folder / "results/embedded/tables/table2.csv").open(newline="") as fh:
        t2 = list(csv.DictReader(fh))
    cells = data["results/embedded/tables/table2.json"]["data"]
    assert list(cells) == [r["Method"] for r in t2]
    assert all(cells[r["Method"]]["SROCC"] == float(r["SROCC"]) for r in t2)
    for name in tables:
        assert data[name]["data"]
    # a file no dvc.yaml declares (as the paper's, README): passed by its path
    ablation = "results/embedded/ablation/D-k2-g5/metrics.json"
    shown = json.loads(_run(["dvc", "metrics", "show", "--json", ablation], folder))
    assert shown[""]["data"][ablation]["data"]["method"] == "hdclip"

    assert _run(["dvc", "params", "diff"], folder).strip() == ""
    text = _set(folder, "hdclip.train.steps", 5)
    try:
        diff = json.loads(_run(["dvc", "params", "diff", "--json"], folder))
        assert diff == {"config/config.yaml": {"hdclip.train.steps": {"old": 3, "new": 5,
                                                                      "diff": 2}}}
    finally:
        (folder / "config" / "config.yaml").write_text(text)

    out = _run(["dvc", "plots", "show"], folder)
    html = (folder / "dvc_plots" / "index.html").read_text()
    assert "dvc_plots/index.html" in out and "failed" not in out.lower()
    for title in ("HD-CLIP training loss", "HD-CLIP validation",
                  *(f"Fig. 7, {t}: predicted against true level" for t in
                    ("blur", "noise", "jpeg", "downsample"))):
        assert title in html
    assert '"loss": "' in html and '"blur_pred": "' in html  # the curves' data
    assert list((folder / "dvc_plots" / "static").glob("*fig7.png"))


def _set(clone: Path, key: str, value) -> str:
    """Set the dotted ``key`` of the clone's config to ``value``; returns the config's text."""
    config = clone / "config" / "config.yaml"
    text = config.read_text()
    cfg = yaml.safe_load(text)
    *path, last = key.split(".")
    node = cfg
    for part in path:
        node = node[part]
    assert node[last] != value
    node[last] = value
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return text


def _stages_with_key(key: str) -> set[str]:
    """The stages of dvc.yaml whose params include ``key`` (a key, a section above it, or the
    whole config file), read from dvc.yaml itself."""
    found = set()
    for name, stage in _dvc_file("dvc.yaml")["stages"].items():
        for entry in stage.get("params", []):
            keys = entry.get("config/config.yaml", []) if isinstance(entry, dict) else []
            if keys is None or any(key == k or key.startswith(k + ".") for k in keys):
                found.add(name)
    return found


@pytest.mark.slow
@pytest.mark.parametrize("key, value, named", [
    ("hdclip.train.steps", 4, {"train", "estimate", "report"}),
    ("synth.levels_per_type", 3, {"synthesize", "train", "estimate", "report"}),
    # not synthesize, which reads restoration.sets only
    ("restoration.w_orth", 0.5, {"restore", "score", "report"}),
])
def test_status_names_the_stages_a_config_value_feeds(clone, key, value, named):
    """`dvc status` names exactly the stages whose params in dvc.yaml hold the key (read from
    dvc.yaml here), which are those named by hand."""
    folder, _, _ = clone
    text = _set(folder, key, value)
    try:
        status = _status(folder)
        assert set(status) == _stages_with_key(key) == named
        above = {".".join(key.split(".")[:i]) for i in range(1, key.count(".") + 2)}
        for name in status:  # each names the key, or a section above it, as what changed
            assert set(status[name][0]["changed deps"]["config/config.yaml"]) & above, name
    finally:
        (folder / "config" / "config.yaml").write_text(text)
    assert _status(folder) == {}


@pytest.mark.slow
def test_code_change_reruns_the_same_stage_in_dvc_and_snakemake(clone):
    """A change of zephir/metrics/iqa.py: `dvc status` names the score stage (the one whose
    deps hold that file), and Snakemake, running the clone's package, plans the score jobs
    for their changed code fingerprint, and no job of another rule for that reason."""
    folder, _, _ = clone
    module = folder / "zephir" / "metrics" / "iqa.py"
    text = module.read_text()
    declared = _dvc_file("dvc.yaml")["stages"]
    expected = {n for n, s in declared.items() if "zephir/metrics/iqa.py" in s["deps"]}
    try:
        module.write_text(text + "# a change\n")
        assert set(_status(folder)) == expected == {"score"}
        plan = _run(["snakemake", "-n"], folder, PYTHONPATH=str(folder))
        jobs = re.findall(r"^(?:local)?rule (\w+):\n(?:    .*\n)*?    reason: (.*)$", plan,
                          flags=re.MULTILINE)
        code = {rule for rule, reason in jobs if reason.startswith("Params have changed")}
        assert code == set(stages.stage("score").rules)
        # and what reads the scores: table 1, figures 6 and 11, the headline metrics
        assert {rule for rule, _ in jobs} <= {"score", "table", "figure6", "figure11", "headline",
                                              "all"}
    finally:
        module.write_text(text)
    assert _status(folder) == {}


@pytest.mark.slow
def test_repro_after_a_config_change_reruns_its_stages_only(clone):
    """metrics.with_reference loses SSIM: `dvc repro` reruns the score stage (Snakemake its
    score jobs) and the report (every table states the config's hash), and not the others:
    the restored images keep their timestamps. Then DVC and Snakemake are both up to date."""
    folder, _, _ = clone
    before = _files(folder)
    text = _set(folder, "metrics.with_reference", ["psnr"])
    out = _run(["dvc", "repro"], folder)
    ran = set(re.findall(r"^Running stage '(\w+)'", out, flags=re.MULTILINE))
    assert ran == _stages_with_key("metrics.with_reference") == {"score", "report"}
    jobs = set(re.findall(r"^(?:local)?rule (\w+):", out, flags=re.MULTILINE))
    # the scores, what reads them (table 1, the headline metrics), and the rules that state
    # the whole config (table, table6_config) with table 6, which reads table6_config's file
    assert jobs - {s.target for s in stages.STAGES} == {"score", "table", "headline",
                                                         "table6_config", "table6"}
    after = _files(folder)
    kept = [p for p in before if not _under(p, ["results/embedded/scores",
                                                "results/embedded/tables",
                                                "results/embedded/metrics"])]
    assert kept and all(after[p] == before[p] for p in kept)  # restored images, models, ...
    cfpg = "results/embedded/scores/held_out/tiny/cfpg.json"
    assert after[cfpg] != before[cfpg]
    scores = json.loads((folder / "results/embedded/scores/held_out/tiny/cfpg.json").read_text())
    assert list(scores["means"]) == ["psnr"]
    assert "SSIM" not in (folder / "results/embedded/tables/table1.csv").read_text()
    assert _status(folder) == {}
    assert "Nothing to be done" in _run(["snakemake", "-n"], folder)
    assert text != (folder / "config" / "config.yaml").read_text()
    _run(["git", "-c", "user.name=test", "-c", "user.email=test@example.org", "commit", "-qam",
          "metrics: PSNR only"], folder)


@pytest.mark.slow
def test_checkout_then_touch_leaves_snakemake_nothing_to_do(clone):
    """As on another machine after `dvc pull`: the outs removed, no Snakemake metadata, the
    outs restored by `dvc checkout` with new mtimes (here in the worst order: the first
    stage's newest). Snakemake would recompute; after `snakemake -c2 --touch --forceall` it
    plans nothing, the files are byte-identical, and DVC sees no change."""
    folder, _, _ = clone
    before = {k: md5 for k, (_, md5) in _files(folder).items()}
    for stage in yaml.safe_load((folder / "dvc.yaml").read_text())["stages"].values():
        for out in _outs(stage):
            shutil.rmtree(folder / out)
    shutil.rmtree(folder / ".snakemake" / "metadata")
    _run(["dvc", "checkout", "dvc.yaml"], folder)
    # a plain `dvc checkout` also wants data.dvc's data/, which a clone does not have (README)
    plain = subprocess.run([str(BIN / "dvc"), "checkout"], cwd=folder, env=_env(),
                           capture_output=True, text=True, check=False)
    assert plain.returncode != 0 and "data" in plain.stderr
    assert {k: md5 for k, (_, md5) in _files(folder).items()} == before
    old = time.time() - 3600
    for f in (folder / "results" / "embedded").rglob("*"):
        if not _under(str(f.relative_to(folder)), ["results/embedded/data"]):
            os.utime(f, (old, old))
    assert "Nothing to be done" not in _run(["snakemake", "-n"], folder)

    _run(["snakemake", "-c2", "--touch", "--forceall"], folder)
    plan = _run(["snakemake", "-n"], folder)
    assert "Nothing to be done" in plan and "missing provenance" not in plan
    assert {k: md5 for k, (_, md5) in _files(folder).items()} == before
    assert _status(folder) == {}
    assert "Running stage" not in _run(["dvc", "repro"], folder)
