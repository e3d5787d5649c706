"""The command line: help everywhere, clear errors, the documented outputs."""
from __future__ import annotations

import argparse
import ast
import csv
import json
import subprocess
import sys

import pytest

from zephir import cli

from .conftest import REPO

COMMANDS = [[], ["synth"], ["blind"], ["data"], ["data", "check"], ["data", "embedded"],
            ["data", "index"]]


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: " ".join(c) or "zephir")
def test_help_on_every_command(cmd, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main([*cmd, "--help"])
    assert info.value.code == 0
    assert "usage: zephir" in capsys.readouterr().out


#: ``zephir --help``'s sub-commands, as before the commands moved into zephir/commands/.
SUBCOMMANDS = ["synth", "transfer-set", "blind", "train", "restore", "embed", "score", "weights",
               "evaluate", "import-daclip", "table", "figure", "headline", "dvc", "predict",
               "data"]


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return action.choices


def test_help_lists_the_same_subcommands(capsys):
    assert list(_subparsers(cli.build_parser())) == SUBCOMMANDS
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    listed = capsys.readouterr().out
    assert all(f"    {name}" in listed for name in SUBCOMMANDS)


def _handlers(parser, path=()) -> dict[tuple[str, ...], object]:
    out = {}
    for name, sp in _subparsers(parser).items():
        if any(isinstance(a, argparse._SubParsersAction) for a in sp._actions):
            out.update(_handlers(sp, (*path, name)))
        else:
            out[(*path, name)] = sp.get_default("func")
    return out


def test_each_subcommand_is_handled_beside_its_arguments():
    """Every sub-command's handler is a function of the zephir.commands module that declares
    its parser (the module's ``register`` is the one that adds it)."""
    handlers = _handlers(cli.build_parser())
    assert len(handlers) == 18  # data and weights have actions of their own
    for path, func in handlers.items():
        module = sys.modules[func.__module__]
        assert func.__module__.startswith("zephir.commands."), path
        source = (REPO / "zephir" / "commands" / f"{func.__module__.rsplit('.', 1)[1]}.py")
        register = next(n for n in ast.parse(source.read_text()).body
                        if isinstance(n, ast.FunctionDef) and n.name == "register")
        assert path[0] in {c.value for c in ast.walk(register) if isinstance(c, ast.Constant)}, \
            f"{path}: {module.__name__}.register does not add it"


#: Every sub-command's arguments as zephir/cli.py declared them at commit 9b5b39d, before the
#: commands moved into zephir/commands/ (written out by hand from that parser: option strings,
#: ``!`` required, ``=`` a default other than None/False,
#: a list's items joined by commas; an upper-case word is a positional).
#: ``table``'s and ``figure``'s inputs come from zephir.report.registry and are added below.
FLAGS = {
    "synth": "--config --crop-size --images! --interpolation --level-range --levels-per-type "
             "--mixture-types --mixtures --out! --quiet --randomise/--no-randomise --seed "
             "--split --types --val-fraction --val-mixtures --workers",
    "transfer-set": "--crop-sizes --images! --max-blur --out! --per-type --seed=0 "
                    "--train-crop-size --types",
    "blind": "--crop --images! --out! --quiet --scale=4 --seed=0 --workers=1",
    "train": "--arch --captions --checkpoint --config! --device=auto --evaluate --gap --losses "
             "--manifest --method=hdclip --out! --quick-gelu/--no-quick-gelu --quiet --resume "
             "--sources --steps --topk --val-manifest",
    "restore": "--backbone=tiny --config! --dataset --device=cpu --embeddings --lq! --mode=cfpg "
               "--out! --quiet --shard=0 --shards=1 --w-orth --w-par",
    "embed": "--device=cpu --hdclip! --lq! --out! --quiet",
    "score": "--config! --device=cpu --meta= --metrics! --out! --reference --restored!",
    "weights check": "--config!",
    "evaluate": "--checkpoint! --device=cpu --manifest! --out! --split=val --transfer",
    "import-daclip": "--arch --config! --device=cpu --manifest --out! "
                     "--quick-gelu/--no-quick-gelu --weights!",
    "table": "--config --config-hash --out! NAME",
    "figure": "--out! NUMBER",
    "headline": "--metrics=psnr,lpips --out! --table1 --table2",
    "dvc": "--check --root=.",
    "predict": "--batch=64 --checkpoint! --device=cpu --json IMAGES",
    "data check": "--config! --json --root=.",
    "data embedded": "--config --dataset=embedded --list --names --out",
    "data index": "--images! --out! --url",
}


def _flags(parser: argparse.ArgumentParser) -> set[str]:
    """A parser's arguments in FLAGS' notation."""
    out = set()
    for a in parser._actions:
        if isinstance(a, argparse._HelpAction):
            continue
        name = "/".join(a.option_strings) if a.option_strings else a.dest.upper()
        name += "!" if a.required and a.option_strings else ""
        if a.default is not None and a.default is not False:
            name += "=" + (",".join(a.default) if isinstance(a.default, list) else str(a.default))
        out.add(name)
    return out


def test_every_subcommand_takes_the_flags_it_took():
    """The move into zephir/commands/ changed no sub-command's arguments: the same flags, the
    same required ones, the same defaults (table's and figure's registry-made inputs too)."""
    from zephir.report import registry

    expected = {k: set(v.split()) for k, v in FLAGS.items()}
    expected["table"] |= {f"--{s.flag}" for s in registry.table_sources().values()}
    expected["figure"] |= {f"--{f.flag}" for f in [*registry.figure_inputs().values(),
                                                    *registry.figure_options().values()]}
    parsers = {" ".join(path): sp for path, sp in _all_parsers(cli.build_parser())
               if not any(isinstance(a, argparse._SubParsersAction) for a in sp._actions)}
    assert {k: _flags(sp) for k, sp in parsers.items()} == expected
    table = parsers["table"]  # --config or --config-hash, exactly one
    (group,) = table._mutually_exclusive_groups
    assert group.required and {a.dest for a in group._group_actions} == {"config", "config_hash"}


@pytest.mark.parametrize("flag", ["--config", "--device", "--quiet", "--lq", "--out"])
def test_shared_flags_are_declared_once(flag):
    """--config, --device, --quiet, --lq and --out are declared in zephir.commands.options
    only; the commands take them from there."""
    declaring = sorted(p.name for p in (REPO / "zephir" / "commands").glob("*.py")
                       if f'"{flag}"' in p.read_text()) + \
        (["cli.py"] if f'"{flag}"' in (REPO / "zephir" / "cli.py").read_text() else [])
    assert declaring == ["options.py"]
    takers = [path for path, sp in _all_parsers(cli.build_parser())
              if flag in sp._option_string_actions]
    assert len(takers) >= 2


def _all_parsers(parser, path=()):
    for name, sp in _subparsers(parser).items():
        yield (*path, name), sp
        if any(isinstance(a, argparse._SubParsersAction) for a in sp._actions):
            yield from _all_parsers(sp, (*path, name))


def test_parsing_imports_no_model_nor_plotting():
    """Building the parser (every `zephir` command does, `zephir restore` in a backbone's old
    environment too) imports no torch, open_clip, HD-CLIP model, trainer, pandas or
    matplotlib: each handler imports what it runs."""
    code = ("import sys\nfrom zephir import cli\ncli.build_parser()\n"
            "print('\\n'.join(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    loaded = set(out.stdout.split())
    assert "zephir.commands.restore" in loaded  # the parser was built
    heavy = {"torch", "open_clip", "pandas", "matplotlib", "cv2", "diffusers",
             "zephir.hdclip.model", "zephir.training", "zephir.degrade.ops"}
    assert not heavy & loaded


def test_console_script_is_installed():
    out = subprocess.run([sys.executable, "-c", ("from importlib.metadata import entry_points;"
                          "print([e.value for e in entry_points(group='console_scripts')"
                          " if e.name == 'zephir'])")], capture_output=True, text=True,
                         check=False)
    assert "zephir.cli:main" in out.stdout


def test_synth_command_reports_and_writes_manifest(photo_dir, tmp_path, capsys):
    code = cli.main(["synth", "--images", str(photo_dir), "--out", str(tmp_path / "s"),
                     "--levels-per-type", "1", "--crop-size", "48", "--types", "blur", "jpeg",
                     "--seed", "2", "--quiet"])
    out = capsys.readouterr().out
    assert code == 0
    assert "read 4 image(s), converted 0, refused 0; 8 samples" in out
    with (tmp_path / "s" / "manifest.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["types"] for r in rows} == {"blur", "jpeg"}
    assert "noise_value" not in rows[0]


def test_synth_takes_defaults_from_config(photo_dir, tmp_path, capsys):
    code = cli.main(["synth", "--images", str(photo_dir), "--out", str(tmp_path / "s"),
                     "--config", str(REPO / "config" / "config.yaml"), "--levels-per-type", "1",
                     "--mixtures", "0", "--crop-size", "32", "--quiet"])
    assert code == 0
    assert "16 samples" in capsys.readouterr().out  # 4 images x 4 types x 1 level


def test_bad_level_range_is_a_clear_error(photo_dir, tmp_path, capsys):
    code = cli.main(["synth", "--images", str(photo_dir), "--out", str(tmp_path / "s"),
                     "--level-range", "0", "150", "--quiet"])
    assert code == 2
    assert "synth.level_range" in capsys.readouterr().err


def test_empty_folder_is_a_clear_error(tmp_path, capsys):
    code = cli.main(["blind", "--images", str(tmp_path), "--out", str(tmp_path / "b")])
    assert code == 2
    assert f"{tmp_path}: no image files" in capsys.readouterr().err


def test_data_check_paper_config_reports_missing(tmp_path, capsys):
    code = cli.main(["data", "check", "--config", str(REPO / "config" / "paper.yaml"),
                     "--root", str(tmp_path), "--json"])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 1
    assert {r["dataset"] for r in rows} == {"div2k_train", "div2k_val", "realsr", "drealsr",
                                            "realdeg_film", "realdeg_social", "realdeg_old",
                                            "div2k_train captions"}
    assert all(r["status"] == "missing" for r in rows)
    # the CLIP loss's captions: named, with how to make them in DA-CLIP's layout
    (caps,) = [r for r in rows if r["kind"] == "captions"]
    assert caps["path"] == "data/DIV2K/daclip_train.csv"
    assert "'filepath<TAB>title'" in caps["hint"] and "generate_captions.py" in caps["hint"]


def test_data_check_embedded_config_is_found(capsys):
    assert cli.main(["data", "check", "--config", str(REPO / "config" / "config.yaml")]) == 0
    assert "embedded" in capsys.readouterr().out


def test_weights_check_lists_every_weight_of_the_paper_config(tmp_path, capsys, monkeypatch):
    """`zephir weights check`: found or missing, where, how to get it; exit 1 while one is
    missing. A stand-in file at the configured path is found."""
    import yaml

    monkeypatch.chdir(tmp_path)
    cfg = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    (tmp_path / "paper.yaml").write_text(yaml.safe_dump(cfg))
    assert cli.main(["weights", "check", "--config", "paper.yaml"]) == 1
    out = capsys.readouterr().out
    assert "missing  clip" in out and "data/weights/clip/ViT-B-32.pt" in out
    stand_in = tmp_path / "data/weights/clip/ViT-B-32.pt"
    stand_in.parent.mkdir(parents=True)
    stand_in.write_bytes(b"stand-in")
    cli.main(["weights", "check", "--config", "paper.yaml"])
    out = capsys.readouterr().out
    assert "found    clip" in out and "missing  daclip" in out


def test_train_offers_every_method_but_the_imported_one():
    """`zephir train --method` lists every estimator of zephir.estimator_registry except DA-CLIP's
    released weights, which `zephir import-daclip` reads instead of training."""
    from zephir import estimator_registry

    train = cli.build_parser()._subparsers._group_actions[0].choices["train"]
    choices = next(a.choices for a in train._actions if a.dest == "method")
    assert set(choices) == set(estimator_registry.METHODS) - {"daclip_released"}


def test_synth_split_val_puts_every_image_in_val_with_its_mixtures(photo_dir, tmp_path, capsys):
    """An evaluation set: `--split val`, its mixtures from --val-mixtures."""
    code = cli.main(["synth", "--images", str(photo_dir), "--out", str(tmp_path / "s"),
                     "--levels-per-type", "1", "--crop-size", "32", "--mixtures", "0",
                     "--val-mixtures", "2", "--split", "val", "--quiet"])
    assert code == 0
    assert "24 samples (0 train, 24 val)" in capsys.readouterr().out  # 4 x (4 + 2)
    with (tmp_path / "s" / "manifest.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert sum("+" in r["types"] for r in rows) == 8


@pytest.fixture()
def trained(monkeypatch):
    """`zephir train` with the trainer replaced by a recorder of what it was given."""
    import zephir.training

    calls = []

    def record(manifest, out, model_cfg, cfg, **kw):
        calls.append({"manifest": manifest, "model": model_cfg, "train": cfg, **kw})
        return {}

    monkeypatch.setattr(zephir.training, "train", record)
    return calls


def test_train_takes_the_evaluation_set_captions_and_clip_overrides(trained, tmp_path):
    paper = str(REPO / "config" / "paper.yaml")
    assert cli.main(["train", "--config", paper, "--out", str(tmp_path), "--quiet"]) == 0
    call = trained.pop()
    # the paper's evaluation set, by default; HD-CLIP on hdclip.model's CLIP
    assert str(call["val_manifest"]) == "results/paper/synth_eval/div2k_val/manifest.csv"
    assert str(call["manifest"]) == "results/paper/synth/div2k_train/manifest.csv"
    assert (call["model"].arch, call["model"].checkpoint) == ("ViT-B-32",
                                                             "data/weights/clip/ViT-B-32.pt")
    assert "captions" not in call and call["train"].loader_workers == 8
    # the DA-CLIP-style baseline on estimation.daclip_model's CLIP, flags over it
    cli.main(["train", "--config", paper, "--out", str(tmp_path), "--method", "daclip_style"])
    assert (trained[-1]["model"].arch, trained[-1]["model"].quick_gelu) == ("ViT-L-14", False)
    cli.main(["train", "--config", paper, "--out", str(tmp_path), "--method", "daclip_style",
              "--arch", "zephir-tiny-vit", "--checkpoint", "none", "--no-quick-gelu",
              "--captions", "caps.csv", "--val-manifest", "v.csv", "--manifest", "m.csv"])
    call = trained.pop()
    assert (call["model"].arch, call["model"].checkpoint, call["model"].quick_gelu) == (
        "zephir-tiny-vit", None, False)
    assert (str(call["captions"]), str(call["val_manifest"]), str(call["manifest"])) == (
        "caps.csv", "v.csv", "m.csv")
    # the embedded default: no evaluation set, nothing passed (the trainer's own default)
    cli.main(["train", "--config", str(REPO / "config" / "config.yaml"), "--out", str(tmp_path)])
    assert "val_manifest" not in trained.pop()


def test_import_daclip_reads_the_clip_of_estimation_daclip_model(monkeypatch, tmp_path):
    from zephir import checkpoints

    seen = []
    monkeypatch.setattr(checkpoints, "import_daclip",
                        lambda weights, cfg, out: seen.append(cfg) or tmp_path / "ck.pt")
    args = ["import-daclip", "--weights", "w.pt", "--config",
            str(REPO / "config" / "paper.yaml"), "--out", str(tmp_path)]
    assert cli.main(args) == 0
    assert (seen[-1].arch, seen[-1].quick_gelu, seen[-1].checkpoint) == ("ViT-L-14", False, "w.pt")
    cli.main([*args, "--arch", "zephir-tiny-vit", "--no-quick-gelu"])
    assert (seen[-1].arch, seen[-1].quick_gelu) == ("zephir-tiny-vit", False)


def test_weights_check_lists_the_clip_files_the_estimators_load(tmp_path, capsys, monkeypatch):
    """The CLIP DA-CLIP is built on (estimation.daclip_model) is a weight of its own; an
    open_clip tag, or a path the weights section lists already, adds no row."""
    import yaml

    monkeypatch.chdir(tmp_path)
    cfg = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    (tmp_path / "paper.yaml").write_text(yaml.safe_dump(cfg))
    cli.main(["weights", "check", "--config", "paper.yaml"])
    out = capsys.readouterr().out
    clip = "data/weights/clip/ViT-L-14-laion2b_s32b_b82k.bin"
    assert "missing  daclip_clip" in out and clip in out
    assert f"pretrained=<tag>) where there is internet, then copy the file from open_clip's cache to {clip}" in out
    assert "hdclip_clip" not in out  # the same file as weights.clip
    cfg["estimation"]["daclip_model"]["checkpoint"] = "openai"
    (tmp_path / "paper.yaml").write_text(yaml.safe_dump(cfg))
    cli.main(["weights", "check", "--config", "paper.yaml"])
    assert "daclip_clip" not in capsys.readouterr().out
