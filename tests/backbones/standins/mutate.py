"""mutmut on the SeeSR or PASD adapter, inside that backbone's pinned environment (issue 29;
docs/mutation.md). Run with the project's Python from the repository root::

    .venv/bin/python tests/backbones/standins/mutate.py seesr run --max-children 2
    .venv/bin/python tests/backbones/standins/mutate.py seesr results
    .venv/bin/python tests/backbones/standins/mutate.py pasd show NAME

The adapters import the pinned diffusers (0.21.0, 0.29.2), so their mutants can only be tested
in ``build/envs/<name>-*`` (tests/envs.py; built here if missing), and mutmut's mutant switch
reaches only its own process: mutmut runs with the environment's python, from ``<env>/tools``
(pytest, pytest-timeout and the ``mutation`` extra's mutmut, outside the environment's pins),
on tests/backbones/standins/check_adapter.py, in-process. Its working folder is
``build/mutmut/<name>/``: a copy of zephir/, tests/, config/ and workflow/envs/ with a
pyproject.toml whose ``[tool.mutmut]`` is the project's, narrowed to ``zephir/backbones/
<name>.py`` and that test. The stand-in weights (make_weights.py, random init) and the 32 px LQ
image are written there once. The arguments after the name go to ``mutmut`` as they are.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import cv2

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))

from tests import envs
from zephir import datasets
from zephir import io as zio

BACKBONES = ("seesr", "pasd")
COPIED = ("zephir", "tests", "config", "workflow/envs")


def pyproject(name: str) -> str:
    """The working folder's pyproject.toml: the project's ``[tool.mutmut]`` narrowed to one
    adapter and its in-environment test."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["mutmut"]
    lines = ['[tool.pytest.ini_options]', 'addopts = "-ra"', "", "[tool.mutmut]",
             'source_paths = ["zephir"]',
             f'only_mutate = ["zephir/backbones/{name}.py"]',
             'pytest_add_cli_args_test_selection = ["tests/backbones/standins/check_adapter.py"]',
             f"also_copy = {json.dumps(project['also_copy'])}",
             f"pytest_add_cli_args = {json.dumps(project['pytest_add_cli_args'])}",
             f"process_isolation = {json.dumps(project['process_isolation'])}"]
    return "\n".join(lines) + "\n"


def prepare(name: str) -> tuple[Path, Path, dict]:
    """The environment's python, the working folder and the variables of a run."""
    env = envs.build(name, envs.requirements(name))
    extra = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]["mutation"]
    tools = envs.tools(env, tuple(extra))
    work = REPO / "build" / "mutmut" / name
    for part in COPIED:
        shutil.copytree(REPO / part, work / part, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__"))
    (work / "pyproject.toml").write_text(pyproject(name))
    standin = work / "standin"
    variables = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tools), "OMP_NUM_THREADS": "1",
                 "HOME": os.environ.get("HOME", str(work)), "HF_HOME": str(standin / "hf-home"),
                 "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(standin / "weights" / "hf-hub"),
                 "ZEPHIR_STANDIN": name, "ZEPHIR_STANDIN_WEIGHTS": str(standin / "weights.json"),
                 "ZEPHIR_STANDIN_LQ": str(standin / "chelsea.png")}
    python = env / "bin" / "python"
    if not (standin / "weights.json").is_file():
        proc = subprocess.run([str(python), str(REPO / "tests" / "backbones" / "standins" /
                                                "make_weights.py"), name, str(standin / "weights")],
                              capture_output=True, text=True, check=False, timeout=600,
                              env={**variables, "PYTHONPATH": str(REPO)})
        if proc.returncode != 0:
            raise SystemExit(f"make_weights.py {name} failed:\n{proc.stderr[-3000:]}")
        lq = cv2.resize(datasets.embedded_image("chelsea"), (32, 32), interpolation=cv2.INTER_AREA)
        zio.write_png(standin / "chelsea.png", lq)
        (standin / "weights.json").write_text(proc.stdout.strip().splitlines()[-1])
    return python, work, variables


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in BACKBONES:
        raise SystemExit(f"usage: mutate.py {{{','.join(BACKBONES)}}} MUTMUT-ARGS...")
    python, work, variables = prepare(argv[0])
    return subprocess.run([str(python), "-m", "mutmut", *argv[1:]], cwd=work, env=variables,
                          check=False).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
