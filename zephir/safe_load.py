"""Reading ``torch.save`` files someone shares as data: tensors and plain values, never code.

``torch.load(weights_only=True)`` unpickles with an allow-list (tensors, dicts, lists, tuples,
numbers, strings; torch/serialization.py and torch/_weights_only_unpickler.py): a pickled object
of any other class, whose loading could run any code (its ``__reduce__``), is refused before it
is built. :func:`safe_torch_load` turns that refusal into an error that names the file, the
object it asked for and what to do, without torch's advice to turn the check off. Imports torch
only, so that any part (the trainer, the baselines' weight readers) can use it.
"""
from __future__ import annotations

import pickle
import re
from pathlib import Path

import torch


class CheckpointError(ValueError):
    """A model folder, training state or weights file that cannot be used; the message names
    the file, what is wrong and what to do."""


def _global(exc: Exception) -> str | None:
    """The object (``module.name``) whose import torch's restricted unpickler refused, or None
    when the file failed for another reason (not a pickle, truncated, ...)."""
    # "Unsupported global: GLOBAL m.f" for an object outside the allow-list, "Trying to load
    # unsupported GLOBAL posix.system whose module posix is blocked" for a blocked module
    found = re.search(r"[Uu]nsupported (?:global: )?GLOBAL (\S+)", str(exc))
    return found.group(1) if found else None


def _first_line(exc: Exception) -> str:
    """The reason in torch's message, without its advice to turn ``weights_only`` off."""
    text = str(exc)
    found = re.search(r"WeightsUnpickler error:\s*([^\n]+)", text)
    return (found.group(1) if found else text.strip().splitlines()[0])[:300]


def safe_torch_load(path: str | Path, device="cpu", *, what: str, remedy: str):
    """``torch.load(path, weights_only=True)``: tensors and plain containers only.

    A file that holds anything else (a pickled object, whose loading could run any code) is
    refused, its code not run, with a :class:`CheckpointError` naming the file, ``what`` it
    was read as, what it holds, and ``remedy``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such {what}")
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as exc:
        if _global(exc):
            raise CheckpointError(
                f"{path}: refused ({what}): it holds a pickled Python object ({_global(exc)}), "
                "not only tensors and plain values, and loading it could run any code; zephir "
                f"never loads such a file. {remedy}") from None
        raise CheckpointError(f"{path}: not a readable {what} ({_first_line(exc)}). "
                              f"{remedy}") from None
    except Exception as exc:  # noqa: BLE001 - name the file whatever torch raised
        raise CheckpointError(f"{path}: not a readable {what} ({type(exc).__name__}: "
                              f"{_first_line(exc)}). {remedy}") from None
