"""Scanned layers (`model.scan_layers`): the blocks' variables stacked along a leading `layers` axis and run by
one `jax.lax.scan`, so XLA compiles one block instead of one per layer and compile time stays flat with depth.

The stacked form exists only while a run trains (train/setup.py stacks after the adapter and heads are added;
restore stacks to read a checkpoint, then unstacks). Every other tool (checkpoint conversion, adapter files,
merging, export, beam search) sees the unrolled `nnx.List` of blocks, whose parameter paths carry the layer
index like transformers' names. Per-layer differences that are not weights (Gemma 3's local/global rotary
frequencies and sliding windows) are passed into the scan as data, so every block has the same structure.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from ftjax.models.remat import REMAT_POLICIES

Array = jax.Array
AXIS = "layers"  # logical name of the stacked axis; no sharding rule maps it, so it stays whole on each device


class StackedBlocks(nnx.Module):
    """`count` blocks as one template block whose every variable has a leading axis of size `count`."""

    def __init__(self, block: nnx.Module, count: int):
        self.block = block
        self.count = count

    def __len__(self) -> int:
        return self.count


def _blocks_owner(model: nnx.Module) -> tuple[nnx.Module, str]:
    return model.backbone, model.layout.blocks


def is_stacked(model: nnx.Module) -> bool:
    owner, name = _blocks_owner(model)
    return isinstance(getattr(owner, name), StackedBlocks)


def _with_axis(var: nnx.Variable, value: Any, add: bool) -> nnx.Variable:
    names = var.get_metadata().get("out_sharding")
    if names is None:
        return var.replace(value)
    return var.replace(value, out_sharding=(AXIS, *names) if add else tuple(names)[1:])


def stack_blocks(model: nnx.Module) -> None:
    """Replace the model's list of blocks by one StackedBlocks in place. Every block must have the same
    structure (same adapters on the same layers): a block that differs is named in the error."""
    owner, name = _blocks_owner(model)
    blocks = getattr(owner, name)
    if isinstance(blocks, StackedBlocks):
        return
    splits = [nnx.split(b) for b in blocks]
    graphdef = splits[0][0]
    for i, (g, _) in enumerate(splits[1:], 1):
        if g != graphdef:
            raise ValueError(f"model.scan_layers needs every block built alike; block {i} differs from block 0 "
                             "(an adapter or target pattern that covers only some layers); set model.scan_layers=False")
    flat = [nnx.to_flat_state(s) for _, s in splits]
    stacked = []
    for j, (path, var) in enumerate(flat[0]):
        value = jax.tree.map(lambda *xs: jnp.stack(xs), *(f[j][1].get_value() for f in flat))
        stacked.append((path, _with_axis(var, value, add=True)))
    setattr(owner, name, StackedBlocks(nnx.merge(graphdef, nnx.from_flat_state(stacked)), len(blocks)))


def unstack_blocks(model: nnx.Module) -> None:
    """Undo stack_blocks in place: the blocks as an nnx.List again, with the same values."""
    owner, name = _blocks_owner(model)
    blocks = getattr(owner, name)
    if not isinstance(blocks, StackedBlocks):
        return
    graphdef, state = nnx.split(blocks.block)
    flat = nnx.to_flat_state(state)
    layers = []
    for i in range(blocks.count):
        one = [(p, _with_axis(v, jax.tree.map(lambda x: x[i], v.get_value()), add=False)) for p, v in flat]
        layers.append(nnx.merge(graphdef, nnx.from_flat_state(one)))
    setattr(owner, name, nnx.List(layers))


def run(blocks: StackedBlocks, x: Array, positions: Array, masks: dict[Any, Array], windows: list[Any],
        ropes: list[Array] | None, kv: tuple[Array, Array] | None, index: Array | None,
        remat: str) -> tuple[Array, tuple[Array, Array] | None]:
    """Apply the stacked blocks in order under lax.scan. `masks` by window, `windows[i]` (and `ropes[i]`, the
    rotary frequencies) per layer; `kv` the stacked cache [layers, b, s, kv_heads, h]. Random-number state
    (dropout) advances per layer and is written back, like the unrolled loop's."""
    keys = list(dict.fromkeys(windows))
    mask_stack = jax.tree.map(lambda *m: jnp.stack(m), *[masks[w] for w in keys])  # arrays or Segments
    which = jnp.asarray([keys.index(w) for w in windows], jnp.int32)
    rope_stack = None if ropes is None else jnp.stack(ropes)
    graphdef, rng, rest = nnx.split(blocks.block, nnx.RngState, ...)

    def body(h: Array, xs: tuple) -> tuple[Array, tuple]:
        rng_i, rest_i, w, rope, kv_i = xs
        layer = nnx.merge(graphdef, rng_i, rest_i)
        h, kv_i = layer(h, positions, jax.tree.map(lambda m: m[w], mask_stack), kv_i, index, rope)
        return h, (nnx.state(layer, nnx.RngState), kv_i)

    body = _rematerialised(body, remat)
    x, (rng, kv) = jax.lax.scan(body, x, (rng, rest, which, rope_stack, kv))
    nnx.update(blocks.block, rng)
    return x, kv


def _rematerialised(body: Callable, policy: str) -> Callable:
    # prevent_cse=False: inside scan the loop already keeps XLA from merging recomputation with the forward
    return body if policy == "none" else jax.checkpoint(body, policy=REMAT_POLICIES[policy], prevent_cse=False)
