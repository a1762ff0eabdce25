"""Device mesh over (`data`, `fsdp`, `tensor`) and logical-axis rules that place every parameter on it.

Parameters carry logical axis names (layers.py: `embed`, `mlp`, `heads`, `kv`, `vocab`, and `lora` for
adapter ranks). A rules preset maps each name to a mesh axis; a dimension that the mesh axis does not divide
stays replicated, so odd test shapes and tiny adapters still run on any mesh.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
from flax import nnx
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

AXES = ("data", "fsdp", "tensor")
RULES: dict[str, dict[str, str | None]] = {
    "replicated": {},
    # FSDP: shard every weight along the model width; gathered per layer by XLA when used
    "fsdp": {"embed": "fsdp"},
    # tensor parallel (Megatron-style): heads and feed-forward width split, vocabulary split
    "tensor": {"heads": "tensor", "kv": "tensor", "mlp": "tensor", "vocab": "tensor"},
    "fsdp_tensor": {"embed": "fsdp", "heads": "tensor", "kv": "tensor", "mlp": "tensor", "vocab": "tensor"},
}
BATCH_AXES = ("data", "fsdp")


def default_config() -> ml_collections.ConfigDict:
    """The `mesh` block of an experiment config: its shape over (data, fsdp, tensor), -1 taking the remaining
    devices, and the name of a RULES preset."""
    return ml_collections.ConfigDict(dict(shape=(-1, 1, 1), rules="fsdp"))


def make_mesh(shape: Sequence[int], devices: Sequence[Any] | None = None) -> Mesh:
    """A mesh of `shape` over (data, fsdp, tensor); one -1 entry takes the remaining devices."""
    devices = list(jax.devices() if devices is None else devices)
    shape = list(shape)
    if len(shape) != 3 or shape.count(-1) > 1 or any(s == 0 or s < -1 for s in shape):
        raise ValueError(f"mesh.shape must be 3 positive sizes over {AXES} (one may be -1), got {tuple(shape)}")
    known = int(np.prod([s for s in shape if s != -1]))
    if -1 in shape:
        if len(devices) % known:
            raise ValueError(f"mesh.shape {tuple(shape)} does not divide {len(devices)} devices")
        shape[shape.index(-1)] = len(devices) // known
    need = int(np.prod(shape))
    if need > len(devices):
        raise ValueError(f"mesh.shape {tuple(shape)} needs {need} devices, have {len(devices)}")
    return jax.make_mesh(tuple(shape), AXES, axis_types=(AxisType.Auto,) * 3, devices=devices[:need])


def logical_spec(names: Sequence[str | None] | None, shape: Sequence[int], mesh: Mesh,
                 rules: dict[str, str | None]) -> P:
    """The mesh PartitionSpec for one array from its logical axis names."""
    if not names:
        return P()
    axes = []
    for name, dim in zip(names, shape):
        axis = rules.get(name) if name else None
        axes.append(axis if axis and axis not in axes and dim % mesh.shape[axis] == 0 else None)
    return P(*axes)


def state_shardings(state: nnx.State, mesh: Mesh, rules: dict[str, str | None] | str) -> Any:
    """A NamedSharding per Variable of `state` (same tree structure), from its `out_sharding` metadata."""
    rules = RULES[rules] if isinstance(rules, str) else rules

    def place(shape, names):
        return NamedSharding(mesh, logical_spec(names, shape, mesh, rules))

    def one(v):
        names = v.get_metadata().get("out_sharding") if isinstance(v, nnx.Variable) else None
        value = v.get_value() if isinstance(v, nnx.Variable) else None
        if hasattr(value, "per_leaf"):  # a quantised kernel (models/quantize.py): codes and scales each placed
            return v.replace(value.per_leaf(lambda leaf, n: place(leaf.shape, n), tuple(names or (None, None))))
        return place(v.shape if hasattr(v, "shape") else (), names)

    return jax.tree.map(one, state, is_leaf=lambda x: isinstance(x, nnx.Variable))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Batches split along their first axis over data x fsdp."""
    return NamedSharding(mesh, P(BATCH_AXES))


def put_batch(batch: dict[str, Any], shardings: dict[str, NamedSharding]) -> dict[str, jax.Array]:
    """Host arrays onto the mesh. With several processes each passes only its own rows of batch-sharded arrays
    (and the whole of replicated ones), which become one global array."""
    if jax.process_count() > 1:
        return jax.make_array_from_process_local_data(shardings, batch)
    return jax.device_put(batch, shardings)


def check_rules(name: str) -> dict[str, str | None]:
    if name not in RULES:
        raise ValueError(f"unknown mesh.rules {name!r}; choose from: {', '.join(RULES)}")
    return RULES[name]
