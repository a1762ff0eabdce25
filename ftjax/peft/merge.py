"""Merging adapters into the base weights: in place (`merge`/`unmerge`) or as a plain copy (`merged_model`)."""

from __future__ import annotations

from flax import nnx

from ftjax.models.heads import RegressionHead, add_head
from ftjax.models.loading import build
from ftjax.peft.layer import AdaptedLinear
from ftjax.peft.state import active_adapter, adapter_hosts, adapter_spec


def merge(model: nnx.Module) -> None:
    """Fold the active LoRA/DoRA/(IA)3 adapter into the base weights in place (undo with `unmerge`)."""
    name = active_adapter(model)
    if name is None:
        raise ValueError("no active adapter to merge")
    if adapter_spec(model, name).method in ("prompt", "prefix"):
        raise ValueError(f"{adapter_spec(model, name).method} tuning adds virtual tokens; it cannot be merged "
                         "into the weights (export it with --format=peft)")
    for m in adapter_hosts(model):
        if isinstance(m, AdaptedLinear):
            m.merge()


def unmerge(model: nnx.Module) -> None:
    for m in adapter_hosts(model):
        if isinstance(m, AdaptedLinear):
            m.unmerge()


def merged_model(model: nnx.Module, name: str | None = None) -> nnx.Module:
    """A plain model (no adapter modules) whose weights have adapter `name` (default: active) merged in;
    `model` is left unchanged. This is what `export --format=merged` saves."""
    name = name or active_adapter(model)
    spec = adapter_spec(model, name) if name else None
    if spec is not None and spec.method in ("prompt", "prefix"):
        raise ValueError(f"{spec.method} tuning adds virtual tokens; it cannot be merged into a plain model "
                         "(export it with --format=peft)")
    if any(getattr(m, "merged", None) is not None for m in adapter_hosts(model)):
        raise ValueError("unmerge the model before building a merged copy")
    params = {}
    for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        if "adapters" not in map(str, path):
            params[path] = var
    if spec is not None:
        for path, m in nnx.iter_modules(model):
            if isinstance(m, AdaptedLinear) and name in m.adapters:
                kernel, bias = m.adapters[name].merged(m)
                params[(*path, "kernel")] = m.kernel.replace(kernel.astype(m.kernel.dtype))
                if m.bias is not None:
                    params[(*path, "bias")] = m.bias.replace(bias.astype(m.bias.dtype))
    dtype = model.dtype
    heads = {name: (None if isinstance(head, RegressionHead) else head.labels, head.pooling)
             for name, head in (model.heads.items() if model.heads is not None else ())}

    def plain():  # the base model's structure, with the same task heads
        base = build(model.config, dtype)
        for head, (classes, pooling) in heads.items():
            add_head(base, classes, name=head, pooling=pooling)
        return base

    graphdef, abstract, rest = nnx.split(nnx.eval_shape(plain), nnx.Param, ...)
    expected = {p for p, _ in nnx.to_flat_state(abstract)}
    if expected != set(params):
        raise ValueError(f"merged parameters do not match the base model: {sorted(expected ^ set(params))[:3]}")
    return nnx.merge(graphdef, nnx.from_flat_state(params), rest)
