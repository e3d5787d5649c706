"""Config loading: both shipped configs are valid; bad keys are named in the error."""
from __future__ import annotations

import copy

import pytest
import yaml

from zephir import config as zconfig

from .conftest import REPO


@pytest.fixture()
def raw():
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


@pytest.mark.parametrize("name", ["config.yaml", "paper.yaml"])
def test_shipped_configs_are_valid(name):
    cfg = zconfig.load(REPO / "config" / name)
    assert cfg["train_set"] in cfg["datasets"]
    assert set(cfg["synth"]["types"]) == {"blur", "noise", "jpeg", "downsample"}


def test_defaults_are_filled():
    cfg = zconfig.check({"name": "x", "datasets": {"e": {"kind": "embedded",
                                                          "images": ["astronaut"]}},
                         "train_set": "e"})
    assert cfg["synth"]["levels_per_type"] == 8
    assert cfg["synth"]["level_range"] == [0, 100]
    assert cfg["blind"]["scale"] == 4
    assert cfg["blind_sets"] == []
    assert cfg["estimation"]["transfer"] == {"set": None, "per_type": 20, "seed": 0,
                                             "max_blur": None}


def test_every_schema_key_is_described():
    def walk(node, path):
        for key, sub in node.get("properties", {}).items():
            assert sub.get("description"), f"{path}.{key} has no description"
            walk(sub, f"{path}.{key}")
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            walk(extra, f"{path}.*")

    walk(zconfig.schema(), "config")


def test_workflow_schema_is_the_package_schema():
    assert (REPO / "workflow/schemas/config.schema.yaml").read_text() == \
        (REPO / "zephir/schemas/config.schema.yaml").read_text()


@pytest.mark.parametrize("edit,match", [
    (lambda c: c["synth"].update(types=["blur", "haze"]), r"synth\.types\.1: 'haze' is not one of"),
    (lambda c: c["synth"].update(level_range=[0, 120]), r"synth\.level_range\.1: 120 is greater"),
    (lambda c: c["synth"].update(level_range=[60, 10]),
     r"synth\.level_range: \[60, 10\] must satisfy 0 <= low < high"),
    (lambda c: c["synth"].update(colour=True), r"synth: Additional properties .*'colour'"),
    (lambda c: c.update(train_set="div2k"), r"train_set: 'div2k' is not a key of datasets"),
    (lambda c: c["datasets"]["embedded"].update(images=["astronaut", "lena"]),
     r"datasets\.embedded\.images: unknown bundled photo\(s\) lena"),
    (lambda c: c["blind"].update(scale=3), r"blind\.scale: 3 is not one of"),
    (lambda c: c["estimation"].update(gap=[1, 3]),
     r"estimation\.gap\[1\]: 3 does not divide 100"),
    (lambda c: c["estimation"].update(topk=[2, "most"]), r"estimation\.topk\.1: 'most' does not"),
    (lambda c: c["hdclip"]["model"].update(gap=7), r"hdclip\.model\.gap: 7 does not divide 100"),
    (lambda c: c["datasets"]["embedded"].update(hq=False),
     r"train_set: datasets\.embedded\.hq is false \(real low-quality images\)"),
    (lambda c: c.update(eval_set="div2k_val"), r"eval_set: 'div2k_val' is not a key of datasets"),
    (lambda c: c["estimation"]["transfer"].update(set="div2k_val"),
     r"estimation\.transfer\.set: 'div2k_val' is not a key of datasets"),
    (lambda c: c["estimation"]["transfer"].update(set="embedded"),
     r"estimation\.transfer\.set: 'embedded' is the train_set"),
    (lambda c: c["estimation"]["transfer"].update(per_type=1),
     r"estimation\.transfer\.per_type: 1 is less than the minimum of 2"),
    (lambda c: c.update(eval_set="embedded"), r"eval_set: 'embedded' is the train_set"),
    (lambda c: c["synth"].update(val_fraction=0),
     r"synth\.val_fraction is 0 and eval_set is null: nothing is left to evaluate on"),
    (lambda c: c["estimation"].update(daclip_model={"arch": "ViT-L-14"}),
     r"estimation\.daclip_model: 'checkpoint' is a required property"),
])
def test_bad_values_name_the_key(raw, edit, match, tmp_path):
    bad = copy.deepcopy(raw)
    edit(bad)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(zconfig.ConfigError, match=match) as info:
        zconfig.load(path)
    assert str(path) in str(info.value)


