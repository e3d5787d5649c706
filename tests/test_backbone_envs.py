"""Restore jobs inside the SeeSR and PASD environments (issue 23, item 2).

The pip part of ``workflow/envs/seesr.yaml`` (torch 2.0.1, diffusers 0.21.0, transformers 4.25.0)
and ``pasd.yaml`` (torch 2.3.1, diffusers 0.29.2) is built as a virtual environment from PyPI,
once, under ``build/envs/<name>-<hash of the pins>/`` (ignored by git; reused while the pins and
the Python version are unchanged, another hash replaces it). Each line of the list is installed
as written except the ``--extra-index-url`` line (the tests use PyPI only, whose torch 2.0.1 is
the CUDA 11.7 build). In each environment, as rule ``restore`` runs it (``PYTHONPATH=<repo>
<venv>/bin/python -m zephir restore ...``):

* a restore job of the ``tiny`` backbone (random init, that diffusers version's own classes) in
  the three modes, with the conditioning file ``zephir embed`` wrote in the main environment;
* the SeeSR (resp. PASD) adapter against the stand-in checkout under tests/backbones/standins/,
  with random-init weights saved there by the environment's own diffusers
  (make_weights.py): three CLI jobs, then ``check_adapter.py`` for the plumbing
  (``Backbone.restore`` with a hand-made HD pair).

Each job is run with ``-X importtime``, whose log names every module the process imported: none
of open_clip, zephir.hdclip, zephir.training or the degradation operators may be among them
(zephir.degrade's level table, NumPy only, may: the CLI reads its type names). **All weights are random.**

Building, measured on this project's 2-core machine (2026-12-06, pip 23.2.1, Python 3.11.7, PyPI,
other jobs sharing the cores):
  * torch's wheels from PyPI pull their CUDA libraries (nvidia-*-cu11 / -cu12, triton). The
    pip lists without open_clip_torch took 68 s (SeeSR, 4.7 GB) and 70 s (PASD, 5.3 GB, of which
    nvidia 2.8 GB); the full lists, as this test builds them, 238 s and 164 s. torch 2.0.1's
    wheel alone (620 MB) downloads in 6 s: unpacking is the cost, not the network.
  * ``pip install --no-deps torch`` (no nvidia packages) with filelock, typing-extensions,
    sympy, networkx, jinja2 (and fsspec) by hand gives no usable torch: ``import torch`` fails
    for 2.0.1 and 2.3.1 alike (``ValueError: libcublas.so.*[0-9] not found in the system
    path``: the wheels load their CUDA libraries at import, GPU or not), and PyPI has no CPU
    wheels of these releases. So the full lists are installed.
  * pip's HTTP cache kept nothing of these downloads here (1.8 MB after a build), so no cache
    folder is set up; a CI run on a fresh clone builds both (about 7 min), a rerun reuses them.
  * The whole module (``pytest tests/test_backbone_envs.py -m slow``, 12 passed): 363 s with
    the PASD build and the SeeSR environment reused; 115 s with both reused.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from tests import envs
from tests.conftest import REPO
from zephir import checkpoints, datasets, estimator_registry
from zephir import config as zconfig
from zephir import io as zio
from zephir.hdclip.model import HDCLIPConfig

pytestmark = pytest.mark.slow

ENVS = {"seesr": "0.21.0", "pasd": "0.29.2"}
"""Backbone -> the diffusers version its environment must have."""
STANDINS = REPO / "tests" / "backbones" / "standins"
ALLOWED = ("zephir.degrade", "zephir.degrade.levels", "zephir.hdclip", "zephir.hdclip.config")
"""zephir.degrade's level table (NumPy only; the CLI's ``--types`` choices) and HD-CLIP's
settings (standard library; the config loader fills hdclip.model from them) may be imported;
``zephir.hdclip`` itself imports its model only on first use."""
FORBIDDEN = ("open_clip", "zephir.hdclip", "zephir.training", "zephir.degrade.")
"""HD-CLIP, open_clip, training and the degradation operators never run in a restore job."""


def forbidden(modules) -> list[str]:
    """The modules of ``modules`` a restore job must not import."""
    return sorted(m for m in modules if m.startswith(FORBIDDEN) and m not in ALLOWED)
STEPS = 2
SETTINGS = {"seesr": {"process_size": 128, "latent_tiled_size": 8, "latent_tiled_overlap": 4},
            "pasd": {"process_size": 128, "latent_tiled_size": 8, "latent_tiled_overlap": 4}}
"""Small sizes: a 32 px LQ image gives a 128 px output (16 x 16 latents, 3 x 3 tiles of 8)."""


@pytest.fixture(scope="module", params=list(ENVS))
def env(request, tmp_path_factory):
    """One backbone environment (tests/envs.py), its stand-in weights and a scratch folder."""
    name = request.param
    with envs.built(name, envs.requirements(name)) as folder:
        yield _prepare(name, folder / "bin" / "python", tmp_path_factory)


def _prepare(name: str, python: Path, tmp_path_factory) -> dict:
    """The stand-in weights that environment's diffusers writes, and the job's variables."""
    tmp = tmp_path_factory.mktemp(f"env-{name}")
    variables = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1",
                 "HF_HOME": str(tmp / "hf-home"), "HF_HUB_OFFLINE": "1",
                 "HF_HUB_CACHE": str(tmp / "weights" / "hf-hub")}
    proc = subprocess.run([str(python), str(STANDINS / "make_weights.py"), name,
                           str(tmp / "weights")], capture_output=True, text=True, env=variables,
                          timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr
    weights = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"name": name, "python": python, "tmp": tmp, "vars": variables, "weights": weights}


@pytest.fixture(scope="module")
def lq_dir(tmp_path_factory) -> Path:
    """Two 32 px LQ images (bundled photos, area-downscaled)."""
    folder = tmp_path_factory.mktemp("lq")
    for name in ("chelsea", "coffee"):
        img = cv2.resize(datasets.embedded_image(name), (32, 32), interpolation=cv2.INTER_AREA)
        zio.write_png(folder / f"{name}.png", img)
    return folder


@pytest.fixture(scope="module")
def embeddings(lq_dir, tmp_path_factory) -> Path:
    """The set's conditioning file, written in the main environment by `zephir embed` from a
    tiny random-init HD-CLIP (as rule hdclip_embed does)."""
    tmp = tmp_path_factory.mktemp("hdclip")
    torch.manual_seed(0)
    cfg = HDCLIPConfig(arch="zephir-tiny-rn")
    model_dir = checkpoints.save_model(tmp / "hdclip", estimator_registry.build("hdclip", cfg),
                                       {"method": "hdclip", "hdclip": cfg.to_dict()})
    out = tmp / "hdclip-embeddings.safetensors"
    proc = subprocess.run([sys.executable, "-m", "zephir", "embed", "--hdclip",
                           str(model_dir), "--lq", str(lq_dir), "--out", str(out),
                           "--device", "cpu", "--quiet"], capture_output=True, text=True,
                          cwd=REPO, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr
    return out


def job_config(env: dict) -> Path:
    """The restore job's config, as rule restore_config writes it, with the stand-in weights
    and small settings."""
    full = zconfig.load(REPO / "config" / "config.yaml")
    cfg = zconfig.subset(full, "datasets", "blind_sets", "restoration", "weights")
    cfg["restoration"]["steps"] = STEPS
    cfg["restoration"]["settings"] = {env["name"]: SETTINGS[env["name"]]}
    cfg["weights"] = dict(env["weights"])
    path = env["tmp"] / "config.yaml"
    zconfig.dump(cfg, path)
    return path


def restore_job(env: dict, backbone: str, mode: str, lq: Path, emb: Path, log: Path) -> dict:
    """``python -m zephir restore`` in the environment; the done record, the records by stem
    and the modules the process imported (from ``-X importtime``)."""
    out = env["tmp"] / f"{backbone}-{mode}"
    cmd = [str(env["python"]), "-X", "importtime", "-m", "zephir", "restore", "--config",
           str(job_config(env)), "--lq", str(lq), "--backbone", backbone, "--mode", mode,
           "--out", str(out), "--quiet"]
    if mode != "baseline":
        cmd += ["--embeddings", str(emb)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=env["tmp"], timeout=600,
                          env={**env["vars"], "ZEPHIR_STANDIN_LOG": str(log)}, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    modules = [line.split("|")[-1].strip() for line in proc.stderr.splitlines()
               if line.startswith("import time:") and "|" in line]
    done = json.loads((out / "shard-0-of-1.done.json").read_text())
    records = {i["stem"]: json.loads((out / i["record"]).read_text()) for i in done["images"]}
    pngs = {i["stem"]: zio.load_image(out / i["png"]).pixels for i in done["images"]}
    return {"done": done, "records": records, "pngs": pngs, "modules": modules}


def events(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []


def test_the_environment_has_the_pins(env):
    code = ("import json, torch, diffusers, transformers; print(json.dumps([torch.__version__,"
            " diffusers.__version__, transformers.__version__, torch.cuda.is_available()]))")
    proc = subprocess.run([str(env["python"]), "-c", code], capture_output=True, text=True,
                          env=env["vars"], timeout=300, check=True)
    versions = json.loads(proc.stdout.strip().splitlines()[-1])
    pins = {line.split("==")[0]: line.split("==")[1] for line in envs.requirements(env["name"])
            if "==" in line}
    assert versions[0].split("+")[0] == pins["torch"]
    assert versions[1] == ENVS[env["name"]] == pins["diffusers"]
    assert versions[2] == pins["transformers"]


@pytest.mark.parametrize("mode", ["baseline", "cfg", "cfpg"])
def test_a_tiny_restore_job_runs_in_the_environment(env, lq_dir, embeddings, mode):
    """The tiny backbone (the environment's own diffusers classes, random init) through the
    workflow's command, with HD-CLIP's conditioning read from the file."""
    got = restore_job(env, "tiny", mode, lq_dir, embeddings, env["tmp"] / "tiny.log")
    assert got["done"]["restored"] == 2 and got["done"]["random_init"] is True
    assert got["done"]["job"]["mode"] == mode
    for stem, png in got["pngs"].items():
        assert png.shape == (128, 128, 3) and png.std() > 1, stem
        assert got["records"][stem]["size"]["output"] == [128, 128]
    if mode != "baseline":
        assert got["done"]["job"]["bridge"] == "embedding"
    assert "diffusers" in got["modules"] and "zephir.restore" in got["modules"]
    assert forbidden(got["modules"]) == []


def test_the_upstream_adapter_runs_three_modes_through_the_cli(env, lq_dir, embeddings):
    """SeeSR or PASD against its stand-in: outputs 4x the LQ image and labelled random-init;
    the pipeline gets the [negative, positive] pair as prompt_embeds / negative_prompt_embeds;
    the UNet is replaced by CFPG's wrapper in the cfpg job only; one generator serves the
    folder (seed_scope "folder", test_seesr.py 171-173 / test_pasd.py 203-205), so the modes
    of one image start from the same noise and the two images from different noise."""
    name, jobs, calls = env["name"], {}, {}
    for mode in ("baseline", "cfg", "cfpg"):
        log = env["tmp"] / f"{name}-{mode}.log"
        jobs[mode] = restore_job(env, name, mode, lq_dir, embeddings, log)
        calls[mode] = [e for e in events(log) if e["event"] == f"{name}.__call__"]
        assert forbidden(jobs[mode]["modules"]) == [], mode
        assert f"zephir.backbones.{name}" in jobs[mode]["modules"]
        assert jobs[mode]["done"]["random_init"] is True
        for stem, png in jobs[mode]["pngs"].items():
            assert png.shape == (128, 128, 3), (mode, stem)
    assert {c["unet"] for c in calls["baseline"] + calls["cfg"]} == {"UNet2DConditionModel"}
    assert {c["unet"] for c in calls["cfpg"]} == {"CFPGDenoiser"}
    for got in calls.values():
        assert len(got) == 2 and all(c["generator_type"] == "Generator" for c in got)
        assert got[0]["generator"] != got[1]["generator"]  # one stream for the folder
        for c in got:
            assert len(c["prompt_embeds"]) == len(c["negative_prompt_embeds"]) == 1
            assert c["prompt_embeds"] != c["negative_prompt_embeds"]
            assert c["steps"] == STEPS and c["image_size"] == [128, 128]
    for i in range(2):
        assert len({calls[m][i]["start_latents"][0] for m in calls}) == 1
    # cfg mixes the HD-CLIP pair into the text pair; baseline and cfpg hand over the text pair
    assert calls["cfg"][0]["prompt_embeds"] != calls["baseline"][0]["prompt_embeds"]
    assert calls["cfpg"][0]["prompt_embeds"] == calls["baseline"][0]["prompt_embeds"]
    a, b = jobs["baseline"]["pngs"], jobs["cfpg"]["pngs"]
    assert not all(np.array_equal(a[s], b[s]) for s in a)


def test_the_adapter_plumbing_against_the_stand_in(env, lq_dir):
    """``Backbone.restore`` in the environment, in-process (tests/backbones/standins/
    check_adapter.py, a pytest module run with the environment's python and pytest from
    ``<env>/tools``): rows, tiles, the wrapper installed for cfpg and removed after, CFPG's four
    predictions as one batched call per step and tile, w = 0 and ratio 0 equal to the baseline
    bit for bit, the seeds. The module's one test must pass, not skip."""
    weights = env["tmp"] / "weights.json"
    weights.write_text(json.dumps(env["weights"]))
    tools = envs.tools(env["python"].parents[1])
    variables = {**env["vars"], "PYTHONPATH": f"{REPO}:{tools}", "ZEPHIR_STANDIN": env["name"],
                 "ZEPHIR_STANDIN_WEIGHTS": str(weights),
                 "ZEPHIR_STANDIN_LQ": str(lq_dir / "chelsea.png")}
    proc = subprocess.run([str(env["python"]), "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(STANDINS / "check_adapter.py")], capture_output=True, text=True,
                          cwd=REPO, env=variables, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    summary = proc.stdout.strip().splitlines()[-1]  # "1 passed in 2.5s", "1 passed, 2 warnings ..."
    assert summary.startswith(("1 passed in", "1 passed,")) and "skipped" not in summary, summary
