"""What the bare package leaves to its ``[workflow]`` extra, and the error that says so.

``pip install zephir`` installs the library: HD-CLIP, ``zephir predict``, ``zephir embed``,
``zephir restore`` and CFPG. ``pip install 'zephir[workflow]'`` adds what only the paper's
workflow runs (pyproject.toml lists the releases). A workflow-only package is imported inside
the function that needs it, never at a library module's import, so that its absence shows only
when that function runs: :func:`require` (or, for the CLI, :func:`missing` on the exception)
then names the extra instead of a bare ``No module named ...``.
"""
from __future__ import annotations

import importlib
from types import ModuleType

INSTALL = "pip install 'zephir[workflow]'"

#: The modules of the workflow extra's packages -> what zephir runs them for.
WORKFLOW = {
    "snakemake": "the workflow",
    "snakemake_executor_plugin_slurm": "the workflow's Slurm executor",
    "dvc": "the DVC stages",
    "pyiqa": "the image-quality metrics, `zephir score`",
    "icecream": "pyiqa's Q-Align, which imports it without declaring it",
    "matplotlib": "the figures, `zephir figure`",
    "skimage": "the photos of the embedded default",
    "sklearn": "the photos of the embedded default and figure 3's PCA",
}


def missing(exc: ImportError) -> str | None:
    """The message for ``exc`` when it is a workflow-only package that is not installed
    (``None`` for any other import error)."""
    root = (getattr(exc, "name", None) or "").split(".")[0]
    if root not in WORKFLOW:
        return None
    return (f"{root} ({WORKFLOW[root]}) is not installed: it comes with zephir's workflow "
            f"extra, {INSTALL}")


def require(name: str) -> ModuleType:
    """``importlib.import_module(name)`` of a workflow-only module; its absence is a
    ModuleNotFoundError naming the extra."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        message = missing(exc)
        if message is None:
            raise
        raise ModuleNotFoundError(message, name=exc.name) from exc
