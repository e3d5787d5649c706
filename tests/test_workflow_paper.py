"""Every training job the paper config schedules starts, finishes and writes its outputs: HD-CLIP,
every ablation of tables 3 and 4, every baseline and DA-CLIP's released weights, run for two
steps under Snakemake on stand-ins (bundled photos, a tiny CLIP with the controller, a stand-in
weights file and a stand-in DA-CLIP release). Dry runs cannot see a job that fails at its start
(the semantic losses without --sources, a flag a rule forgets)."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
import yaml

import zephir.config

from .test_workflow import _jobs, run_snakemake, workdir  # noqa: F401 - the fixture

ARCH = "zephir-tiny-vit"
TRAINING = ("hdclip_train", "ablation_train", "baseline_train", "daclip_released")
TRAIN_PHOTOS = ["astronaut", "chelsea", "coffee"]
EVAL_PHOTOS = ["camera", "rocket"]


def _tiny_clip():
    from zephir.hdclip.model import load_clip

    torch.manual_seed(0)
    return load_clip(ARCH)[0]


def _clip_standin(path: Path) -> None:
    """A CLIP weights file as open_clip loads it with ``pretrained=path``."""
    torch.save(_tiny_clip().state_dict(), path)


def _daclip_standin(path: Path) -> None:
    """DA-CLIP's released layout (zephir.baselines.daclip_style.released_state) on a tiny ViT:
    its CLIP, the frozen tower again, and the controller with its wrapped transformer."""
    clip = _tiny_clip()
    state = {f"clip.{k}": v for k, v in clip.state_dict().items()}
    state.update({f"visual.{k}": v for k, v in clip.visual.state_dict().items()})
    for k, v in clip.visual.state_dict().items():
        state["visual_control." + k.replace("transformer.", "transformer.transformer.", 1)] = v
    width = clip.visual.transformer.width
    for i in range(len(clip.visual.transformer.resblocks)):
        state[f"visual_control.transformer.zero_modules.{i}.weight"] = torch.zeros(width, width)
        state[f"visual_control.transformer.zero_modules.{i}.bias"] = torch.zeros(width)
    torch.save({"state_dict": state}, path)


def _standin_config(folder: Path) -> dict:
    """config/paper.yaml with only what must change for a CPU run of minutes overridden."""
    cfg = yaml.safe_load((folder / "config" / "paper.yaml").read_text())
    (folder / "weights").mkdir()
    _clip_standin(folder / "weights" / "clip.pt")
    _daclip_standin(folder / "weights" / "daclip.pt")
    # the CLIP loss's captions in DA-CLIP's layout, as the paper config expects for DIV2K
    (folder / "captions.tsv").write_text("filepath\ttitle\n" + "".join(
        f"/hq/{name}.png\ta photo of {name}\n" for name in TRAIN_PHOTOS))
    cfg["datasets"][cfg["train_set"]] = {"kind": "embedded", "images": TRAIN_PHOTOS,
                                         "captions": "captions.tsv"}
    cfg["datasets"]["div2k_val"] = {"kind": "embedded", "label": "DIV2K-Val",
                                    "images": EVAL_PHOTOS}
    cfg["synth"].update(levels_per_type=1, crop_size=128, workers=1)
    cfg["hdclip"]["model"].update(arch=ARCH, checkpoint="weights/clip.pt")
    # the paper's type-balanced batches and budget in epochs, scaled: 1 per type (4 a step)
    # and half an epoch of the 12 samples, 2 steps; one loader process (the paper's 8 per GPU
    # would crowd 2 cores)
    cfg["hdclip"]["train"].update(batch_per_type=1, epochs=0.5, loader_workers=1)
    cfg["hdclip"]["resources"].update(gpu=0, threads=1)
    cfg["estimation"]["resources"].update(gpu=0, threads=1)
    cfg["estimation"]["daclip_weights"] = "weights/daclip.pt"
    cfg["estimation"]["daclip_model"] = {"arch": ARCH, "checkpoint": "weights/clip.pt",
                                         "quick_gelu": True}
    (folder / "config" / "standin.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return cfg


def _ablations(cfg: dict) -> set[str]:
    """The ablation jobs of tables 3 and 4, less the main model (D at the default top-k, gap)."""
    est, model = cfg["estimation"], cfg["hdclip"]["model"]
    k, g = model["topk"], f"{float(model['gap']):g}"
    names = {f"{losses}-k{k}-g{g}" for losses in est["losses"]}
    names |= {f"D-k{t}-g{float(gap):g}" for t in est["topk"] for gap in est["gap"]}
    return names - {f"D-k{k}-g{g}"}


@pytest.mark.slow
def test_every_training_job_of_the_paper_config_runs(workdir):  # noqa: F811
    cfg = _standin_config(workdir)
    proc = run_snakemake(["-c2", "--keep-going", "--until", *TRAINING,
                          "--configfile", "config/standin.yaml"], cwd=workdir, check=False)
    res = workdir / "results" / cfg["name"]
    logs = "\n".join(f"--- {p}\n{p.read_text()[-3000:]}" for p in sorted((res / "logs").rglob(
        "*.log"))) if (res / "logs").exists() else ""
    assert proc.returncode == 0, proc.stderr[-4000:] + logs
    jobs = _jobs(proc.stdout + proc.stderr)
    ablations = _ablations(cfg)
    assert jobs["hdclip_train"] == 1 and jobs["baseline_train"] == 3
    assert jobs["ablation_train"] == len(ablations) and jobs["daclip_released"] == 1

    models = ([res / "hdclip", *(res / "baselines" / m for m in
                                 ("clip_zeroshot", "daclip_style", "mmrealsr_style",
                                  "daclip_released"))]
              + [res / "ablation" / a for a in sorted(ablations)])
    for out in models:
        assert (out / "model.safetensors").is_file(), out
        ev = json.loads((out / "eval" / "metrics.json").read_text())
        single = ev["metrics"]["single"]
        assert {"type_acc", "mae", "srocc", "pcc"} <= set(single), out
        assert ev["arch"] == ARCH and ev["random_init"] is False, out
        rows = _csv(out / "eval" / "predictions.csv")
        assert rows, out
        assert (out / "eval" / "arrays.npz").is_file()
        # every model is evaluated on the evaluation set (DIV2K-Val's stand-in), mixtures too
        assert {r["source"].removesuffix(".png") for r in rows} == set(EVAL_PHOTOS), out
        assert any("+" in r["types"] for r in rows), out
    hd = json.loads((res / "hdclip" / "metrics.json").read_text())
    assert hd["step"] == 2 and hd["arch"] == ARCH
    for out in [res / "hdclip", *(res / "ablation" / a for a in ablations)]:
        # two steps derived from the epochs, each with the GT semantic loss and the CLIP loss
        # against the captions (the controller is on)
        log = _csv(out / "train_log.csv")
        assert [int(r["step"]) for r in log] == [1, 2], out
        assert {"loss_semantic", "loss_clip"} <= set(log[0]), out
        ev = json.loads((out / "eval" / "metrics.json").read_text())
        assert ev["semantic_target"] == "captions", out
        assert (ev["train"]["steps"], ev["train"]["batch_size"]) == (2, 4), out
    # the paper's protocol: training on every training photo, single types only
    train = _csv(res / "synth" / cfg["train_set"] / "manifest.csv")
    assert {r["split"] for r in train} == {"train"} and all("+" not in r["types"] for r in train)
    assert {r["source"].removesuffix(".png") for r in train} == set(TRAIN_PHOTOS)
    evaluation = _csv(res / "synth_eval" / "div2k_val" / "manifest.csv")
    assert {r["split"] for r in evaluation} == {"val"}
    assert sum("+" in r["types"] for r in evaluation) == 8 * len(EVAL_PHOTOS)


def _csv(path: Path) -> list[dict]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_paper_config_plans_its_evaluation_set_and_every_flag(workdir):  # noqa: F811
    """Dry run: DIV2K-Val's labelled samples are synthesised apart (every image in val) and
    every training job validates and evaluates on them; the HD-CLIP jobs get the source index
    (semantic losses) and the captions; DA-CLIP's jobs get DA-CLIP's own CLIP."""
    cfg = yaml.safe_load((workdir / "config" / "paper.yaml").read_text())
    cfg["datasets"][cfg["train_set"]]["captions"] = "captions.tsv"
    (workdir / "captions.tsv").write_text("filepath\ttitle\n0001.png\ta photo\n")
    (workdir / "daclip.pt").write_bytes(b"stand-in")
    cfg["estimation"]["daclip_weights"] = "daclip.pt"
    (workdir / "config" / "plan.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    out = run_snakemake(["-n", "-p", "--configfile", "config/plan.yaml"], cwd=workdir).stdout
    blocks = {name: [b for b in out.split("\n\n") if f"rule {name}:" in b]
              for name in ("synth", "synth_eval", *TRAINING)}
    evaluation = "results/paper/synth_eval/div2k_val/manifest.csv"
    (synth_eval,) = blocks["synth_eval"]
    assert "--split val" in synth_eval and "results/paper/data/div2k_val/index.csv" in synth_eval
    assert "--split" not in blocks["synth"][0]
    # both sets are made with the synth section, passed as the stage's config file
    stage_config = "results/paper/synth/config.yaml"
    assert all(f"--config {stage_config}" in blocks[n][0] for n in ("synth", "synth_eval"))
    run_snakemake(["-c1", stage_config, "--configfile", "config/plan.yaml"], cwd=workdir)
    synth = zephir.config.load(workdir / stage_config)["synth"]
    assert (synth["mixtures_per_image"], synth["val_mixtures_per_image"]) == (0, 8)
    assert synth["val_fraction"] == 0 and synth["levels_per_type"] == cfg["synth"][
        "levels_per_type"]
    for name in ("hdclip_train", "ablation_train", "baseline_train"):
        assert blocks[name] and all(f"--val-manifest {evaluation}" in b for b in blocks[name])
    for name in ("hdclip_train", "ablation_train"):
        assert all("--sources results/paper/data/div2k_train/index.csv" in b
                   and "--captions captions.tsv" in b for b in blocks[name]), name
    clip = "--arch ViT-L-14 --no-quick-gelu"
    by_method = {m: [b for b in blocks["baseline_train"] if f"--method {m}" in b]
                 for m in ("daclip_style", "clip_zeroshot", "mmrealsr_style")}
    assert (f"{clip} --checkpoint data/weights/clip/ViT-L-14-laion2b_s32b_b82k.bin"
            in by_method["daclip_style"][0])
    assert "--arch" not in by_method["clip_zeroshot"][0] + by_method["mmrealsr_style"][0]
    (released,) = blocks["daclip_released"]
    assert clip in released and f"--manifest {evaluation}" in released
    (fig9,) = [b for b in out.split("\n\n") if "rule figure9:" in b]
    assert evaluation in fig9 and "results/paper/data/div2k_val/index.csv" in fig9
