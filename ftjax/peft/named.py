"""Named adapters on one base model: which exist, which is active, switching between them at call time."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator

from flax import nnx

from ftjax.peft.layer import AdaptedLinear
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
