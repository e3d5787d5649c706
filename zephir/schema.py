"""The config schema: the one description of every key, and the one source of every default.

``zephir/schemas/config.schema.yaml`` (also ``workflow/schemas/``, which Snakemake validates
against) describes each key and gives its default. The settings dataclasses
(:class:`~zephir.degrade.synth.SynthSpec`, :class:`~zephir.training.loop.TrainConfig`) take
their defaults from here, through :func:`default`, so that a default is written once. HD-CLIP's
model settings are the exception: their defaults live with the model
(:class:`~zephir.hdclip.config.HDCLIPConfig`), and :func:`zephir.config.check` fills them.
"""
from __future__ import annotations

import copy
from functools import cache
from importlib import resources
from typing import Any

import yaml


@cache
def schema() -> dict:
    """The parsed config schema."""
    text = resources.files("zephir").joinpath("schemas/config.schema.yaml").read_text()
    return yaml.safe_load(text)


def node(path: str) -> dict:
    """The schema of the key at dotted ``path`` (``"hdclip.train.steps"``)."""
    here = schema()
    for part in path.split("."):
        props = here.get("properties", {})
        if part not in props:
            raise KeyError(f"config schema has no key {path!r} (no {part!r})")
        here = props[part]
    return here


def default(path: str) -> Any:
    """The schema's default of the key at dotted ``path``; lists become tuples (dataclass
    fields must not share a mutable default)."""
    sub = node(path)
    if "default" not in sub:
        raise KeyError(f"config schema key {path!r} has no default")
    value = copy.deepcopy(sub["default"])
    return tuple(value) if isinstance(value, list) else value


def keys(path: str) -> list[str]:
    """The keys of the object at dotted ``path``."""
    return list(node(path).get("properties", {}))
