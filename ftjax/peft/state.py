"""Adapter state on a model: named adapters (which exist, which is active, switching at call time) and the
tensors an adapter owns, read and written by key.

Keys are module paths with `adapters.<name>` dropped (e.g. `model.layers.0.self_attn.q_proj.lora_a`), so an
adapter's tensors fit under any name; the base parameters it unfroze (peft.unfreeze) are keyed by their path.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator

from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import nnx

from ftjax.peft.layer import AdaptedLinear, LoRAInit
from ftjax.peft.prompt import PrefixKV, VirtualTokens


@dataclasses.dataclass(frozen=True)
class AdapterSpec:
    """What an adapter is, with targets resolved to module paths: saved as its metadata, hashable (static)."""

    name: str
    method: str
    targets: tuple[str, ...] = ()
    feedforward: tuple[str, ...] = ()  # (IA)3 layers whose input is scaled
    rank: int = 0
    alpha: float = 0.0
    dropout: float = 0.0
    rslora: bool = False
    init: str = ""
    num_virtual_tokens: int = 0
    dtype: str = "float32"
    unfrozen: tuple[str, ...] = ()  # base parameters trained too (peft.unfreeze), saved with the adapter


def adapter_hosts(model: nnx.Module) -> Iterator[nnx.Module]:
    """Modules that hold named adapters (adapted linears, the virtual-token and prefix hooks)."""
    for _, m in nnx.iter_modules(model):
        if isinstance(m, (AdaptedLinear, VirtualTokens, PrefixKV)):
            yield m


def adapter_names(model: nnx.Module) -> list[str]:
    return [s.name for s in getattr(model, "adapter_specs", ())]


def adapter_spec(model: nnx.Module, name: str) -> AdapterSpec:
    for s in getattr(model, "adapter_specs", ()):
        if s.name == name:
            return s
    raise ValueError(f"no adapter named {name!r}; the model has: {', '.join(adapter_names(model)) or 'none'}")


def active_adapter(model: nnx.Module) -> str | None:
    return next((m.active for m in adapter_hosts(model) if m.active is not None), None)


def set_adapter(model: nnx.Module, name: str | None) -> None:
    """Make adapter `name` the one every call uses (None: the plain base model). No weights are copied."""
    if name is not None:
        adapter_spec(model, name)
    hosts = list(adapter_hosts(model))
    if any(getattr(m, "merged", None) is not None for m in hosts):
        raise ValueError("an adapter is merged into the base weights; unmerge it before switching adapters")
    for m in hosts:
        m.active = name if name is not None and name in m.adapters else None


@contextlib.contextmanager
def use_adapter(model: nnx.Module, name: str | None) -> Iterator[nnx.Module]:
    """`with use_adapter(model, 'b'): model(ids)` runs adapter b, then restores the previous one."""
    previous = active_adapter(model)
    set_adapter(model, name)
    try:
        yield model
    finally:
        set_adapter(model, previous)


def saved_variables(model: nnx.Module, name: str) -> dict[str, tuple[tuple[Any, ...], nnx.Variable]]:
    """What an adapter file holds, keyed by path with `adapters.<name>` dropped: the adapter's variables
    (trained and frozen ones) and the base parameters it unfroze."""
    unfrozen = set(adapter_spec(model, name).unfrozen)
    out = {}
    for path, var in nnx.to_flat_state(nnx.state(model, nnx.Any(nnx.Param, LoRAInit))):
        parts = [str(p) for p in path]
        if ".".join(parts) in unfrozen:
            out[".".join(parts)] = (path, var)
        for i in range(len(parts) - 1):
            if parts[i] == "adapters" and parts[i + 1] == name:
                out[".".join(parts[:i] + parts[i + 2:])] = (path, var)
    return out


def adapter_state(model: nnx.Module, name: str) -> dict[str, Any]:
    """The tensors an adapter file holds, by key (see `saved_variables`)."""
    return {k: var[...] for k, (_, var) in saved_variables(model, name).items()}


def set_adapter_state(model: nnx.Module, name: str, tensors: Mapping[str, Any], source: str) -> None:
    """Fill adapter `name` (and the base parameters it unfroze, shared by all adapters) from `tensors`; every
    key must be used and every shape equal."""
    current = saved_variables(model, name)
    missing = sorted(set(current) - set(tensors))
    unused = sorted(set(tensors) - set(current))
    if missing or unused:
        what = f"has no tensor {missing[0]}" if missing else f"tensor {unused[0]} fits nowhere in the model"
        raise ValueError(f"adapter {source} {what}")
    flat = []
    for key, (path, var) in current.items():
        value = np.asarray(tensors[key])
        if value.shape != tuple(var.shape):
            raise ValueError(f"adapter {source} does not fit this base model: {key} has shape {value.shape}, "
                             f"the model expects {tuple(var.shape)}")
        flat.append((path, var.replace(jnp.asarray(value, var.dtype))))
    nnx.update(model, nnx.from_flat_state(flat))


def adapter_arrays(model: nnx.Module, name: str | None = None) -> tuple[AdapterSpec, dict[str, np.ndarray]]:
    """(spec, numpy tensors by key) of adapter `name` (default: the active one), what adapter files hold."""
    name = name or active_adapter(model)
    if name is None:
        raise ValueError("the model has no active adapter to save or export")
    return adapter_spec(model, name), {k: to_numpy(v) for k, v in adapter_state(model, name).items()}


def to_numpy(x: Any) -> np.ndarray:
    a = np.asarray(x)
    return a.astype(np.float32) if a.dtype == jnp.bfloat16 else a  # numpy safetensors has no bfloat16