def test_unreadable_and_invalid_yaml(tmp_path):
    with pytest.raises(zconfig.ConfigError, match="cannot read config"):
        zconfig.load(tmp_path / "missing.yaml")
    (tmp_path / "broken.yaml").write_text("name: [unclosed")
    with pytest.raises(zconfig.ConfigError, match="broken.yaml: not valid YAML"):
        zconfig.load(tmp_path / "broken.yaml")


def test_ablation_sets_losses_topk_and_gap(raw):
    cfg = zconfig.check(raw)
    a = zconfig.ablation(cfg, "B", "all", "10")
    assert a["hdclip"]["model"]["topk"] is None and a["hdclip"]["model"]["gap"] == 10.0
    assert (a["hdclip"]["train"]["use_level"], a["hdclip"]["train"]["use_slerp"]) == (True, False)
    assert cfg["hdclip"]["model"]["topk"] == 2  # the run's config is left alone
    assert zconfig.ablation(cfg)["hdclip"] == cfg["hdclip"]
    with pytest.raises(zconfig.ConfigError, match="losses 'E' is not one of A, B, C, D"):
        zconfig.ablation(cfg, "E")
    with pytest.raises(zconfig.ConfigError, match="gap: 3 does not divide 100"):
        zconfig.ablation(cfg, gap="3")


def test_eval_set_names_the_evaluation_manifest_and_joins_the_stage_configs(raw):
    """eval_set null: the training set's own val split; set: its own labelled set, and a
    stage config (zephir.config.subset) carries it and its dataset, so that it stays valid
    with val_fraction 0."""
    cfg = zconfig.check(raw)
    assert zconfig.eval_manifest(cfg) == zconfig.synth_manifest(cfg)
    assert "eval_set" not in zconfig.subset(cfg, "synth")  # the default's stage configs as before
    paper = zconfig.load(REPO / "config" / "paper.yaml")
    assert paper["eval_set"] == "div2k_val" and paper["synth"]["val_fraction"] == 0
    assert str(zconfig.eval_manifest(paper)) == "results/paper/synth_eval/div2k_val/manifest.csv"
    stage = zconfig.check(zconfig.subset(paper, "synth", "hdclip"))
    assert stage["eval_set"] == "div2k_val" and set(stage["datasets"]) == {"div2k_train",
                                                                          "div2k_val"}
    # DA-CLIP's CLIP: its own in the paper config, HD-CLIP's where it is null
    assert zconfig.daclip_model(paper) == {
        "arch": "ViT-L-14", "quick_gelu": False,
        "checkpoint": "data/weights/clip/ViT-L-14-laion2b_s32b_b82k.bin"}
    assert zconfig.daclip_model(cfg)["arch"] == cfg["hdclip"]["model"]["arch"]


def test_fingerprint_ignores_key_order_and_sees_values(raw):
    cfg = zconfig.check(raw)
    reordered = dict(reversed(list(cfg.items())))
    assert zconfig.fingerprint(cfg) == zconfig.fingerprint(reordered)
    changed = copy.deepcopy(cfg)
    changed["hdclip"]["train"]["steps"] += 1
    assert zconfig.fingerprint(changed) != zconfig.fingerprint(cfg)
    assert len(zconfig.fingerprint(cfg)) == 8


def _leaves(node: dict, path: str = ""):
    """Every key of the schema below the top level, as dotted paths (``*`` for any name)."""
    for key, sub in node.get("properties", {}).items():
        here = f"{path}.{key}" if path else key
        yield here
        yield from _leaves(sub, here)
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        yield from _leaves(extra, f"{path}.*")


@pytest.mark.parametrize("section,cls", [
    ("synth", "zephir.degrade.synth.SynthSpec"),
    ("hdclip.train", "zephir.training.loop.TrainConfig"),
])
def test_settings_dataclasses_are_their_schema_section(section, cls):
    """Every field of a settings dataclass is a key of its section, with the schema's default
    (one source of defaults), and every key of the section is a field (or a documented run
    setting that does not change the output)."""
    import dataclasses
    import importlib

    from zephir import schema

    module, name = cls.rsplit(".", 1)
    fields = {f.name: f for f in dataclasses.fields(getattr(importlib.import_module(module),
                                                            name))}
    run_settings = {"synth": {"workers"}}.get(section, set())
    for fname, f in fields.items():
        want = schema.default(f"{section}.{fname}")
        assert f.default == want and type(f.default) is type(want), (fname, f.default, want)
    assert set(schema.keys(section)) - run_settings == set(fields)


