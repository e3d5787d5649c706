"""The library apart from the workflow (issue 26, item 5).

``pip install zephir`` installs HD-CLIP, ``zephir predict`` / ``embed`` / ``restore`` and CFPG;
``pip install 'zephir[workflow]'`` adds what only the paper's workflow runs. The packages the
bare install must not bring, as the issue names them (Snakemake, its Slurm plugin, DVC, pyiqa,
matplotlib) and the photo sources of the embedded default (scikit-image, scikit-learn), are
written in :data:`WORKFLOW` here, not taken from zephir.extras.

The slow test installs the bare requirements of pyproject.toml into a virtual environment
without system site packages, resolved by pip as ``pip install zephir`` resolves them, once
under ``build/envs/bare-<hash>/`` (ignored by git; torch with its CUDA libraries, 6.2 GB), then
zephir itself from a copy of this checkout with ``--no-deps`` on every run. Measured on this
project's 2-core machine (2026-12-07, pip from the local index, other jobs sharing the cores):
building the environment 164 s, the test with it built 13 s.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests import envs
from tests.conftest import REPO

WORKFLOW = {"snakemake": "snakemake", "snakemake-executor-plugin-slurm":
            "snakemake_executor_plugin_slurm", "dvc": "dvc", "pyiqa": "pyiqa",
            "matplotlib": "matplotlib", "scikit-image": "skimage", "scikit-learn": "sklearn"}
"""Workflow-only distribution -> the module it installs."""


def _project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def _name(requirement: str) -> str:
    """The distribution a requirement line names (``"dvc>=3.50"`` -> ``dvc``)."""
    for i, ch in enumerate(requirement):
        if not (ch.isalnum() or ch in "-_."):
            return requirement[:i].lower().replace("_", "-")
    return requirement.lower().replace("_", "-")


def test_the_bare_requirements_leave_the_workflow_to_its_extra():
    project = _project()
    bare = {_name(r) for r in project["dependencies"]}
    extras = project["optional-dependencies"]
    workflow = {_name(r) for r in extras["workflow"]}
    assert not bare & set(WORKFLOW), f"the bare package requires {sorted(bare & set(WORKFLOW))}"
    assert set(WORKFLOW) <= workflow
    # [test] is what CI installs (.ci/run: pip install -e '.[test]'): the workflow and pytest
    assert "zephir[workflow]" in extras["test"] and "pytest" in {_name(r) for r in extras["test"]}


#: The library's entry points, used as a researcher uses them, in one process.
LIBRARY = r"""
import sys, tempfile
from pathlib import Path

import cv2
import numpy as np
import torch

from zephir import cli
from zephir.guidance import cfpg
from zephir.hdclip import HDCLIPConfig, create_model

tmp = Path(sys.argv[1])
torch.manual_seed(0)
# HD-CLIP from a config, random weights, saved as a model folder
cfg = HDCLIPConfig(**{**create_model("zephir-tiny-rn").cfg.to_dict(), "checkpoint": None})
model = create_model(cfg)
from zephir import checkpoints
folder = checkpoints.save_model(tmp / "hdclip", model, {"method": "hdclip",
                                                        "hdclip": model.cfg.to_dict()})
lq = tmp / "lq"
lq.mkdir()
rng = np.random.default_rng(0)
for i in range(2):
    cv2.imwrite(str(lq / f"im{i}.png"), rng.integers(0, 256, (48, 40, 3), dtype=np.uint8))
assert cli.main(["predict", str(lq / "im0.png"), "--checkpoint", str(folder), "--json"]) == 0
assert cli.main(["embed", "--hdclip", str(folder), "--lq", str(lq),
                 "--out", str(tmp / "emb.safetensors"), "--quiet"]) == 0
# restoration with the random-init tiny backbone, CFPG-guided by that conditioning
assert cli.main(["restore", "--config", sys.argv[2], "--lq", str(lq), "--embeddings",
                 str(tmp / "emb.safetensors"), "--mode", "cfpg", "--out", str(tmp / "sr"),
                 "--quiet"]) == 0
assert cv2.imread(str(tmp / "sr" / "im1.png")).shape[:2] == (4 * 48, 4 * 40)
# CFPG on tensors: eq. 14 with w_par = w_orth = 0 is CFG of the text branch, with both 1 the
# HD-CLIP branch's CFG (the rectified prediction is eps_h itself)
t_neg, t_pos, h_neg, h_pos = torch.randn(4, 2, 4, 8, 8, dtype=torch.float64)
s = 4.5
text = cfpg(t_neg, t_pos, h_neg, h_pos, w_par=0.0, w_orth=0.0, scale=s)
hd = cfpg(t_neg, t_pos, h_neg, h_pos, w_par=1.0, w_orth=1.0, scale=s)
assert torch.allclose(text, t_neg + s * (t_pos - t_neg))
assert torch.allclose(hd, h_neg + s * (h_pos - h_neg))
print("MODULES", " ".join(sorted({m.split(".")[0] for m in sys.modules})))
"""


def _restore_config(folder: Path) -> Path:
    """The config a restore job reads (as rule restore_config writes it): the paper-default
    config's restoration, datasets and weights sections."""
    from zephir import config as zconfig

    full = zconfig.load(REPO / "config" / "config.yaml")
    path = folder / "restore-config.yaml"
    zconfig.dump(zconfig.subset(full, "datasets", "blind_sets", "restoration", "weights"), path)
    return path


