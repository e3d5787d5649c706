"""Virtual environments the slow tests build: the bare install (tests/test_install.py) and the
pinned backbone environments (tests/test_backbone_envs.py).

Each is built once under ``build/envs/<name>-<hash>/`` (ignored by git), the hash taken over the
Python version and the requirement lines, and reused while both are unchanged; a complete build
is marked by ``zephir-env.json``. torch's wheels from PyPI bring their CUDA libraries, so each
environment takes several GB (:data:`SIZES`). CI (``.ci/run``) sets ``ZEPHIR_TEST_DROP_ENVS=1``:
a test module then removes the environment it built when its tests are done, so that a run holds
one of them at a time besides the project's own ``.venv``, not all three.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

from tests.conftest import REPO

BUILD = REPO / "build" / "envs"
SIZES = {"bare": 6.2, "seesr": 4.7, "pasd": 5.4}
"""GB on disk, measured with ``du -sh build/envs/*`` on this project's machine (2026-12-07)."""
SPARE = 2.0
"""GB more that pip needs while it unpacks (torch's wheel alone is 620-800 MB compressed)."""


def requirements(backbone: str) -> list[str]:
    """The pip list of ``workflow/envs/<backbone>.yaml`` without its index options (the tests
    use PyPI only, whose torch 2.0.1 is the CUDA 11.7 build)."""
    env = yaml.safe_load((REPO / "workflow" / "envs" / f"{backbone}.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    return [line for line in pip if not line.startswith("-")]


def folder(name: str, requirements: list[str]) -> Path:
    """Where the environment of these requirements lives, built or not."""
    key = hashlib.sha1(json.dumps([platform.python_version(), requirements]).encode())
    return BUILD / f"{name}-{key.hexdigest()[:12]}"


def build(name: str, requirements: list[str]) -> Path:
    """The environment's folder, built unless a complete one with the same pins exists. A build
    that fails is removed, so that a full disk is not left full."""
    target = folder(name, requirements)
    done = target / "zephir-env.json"
    if done.is_file():
        return target
    for old in BUILD.glob(f"{name}-*"):
        shutil.rmtree(old)
    BUILD.mkdir(parents=True, exist_ok=True)
    need = SIZES.get(name, 6.0) + SPARE
    free = shutil.disk_usage(BUILD).free / 1e9
    assert free >= need, (f"building the {name} environment in {BUILD} needs about {need:.1f} GB "
                          f"of disk; {free:.1f} GB are free there")
    try:
        subprocess.run([sys.executable, "-m", "venv", str(target)], check=True, timeout=300)
        (target / "requirements.txt").write_text("\n".join(requirements) + "\n")
        proc = subprocess.run([str(target / "bin" / "python"), "-m", "pip", "install", "-q",
                               "--disable-pip-version-check", "-r",
                               str(target / "requirements.txt")],
                              capture_output=True, text=True, timeout=1800, check=False)
        assert proc.returncode == 0, f"building {name}'s environment failed:\n{proc.stderr[-4000:]}"
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
    done.write_text(json.dumps({"requirements": requirements, "python": platform.python_version()}))
    return target


def dropping() -> bool:
    """Whether environments are removed after their tests (``ZEPHIR_TEST_DROP_ENVS=1``)."""
    return os.environ.get("ZEPHIR_TEST_DROP_ENVS") == "1"


@contextmanager
def built(name: str, requirements: list[str]) -> Iterator[Path]:
    """The environment for the duration of a fixture; removed afterwards if :func:`dropping`."""
    target = build(name, requirements)
    try:
        yield target
    finally:
        if dropping():
            shutil.rmtree(target, ignore_errors=True)


TOOLS = ("pytest", "pytest-timeout")
"""What a test needs inside an environment (the in-process adapter check): kept out of the
environment itself, which holds its pins only, in ``<env>/tools/``."""


def tools(env: Path, extra: tuple[str, ...] = ()) -> Path:
    """``<env>/tools``, a folder for PYTHONPATH holding :data:`TOOLS` (and ``extra``, such as
    mutmut), installed by the environment's own pip; reused while the list is unchanged."""
    target = env / "tools"
    wanted = sorted(TOOLS + extra)
    done = target / "zephir-tools.json"
    if done.is_file() and json.loads(done.read_text()) == wanted:
        return target
    shutil.rmtree(target, ignore_errors=True)
    proc = subprocess.run([str(env / "bin" / "python"), "-m", "pip", "install", "-q",
                           "--disable-pip-version-check", "--target", str(target), *wanted],
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, f"installing {wanted} into {target} failed:\n{proc.stderr[-3000:]}"
    done.write_text(json.dumps(wanted))
    return target
