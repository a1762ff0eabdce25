"""`apply_peft`: add a named adapter to a model (or rebuild one from its AdapterSpec); target matching by name
pattern; the trainable filter. Only the model's declared hook points are used (ftjax/models/hooks.py)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
import ml_collections
from flax import nnx

from ftjax.models.heads import HeadParam
from ftjax.models.layers import Linear
from ftjax.peft import prompt as P
from ftjax.peft.config import peft_config, target_patterns, validate
from ftjax.peft.ia3 import IA3
from ftjax.peft.layer import AdaptedLinear
from ftjax.peft.lora import LoRA
from ftjax.peft.state import AdapterSpec, adapter_names, set_adapter, use_adapter

def apply_peft(model: nnx.Module, cfg: Any, rngs: nnx.Rngs | None = None) -> nnx.Module:
    """Add adapter `cfg.name` (method `cfg.method`) to `model` in place, make it active, and return the model.

    `cfg` is the `peft` ConfigDict (or a dict of overrides). Full fine-tuning adds nothing: `trainable_filter`
    decides what trains.
    """
    cfg = cfg if isinstance(cfg, ml_collections.ConfigDict) else peft_config(cfg)
    validate(cfg)
    rngs = rngs if rngs is not None else nnx.Rngs(0)
    if cfg.method == "full":
        return model
    if cfg.name in adapter_names(model):
        raise ValueError(f"model already has an adapter named {cfg.name!r}; set peft.name to another name")
    dtype = jnp.dtype(cfg.dtype)
    spec = AdapterSpec(name=cfg.name, method=cfg.method, dtype=cfg.dtype)
    if cfg.method in ("lora", "dora", "ia3"):
        layout = model.layout
        # (IA)3 paper: rescale keys, values and the feed-forward input
        default = "all-linear" if cfg.method != "ia3" else ",".join(layout.key_value + layout.feedforward_out)
        targets = find_targets(model, cfg.targets or default)
        feedforward = ()
        if cfg.method == "ia3":
            ff = target_patterns(cfg.feedforward) or list(layout.feedforward_out)
            feedforward = tuple(t for t in targets if _matches(t, ff))
        for path in targets:
            layer = _module(model, path)
            if not isinstance(layer, AdaptedLinear):
                layer = AdaptedLinear(layer)
                _replace(model, path, layer)
            if cfg.method == "ia3":
                layer.adapters[cfg.name] = IA3(layer, feedforward=path in feedforward, dtype=dtype)
            else:
                layer.adapters[cfg.name] = LoRA(layer, rank=cfg.rank, alpha=cfg.alpha, rslora=cfg.rslora,
                                                dropout=cfg.dropout, dora=cfg.method == "dora", init=cfg.init,
                                                dtype=dtype, rngs=rngs)
        spec = dataclasses.replace(spec, targets=tuple(targets), feedforward=feedforward)
        if cfg.method != "ia3":
            spec = dataclasses.replace(spec, rank=int(cfg.rank), alpha=float(cfg.alpha), dropout=float(cfg.dropout),
                                       rslora=bool(cfg.rslora), init=cfg.init)
    else:
        n = int(cfg.num_virtual_tokens)
        with use_adapter(model, None):  # virtual tokens are initialised from the base model alone
            ids = _init_ids(cfg, n)
            if cfg.method == "prompt":
                values = P.vocab_prompt(model, ids, dtype) if ids else P.random_prompt(model, n, dtype, rngs)
                P.add_prompt(model, cfg.name, values)
            else:
                kv = P.vocab_prefix(model, ids, dtype) if ids else P.random_prefix(model, n, dtype, rngs)
                P.add_prefix(model, cfg.name, *kv)
        spec = dataclasses.replace(spec, num_virtual_tokens=n)
    spec = dataclasses.replace(spec, unfrozen=unfrozen_params(model, cfg))
    model.adapter_specs = (*getattr(model, "adapter_specs", ()), spec)
    set_adapter(model, cfg.name)
    return model


def unfrozen_params(model: nnx.Module, cfg: ml_collections.ConfigDict) -> tuple[str, ...]:
    """Paths of the base parameters `cfg.unfreeze` trains too: they are saved with the adapter."""
    trainable = trainable_filter(cfg)
    return tuple(".".join(map(str, p)) for p, v in nnx.to_flat_state(nnx.state(model, nnx.Param))
                 if "adapters" not in p and trainable(p, v))


def _init_ids(cfg: ml_collections.ConfigDict, n: int) -> list[int]:
    """Token ids of `init_text`, repeated or cut to n (PEFT's TEXT init); [] without a text."""
    if not cfg.init_text:
        return []
    if not cfg.tokenizer:
        raise ValueError("peft.init_text needs peft.tokenizer (a tokenizer folder or hub id)")
    from transformers import AutoTokenizer

    ids = AutoTokenizer.from_pretrained(cfg.tokenizer)(cfg.init_text, add_special_tokens=False)["input_ids"]
    if not ids:
        raise ValueError(f"peft.init_text {cfg.init_text!r} tokenizes to nothing")
    return (ids * -(-n // len(ids)))[:n]


def linear_layers(model: nnx.Module) -> list[str]:
    """Dotted paths of every linear layer, in model order."""
    return [".".join(map(str, p)) for p, m in nnx.iter_modules(model) if isinstance(m, Linear)]


def find_targets(model: nnx.Module, targets: str) -> list[str]:
    """Resolve a targets string (see config.py) to linear-layer paths; a pattern matching nothing is an error."""
    layers = linear_layers(model)
    if targets == "all-linear":
        return [p for p in layers if p != model.layout.head]
    found = set()
    for pattern in target_patterns(targets):
        hits = [p for p in layers if _matches(p, [pattern])]
        if not hits:
            raise ValueError(f"peft.targets pattern {pattern!r} matches no linear layer "
                             f"(they are named like {layers[0]}, {layers[-1]})")
        found.update(hits)
    return [p for p in layers if p in found]


def _matches(path: str, patterns: list[str]) -> bool:
    for pattern in patterns:
        if pattern.startswith("re:"):
            if re.fullmatch(pattern[3:], path):
                return True
        elif path == pattern or path.endswith("." + pattern):
            return True
    return False


def _module(model: nnx.Module, path: str) -> Any:
    node = model
    for part in path.split("."):
        node = node[int(part)] if part.isdigit() else getattr(node, part)
    return node


def _replace(model: nnx.Module, path: str, new: nnx.Module) -> None:
    parent_path, _, last = path.rpartition(".")
    parent = _module(model, parent_path) if parent_path else model
    if last.isdigit():
        parent[int(last)] = new
    else:
        setattr(parent, last, new)


def trainable_filter(cfg: Any) -> Callable[[tuple[Any, ...], Any], bool]:
    """An nnx filter for the trainable state: adapter `cfg.name`'s weights (`full`: every Param) and any task
    head, plus Params whose path matches `cfg.unfreeze`, minus those (heads too) matching `cfg.freeze`. Use it
    for both the optimizer (`nnx.Optimizer(model, tx, wrt=f)`) and the gradient split (`nnx.split(model, f,
    ...)`)."""
    cfg = cfg if isinstance(cfg, ml_collections.ConfigDict) else peft_config(cfg)
    freeze = re.compile(cfg.freeze) if cfg.freeze else None
    unfreeze = re.compile(cfg.unfreeze) if cfg.unfreeze else None

    def trainable(path: tuple[Any, ...], var: Any) -> bool:
        if not isinstance(var, nnx.Param):
            return False
        key = ".".join(map(str, path))
        if freeze is not None and freeze.search(key):
            return False
        if isinstance(var, HeadParam):  # a task head trains with any method, unless frozen
            return True
        if cfg.method == "full" or (unfreeze is not None and unfreeze.search(key)):
            return True
        return isinstance(var, nnx.LoRAParam) and _in_adapter(path, cfg.name)

    return trainable


def _in_adapter(path: tuple[Any, ...], name: str) -> bool:
    return any(a == "adapters" and b == name for a, b in zip(path, path[1:]))


def add_adapter(model: nnx.Module, spec: AdapterSpec, rngs: nnx.Rngs | None = None) -> None:
    """Create (randomly initialised) adapter structure matching `spec`; weights are filled in afterwards."""
    layers = set(linear_layers(model))
    missing = [t for t in spec.targets if t not in layers]
    if missing:
        raise ValueError(f"adapter {spec.name!r} targets {missing[0]}, which this model does not have")
    overrides = {"method": spec.method, "name": spec.name, "dtype": spec.dtype,
                 "unfreeze": "^(?:" + "|".join(re.escape(p) for p in spec.unfrozen) + ")$" if spec.unfrozen else ""}
    if spec.targets:
        overrides["targets"] = _exactly(spec.targets)
    if spec.method == "ia3":
        overrides["feedforward"] = _exactly(spec.feedforward)
    elif spec.method in ("lora", "dora"):
        overrides.update(rank=spec.rank, alpha=spec.alpha, dropout=spec.dropout, rslora=spec.rslora, init=spec.init)
    else:
        overrides["num_virtual_tokens"] = spec.num_virtual_tokens
    apply_peft(model, peft_config(overrides), rngs)


def _exactly(paths: tuple[str, ...]) -> str:
    """A targets pattern matching exactly these module paths."""
    return "re:" + ("|".join(re.escape(p) for p in paths) or "(?!)")