def _modules(stdout: str) -> set[str]:
    (line,) = [x for x in stdout.splitlines() if x.startswith("MODULES ")]
    return set(line.split()[1:])


def test_the_library_entry_points_import_no_workflow_package(tmp_path):
    """In the main environment (every package installed), building HD-CLIP, `zephir predict`,
    `zephir embed`, `zephir restore` and CFPG import none of the workflow's packages."""
    proc = subprocess.run([sys.executable, "-c", LIBRARY, str(tmp_path),
                           str(_restore_config(tmp_path))], capture_output=True,
                          text=True, timeout=600, cwd=tmp_path,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin",
                               "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    loaded = _modules(proc.stdout)
    assert "open_clip" in loaded and "zephir" in loaded  # the library ran
    assert not loaded & set(WORKFLOW.values()), sorted(loaded & set(WORKFLOW.values()))
    assert (tmp_path / "emb.safetensors").is_file() and (tmp_path / "sr" / "im0.png").is_file()


@pytest.fixture(scope="module")
def bare_env():
    """A virtual environment (no system site packages) holding the bare requirements of
    pyproject.toml, resolved by pip as ``pip install zephir`` resolves them (tests/envs.py:
    built once, reused while they and the Python version are unchanged). zephir itself is
    installed into it by each test run."""
    with envs.built("bare", _project()["dependencies"]) as folder:
        yield folder


@pytest.mark.slow
def test_the_bare_package_installs_and_runs_without_the_workflow(bare_env, tmp_path):
    """The bare package, installed from this checkout into a fresh environment that has its
    requirements only: pip finds nothing missing, no workflow package is there, and the
    library's entry points run; a workflow command says which extra it needs."""
    env = bare_env
    python = str(env / "bin" / "python")
    source = tmp_path / "src"  # a copy: pip's in-tree build writes build/ and egg-info
    shutil.copytree(REPO / "zephir", source / "zephir",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    pip = [python, "-m", "pip", "--disable-pip-version-check"]
    subprocess.run([*pip, "install", "-q", "--no-deps", "--force-reinstall", str(source)],
                   check=True, capture_output=True, timeout=600)
    check = subprocess.run([*pip, "check"], capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, check.stdout  # every bare requirement of zephir is there
    work = tmp_path / "work"
    work.mkdir()
    variables = {"PATH": f"{env / 'bin'}:/usr/bin:/bin", "OMP_NUM_THREADS": "1",
                 "HF_HUB_OFFLINE": "1", "HOME": str(tmp_path)}
    present = subprocess.run([python, "-c", "import importlib.util, sys; print(' '.join(m for m "
                              "in sys.argv[1:] if importlib.util.find_spec(m)))",
                              *WORKFLOW.values(), "zephir"], capture_output=True, text=True,
                             check=True, cwd=work, env=variables).stdout.split()
    assert present == ["zephir"], f"the bare install brought {present[:-1]}"
    proc = subprocess.run([python, "-c", LIBRARY, str(work), str(_restore_config(tmp_path))],
                          capture_output=True, text=True,
                          timeout=900, cwd=work, env=variables)
    assert proc.returncode == 0, proc.stderr[-3000:]
    where = subprocess.run([python, "-c", "import zephir; print(zephir.__file__)"], cwd=work,
                           env=variables, capture_output=True, text=True, check=True).stdout
    assert str(env) in where  # the installed copy ran, not this checkout
    helped = subprocess.run([str(env / "bin" / "zephir"), "--help"], capture_output=True,
                            text=True, cwd=work, env=variables)
    assert helped.returncode == 0 and "predict" in helped.stdout and "restore" in helped.stdout
    # a workflow command: the error names the extra (matplotlib draws the figures)
    fig = subprocess.run([str(env / "bin" / "zephir"), "figure", "3", "--out",
                          str(work / "f.png"), "--arrays", str(work / "none.npz"),
                          "--predictions", str(work / "none.csv"), "--metrics",
                          str(work / "none.json")],
                         capture_output=True, text=True, cwd=work, env=variables)
    assert fig.returncode == 2, fig.stderr
    assert "matplotlib" in fig.stderr and "pip install 'zephir[workflow]'" in fig.stderr


def test_a_missing_workflow_package_is_an_error_naming_the_extra(tmp_path):
    """As the bare package meets them (the packages blocked in sys.modules): `zephir figure`
    and the embedded default's photos say `pip install 'zephir[workflow]'`; the library
    modules still import."""
    code = ("import sys\n"
            "for m in ('matplotlib', 'skimage', 'sklearn', 'pyiqa'): sys.modules[m] = None\n"
            "from zephir import cli, datasets\n"
            "rc = cli.main(['figure', '3', '--out', 'f.png', '--arrays', 'a.npz', "
            "'--predictions', 'p.csv', '--metrics', 'm.json'])\n"
            "assert rc == 2, rc\n"
            "try:\n"
            "    datasets.embedded_image('astronaut')\n"
            "except ModuleNotFoundError as exc:\n"
            "    print(exc)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=tmp_path, timeout=300,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    (figure,) = proc.stderr.splitlines()
    assert figure.startswith("zephir figure: error: matplotlib") and \
        figure.endswith("pip install 'zephir[workflow]'")
    assert proc.stdout.startswith("skimage") and "pip install 'zephir[workflow]'" in proc.stdout
