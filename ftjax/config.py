"""Experiment config files: Python files whose `get_config(variant)` returns a locked ConfigDict.

Each block's defaults live next to the code that reads it (`ftjax.models.config`, `ftjax.data.config`,
`ftjax.peft.config`, `ftjax.train.config`, `ftjax.train.checkpoints`, `ftjax.sharding`, `ftjax.eval.config`);
a file in configs/ composes them and sets what its experiment changes.
"""

from __future__ import annotations

import importlib.util
import math
import os
from pathlib import Path
from typing import Any

import ml_collections


def load_config_file(path: str | os.PathLike, variant: str | None = None) -> ml_collections.ConfigDict:
    """`get_config(variant)` of a config file (what --config=PATH[:variant] does on the command line)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such config file: {path}")
    spec = importlib.util.spec_from_file_location(f"ftjax_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(variant) if variant else module.get_config()


def at_least(block: ml_collections.ConfigDict, name: str, minimum: float, *keys: str) -> None:
    """A one-line ValueError unless every `block[key]` is a finite number >= minimum (`name` prefixes the key)."""
    for key in keys:
        value = block[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or value < minimum:
            raise ValueError(f"{name}.{key}={value!r}: must be a number >= {minimum:g}")


def one_of(block: ml_collections.ConfigDict, name: str, key: str, choices: tuple[str, ...]) -> None:
    if block[key] not in choices:
        raise ValueError(f"{name}.{key}={block[key]!r}: choose from {', '.join(choices)}")


def set_dotted(config: ml_collections.ConfigDict, key: str, value: Any) -> None:
    """config["a.b.c"] = value for a dotted key, through the nested blocks."""
    *parents, leaf = key.split(".")
    node = config
    for p in parents:
        node = node[p]
    node[leaf] = value
