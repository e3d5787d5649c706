"""Trained models are data: Hub-layout folders (safetensors + JSON + model card), training
states read with ``weights_only=True``, a pickle that would run code refused at every entry
point, and a clear message for a corrupt file or another version's."""
from __future__ import annotations

import ast
import builtins
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from zephir import checkpoints, cli
from zephir.hdclip.config import HDCLIPConfig

from .conftest import REPO

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class _Payload:
    """Unpickling it runs ``exec``, which writes the file ``marker``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (builtins.exec, (f"open({str(self.marker)!r}, 'w').write('ran')",))


def _malicious(path: Path, marker: Path) -> Path:
    """A ``torch.save`` file shaped as a zephir checkpoint whose ``model`` is the payload."""
    torch.save({"model": _Payload(marker), "method": "hdclip", "step": 0, "optimizer": {},
                "hdclip": HDCLIPConfig().to_dict()}, path)
    return path


@pytest.fixture()
def evil(tmp_path) -> tuple[Path, Path]:
    marker = tmp_path / "pwned.txt"
    return _malicious(tmp_path / "evil.pt", marker), marker


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """A tiny random-init HD-CLIP saved as a model folder, with validation numbers."""
    from zephir.hdclip import create_model

    torch.manual_seed(0)
    model = create_model("zephir-tiny-rn")
    with torch.no_grad():
        model.shift.normal_(0, 0.1)  # not the init: a round trip must carry the weights
    return checkpoints.save_model(
        tmp_path_factory.mktemp("model") / "hdclip", model,
        {"method": "hdclip", "hdclip": model.cfg.to_dict(), "step": 7,
         "train": {"steps": 7, "batch_size": 8, "lr": 1e-3, "seed": 0},
         "metrics": {"type_acc": 0.5, "srocc": 0.25, "mae": float("nan")}})


def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True)
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


# --------------------------------------------------------------------------- the payload

def test_the_payload_really_runs_code_when_unpickled(evil):
    """The refusal tests below mean something only if the file would run its code."""
    path, marker = evil
    torch.load(path, weights_only=False)
    assert marker.read_text() == "ran"


# --------------------------------------------------------------------------- every entry point

def _refused(capsys, path: Path, marker: Path, rc: int) -> None:
    err = capsys.readouterr().err
    assert rc == 2, err
    assert not marker.exists(), "the pickle's code ran"
    assert f"{path}: refused" in err and "exec" in err, err  # names the file and the object
    assert "Traceback" not in err and "weights_only` set to `False`" not in err, err


def test_predict_refuses_a_malicious_pickle(evil, photo_dir, capsys):
    path, marker = evil
    rc = cli.main(["predict", "--checkpoint", str(path), str(photo_dir / "camera.png")])
    _refused(capsys, path, marker, rc)


def test_evaluate_refuses_a_malicious_pickle(evil, labelled, tmp_path, capsys):
    path, marker = evil
    rc = cli.main(["evaluate", "--checkpoint", str(path), "--manifest", str(labelled),
                   "--out", str(tmp_path / "eval")])
    _refused(capsys, path, marker, rc)
    assert not (tmp_path / "eval").exists()


def test_restore_refuses_a_malicious_pickle(evil, photo_dir, tmp_path, capsys):
    """Restore reads HD-CLIP's output from the set's embeddings file (safetensors), never a
    checkpoint: a pickle given as that file is not a readable safetensors file, its code not
    run."""
    path, marker = evil
    rc = cli.main(["restore", "--config", str(REPO / "config" / "config.yaml"), "--lq",
                   str(photo_dir), "--out", str(tmp_path / "out"), "--backbone", "tiny",
                   "--mode", "cfpg", "--embeddings", str(path), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert not marker.exists(), "the pickle's code ran"
    assert f"{path}: not a readable safetensors file" in err and "Traceback" not in err, err


def test_import_daclip_refuses_a_malicious_pickle(tmp_path, capsys):
    marker = tmp_path / "pwned.txt"
    path = tmp_path / "daclip_ViT-B-32.pt"
    torch.save({"state_dict": {"visual_control.x": _Payload(marker)}}, path)
    rc = cli.main(["import-daclip", "--weights", str(path), "--config",
                   str(REPO / "config" / "config.yaml"), "--out", str(tmp_path / "out")])
    _refused(capsys, path, marker, rc)
    assert not (tmp_path / "out").exists()


def test_train_resume_refuses_a_malicious_training_state(labelled, tmp_path, capsys):
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg["hdclip"]["train"].update(batch_size=8, lambda_clip=0.0, lambda_semantic=0.0)
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "run"
    out.mkdir()
    marker = tmp_path / "pwned.txt"
    path = _malicious(out / "last.pt", marker)
    rc = cli.main(["train", "--config", str(cfg_file), "--manifest", str(labelled), "--out",
                   str(out), "--steps", "2", "--resume", "--quiet"])
    _refused(capsys, path, marker, rc)
    assert not (out / checkpoints.WEIGHTS).exists()  # nothing trained over it


def test_embed_refuses_a_malicious_pickle(evil, photo_dir, tmp_path, capsys):
    """`zephir embed` (the only reader of HD-CLIP before restoration) uses the same loader."""
    path, marker = evil
    rc = cli.main(["embed", "--hdclip", str(path), "--lq", str(photo_dir), "--out",
                   str(tmp_path / "emb.safetensors"), "--quiet"])
    _refused(capsys, path, marker, rc)
    assert not (tmp_path / "emb.safetensors").exists()


def test_the_loaders_refuse_it_in_python_too(evil):
    path, marker = evil
    for load in (checkpoints.load_pretrained, checkpoints.load_state):
        with pytest.raises(checkpoints.CheckpointError, match=re.escape(f"{path}: refused")):
            load(path)
    assert not marker.exists()


# --------------------------------------------------------------------------- the folder

def test_a_model_folder_is_the_hub_layout_and_round_trips(folder, astronaut):
    from zephir.hdclip import describe, embed, load_pretrained

    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json",
                                                        "model.safetensors"]
    config = json.loads((folder / "config.json").read_text())  # strict JSON: no NaN
    assert config["format"] == "zephir-estimator" and config["format_version"] == 1
    assert (config["method"], config["step"], config["random_init"]) == ("hdclip", 7, True)
    assert config["metrics"] == {"type_acc": 0.5, "srocc": 0.25, "mae": None}
    model, meta = load_pretrained(folder)
    assert meta["path"] == str(folder)
    assert meta["sha1"] == hashlib.sha1((folder / "model.safetensors").read_bytes()).hexdigest()
    saved = load_file(folder / "model.safetensors")
    assert set(saved) == set(model.state_dict())
    assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items())
    assert model.cfg == HDCLIPConfig(**{**config["hdclip"], "types": tuple(config["hdclip"]
                                                                          ["types"])})
    again, _ = load_pretrained(folder / "model.safetensors")  # the weights file names it too
    a, b = embed(model, [astronaut])[0], embed(again, [astronaut])[0]
    assert torch.equal(a.embeddings, b.embeddings) and describe(model, a) == describe(again, b)


def test_the_model_card_says_what_and_labels_random_init(folder):
    card = (folder / "README.md").read_text()
    front = yaml.safe_load(card.split("---")[1])
    assert front["library_name"] == "zephir" and "random-init" in front["tags"]
    assert "**Random-init CLIP.**" in card and "zephir-tiny-rn" in card
    assert "| type_acc | 0.5 |" in card and "| mae | n/a |" in card
    assert "Validation (random-init CLIP)" in card and "7 steps of batch 8" in card


def test_trained_weights_make_no_random_init_label(folder, tmp_path):
    meta = json.loads((folder / "config.json").read_text())
    meta["hdclip"]["checkpoint"] = "openai"
    card = checkpoints.model_card({**meta, "random_init": False})
    assert "random" not in card.lower() and "`openai`" in card


def test_building_and_loading_hdclip_import_neither_opencv_nor_the_degradation_code(folder):
    code = ("import sys; from zephir.hdclip import create_model, load_pretrained; "
            "create_model('zephir-tiny-vit'); load_pretrained(sys.argv[1]); "
            "print(sorted(m for m in sys.modules if m == 'cv2' or m.startswith('zephir.degrade')"
            " or m.startswith('zephir.baselines')))")
    out = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True,
                         text=True, check=True, cwd=REPO, env={"PYTHONPATH": str(REPO)})
    assert out.stdout.strip().splitlines()[-1] == "[]", out


def test_create_model_takes_a_name_a_config_or_a_dict():
    from zephir.hdclip import HDCLIPConfig as Exported
    from zephir.hdclip import create_model, load_pretrained

    assert Exported is HDCLIPConfig and load_pretrained is checkpoints.load_pretrained
    by_name = create_model("zephir-tiny-vit", gap=10.0)
    assert by_name.cfg.arch == "zephir-tiny-vit" and by_name.bins.numel() == 11  # eq. 3
    by_cfg = create_model(HDCLIPConfig(arch="zephir-tiny-rn", types=("blur", "noise")))
    assert len(by_cfg.heads) == 2 and by_cfg.image_size == 128
    assert create_model({"arch": "zephir-tiny-rn", "topk": None}).cfg.topk is None
    with pytest.raises(ValueError, match="unknown HD-CLIP setting.*gapp"):
        create_model("zephir-tiny-rn", gapp=3)


# --------------------------------------------------------------------------- corrupt / other

def _cli_error(capsys, path: Path, photo: Path) -> str:
    assert cli.main(["predict", "--checkpoint", str(path), str(photo)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_missing_keys_and_shape_mismatch_are_named(folder, tmp_path, photo_dir, capsys):
    photo = photo_dir / "camera.png"
    fewer = _copy(folder, tmp_path / "fewer")
    weights = load_file(fewer / "model.safetensors")
    del weights["shift"]
    save_file(weights, fewer / "model.safetensors")
    err = _cli_error(capsys, fewer, photo)
    assert f"{fewer / 'model.safetensors'}: its weights do not fit" in err
    assert "missing keys shift" in err
    other = _copy(folder, tmp_path / "other")
    config = json.loads((other / "config.json").read_text())
    config["hdclip"]["gap"] = 10.0  # 11 bins where the weights have 21
    (other / "config.json").write_text(json.dumps(config))
    err = _cli_error(capsys, other, photo)
    assert "shape mismatch: shift (4, 21, 64) (the model has (4, 11, 64))" in err
    assert "bins (21,) (the model has (11,))" in err


@pytest.mark.parametrize("change,message", [
    ({"method": "hdclip_v9"}, "unknown method 'hdclip_v9'; this zephir knows hdclip"),
    ({"format_version": 2}, "format_version 2: this zephir reads version 1"),
    ({"format": "something-else"}, "not a zephir estimator's config"),
    ({"hdclip": {"arch": "zephir-tiny-rn", "colour": 1}}, "unknown HD-CLIP setting(s) colour"),
])
def test_other_versions_say_what_is_wrong(folder, tmp_path, photo_dir, capsys, change,
                                          message):
    other = _copy(folder, tmp_path / "other")
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, **change}))
    err = _cli_error(capsys, other, photo_dir / "camera.png")
    assert str(other / "config.json") in err and message in err, err


def test_corrupt_files_are_named(folder, tmp_path, photo_dir, capsys):
    photo = photo_dir / "camera.png"
    cut = _copy(folder, tmp_path / "cut")
    data = (cut / "model.safetensors").read_bytes()
    (cut / "model.safetensors").write_bytes(data[: len(data) // 2])
    err = _cli_error(capsys, cut, photo)
    assert f"{cut / 'model.safetensors'}: not a readable safetensors file" in err
    bad_json = _copy(folder, tmp_path / "json")
    (bad_json / "config.json").write_text("{not json")
    assert f"{bad_json / 'config.json'}: not valid JSON" in _cli_error(capsys, bad_json, photo)
    no_weights = _copy(folder, tmp_path / "none")
    (no_weights / "model.safetensors").unlink()
    assert f"{no_weights}: has config.json but no model.safetensors" in _cli_error(
        capsys, no_weights, photo)
    garbage = tmp_path / "model.pt"
    garbage.write_bytes(b"not a checkpoint")
    assert f"{garbage}: not a readable zephir checkpoint" in _cli_error(capsys, garbage, photo)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert f"{empty}: not a zephir model folder: it has no config.json" in _cli_error(
        capsys, empty, photo)


# --------------------------------------------------------------------------- earlier layout

def test_a_checkpoint_pt_of_the_earlier_layout_loads_with_weights_only(folder, tmp_path,
                                                                       astronaut):
    """zephir's earlier checkpoint.pt (a dict of the state dict and plain settings) still loads,
    through the restricted unpickler."""
    from zephir.hdclip import embed

    model, _ = checkpoints.load_pretrained(folder)
    old = tmp_path / "checkpoint.pt"
    torch.save({"model": model.state_dict(), "method": "hdclip", "step": 7,
                "hdclip": model.cfg.to_dict(), "train": {}, "random_init": True}, old)
    with pytest.raises(checkpoints.CheckpointError, match="earlier layout: pass that file"):
        checkpoints.load_pretrained(tmp_path)  # the folder of an old run: the file is named
    again, old_meta = checkpoints.load_pretrained(old)
    assert (old_meta["step"], old_meta["path"], old_meta["format_version"]) == (7, str(old), 0)
    assert torch.equal(embed(model, [astronaut])[0].levels, embed(again, [astronaut])[0].levels)


def test_training_state_reads_back_with_plain_weights_only(tmp_path):
    """last.pt holds tensors and plain values: torch's own restricted unpickler reads it."""
    import numpy as np

    param = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.AdamW([param], lr=0.1)
    param.grad = torch.ones(3)
    opt.step()
    checkpoints.save_state(tmp_path / "last.pt", {
        "model": {"w": param.detach()}, "optimizer": opt.state_dict(), "step": 1,
        "history": {"val": [{"step": 1, "srocc": np.float64(0.5)}]}, "run": {"seed": 0}})
    raw = torch.load(tmp_path / "last.pt", weights_only=True)
    assert raw["history"]["val"][0]["srocc"] == 0.5 and type(raw["history"]["val"][0]["srocc"]) \
        is float
    assert torch.equal(raw["optimizer"]["state"][0]["exp_avg"],
                       opt.state_dict()["state"][0]["exp_avg"])
    fresh = torch.optim.AdamW([torch.nn.Parameter(torch.ones(3))], lr=0.1)
    fresh.load_state_dict(checkpoints.load_state(tmp_path / "last.pt")["optimizer"])
    assert fresh.state_dict()["param_groups"][0]["betas"] == opt.state_dict()["param_groups"][0][
        "betas"]


# --------------------------------------------------------------------------- README

def test_the_readme_hdclip_example_runs(folder, photo_dir, tmp_path):
    """README's "HD-CLIP in Python" block, run as it is where results/embedded/hdclip is a
    trained model's folder and photo.png a photo: it prints the types and levels."""
    readme = (REPO / "README.md").read_text()
    block = readme.split("HD-CLIP in Python", 1)[1].split("```python\n", 1)[1].split("```")[0]
    _copy(folder, tmp_path / "results" / "embedded" / "hdclip")
    (tmp_path / "photo.png").write_bytes((photo_dir / "coffee.png").read_bytes())
    out = subprocess.run([sys.executable, "-c", block], capture_output=True, text=True,
                         cwd=tmp_path, env={"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr
    described, shape = out.stdout.strip().splitlines()
    described = ast.literal_eval(described)  # the dict describe() gives, printed
    assert set(described["degradations"]) == {"blur", "noise", "jpeg", "downsample"}
    assert all(0 <= d["level"] <= 100 and 0 <= d["present"] <= 1
               for d in described["degradations"].values())
    assert described["type"] in described["degradations"]
    assert shape == "torch.Size([4, 64]) random-init CLIP"