def test_hdclip_model_defaults_live_with_the_model():
    """hdclip.model's keys are HDCLIPConfig's fields (but types, which is synth.types); the
    schema describes them without a default, and the loader fills each from the dataclass
    field, so that the model's defaults are written once, beside the model."""
    import dataclasses

    from zephir import schema
    from zephir.hdclip.config import HDCLIPConfig

    fields = {f.name: f.default for f in dataclasses.fields(HDCLIPConfig)}
    assert set(schema.keys("hdclip.model")) == set(fields) - {"types"}
    assert not [k for k in fields if k != "types" and "default" in
                schema.node(f"hdclip.model.{k}")]
    assert fields["types"] == schema.default("synth.types")
    cfg = zconfig.check({"name": "x", "datasets": {"e": {"kind": "embedded",
                                                          "images": ["astronaut"]}},
                         "train_set": "e", "hdclip": {"model": {"gap": 10.0}}})
    assert cfg["hdclip"]["model"] == {**{k: v for k, v in fields.items() if k != "types"},
                                      "gap": 10.0}


def test_reading_hdclip_settings_imports_neither_torch_nor_opencv():
    """The config loader (also run inside the restoration backbones' environments) reads
    HD-CLIP's defaults from zephir.hdclip.config, which needs the standard library only."""
    import subprocess
    import sys

    code = ("import sys; from zephir import config; import zephir.hdclip.config; "
            "print(sorted(m for m in ('torch', 'cv2', 'open_clip') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=REPO, env={"PYTHONPATH": str(REPO)})
    assert out.stdout.strip() == "[]", out


def test_every_schema_key_is_read_by_the_code():
    """A key that nothing reads misleads whoever sets it: each key name must be read somewhere
    in the package or the workflow, as an item (``["key"]``, ``[key]`` in a rule's shell), an
    attribute (``.key``) or a keyword (``key=``), outside the schema itself."""
    import re

    from zephir import schema

    code = "\n".join(p.read_text() for p in [*(REPO / "zephir").rglob("*.py"),
                                             *(REPO / "workflow").rglob("*.smk"),
                                             REPO / "Snakefile"])
    unread = []
    for path in _leaves(schema.schema()):
        key = path.rsplit(".", 1)[-1]
        if key == "*":
            continue
        pattern = rf"""\[["']?{key}["']?\]|\.{key}\b(?!\()|\b{key}="""
        if not re.search(pattern, code):
            unread.append(path)
    assert not unread, f"schema keys read by nothing: {unread}"


def test_paper_config_trains_the_papers_recipe():
    """Section 4.1: 512 per degradation type, 400 epochs; section 3.1: the CLIP loss and the
    GT semantic loss, the CLIP loss against DIV2K captions in DA-CLIP's layout."""
    paper = zconfig.load(REPO / "config" / "paper.yaml")
    train = paper["hdclip"]["train"]
    assert (train["batch_per_type"], train["epochs"]) == (512, 400)
    assert train["steps"] is None and train["batch_size"] is None
    assert train["lambda_clip"] > 0 and train["lambda_semantic"] > 0
    assert paper["datasets"][paper["train_set"]]["captions"].endswith(".csv")
    assert (paper["hdclip"]["model"]["shift"], paper["hdclip"]["model"]["slerp_negatives"]) \
        == ("bin", "bins")
    # 4 GPUs of 512 a step: the global batch splits evenly over the job's processes
    types = len(paper["synth"]["types"])
    assert types * train["batch_per_type"] % paper["hdclip"]["resources"]["gpu"] == 0


def test_a_budget_and_a_batch_are_each_given_one_way(raw):
    both = copy.deepcopy(raw)
    both.setdefault("hdclip", {}).setdefault("train", {})["epochs"] = 3
    with pytest.raises(zconfig.ConfigError, match="hdclip.train: set one of steps and epochs"):
        zconfig.check(both)
    neither = copy.deepcopy(raw)
    neither["hdclip"]["train"].update(batch_size=None)
    with pytest.raises(zconfig.ConfigError, match="set one of batch_size and batch_per_type"):
        zconfig.check(neither)
    fine = copy.deepcopy(raw)
    fine["hdclip"]["train"].update(steps=None, epochs=3, batch_size=None, batch_per_type=4)
    assert zconfig.check(fine)["hdclip"]["train"]["epochs"] == 3
