"""The train state: what a step reads and writes, kept as one named tuple of arrays (or of their shardings).

The model is split once into (trainable, rng, frozen) with the adapter's filter; only `trainable` is
differentiated and updated, so a LoRA run never computes or stores gradients for the frozen base (DESIGN
practice 4). A NamedTuple is a pytree, so `jax.jit` takes a TrainState of shardings for in/out shardings.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx


class TrainState(NamedTuple):
    trainable: Any  # nnx.State: the adapter's weights (every weight in full fine-tuning)
    opt_state: Any  # optax state over `trainable`
    rng: Any  # nnx.State: the dropout streams
    frozen: Any  # nnx.State: everything else; read, never written (the step passes it through)


def rng_counts(rng: nnx.State) -> list[int]:
    """The positions of the model's RNG streams (dropout), for the checkpoint: their keys never change."""
    return [int(x) for x in jax.tree.leaves(rng.filter(nnx.RngCount))]


def set_rng_counts(rng: nnx.State, counts: list[int]) -> nnx.State:
    count_state = rng.filter(nnx.RngCount)
    leaves, tree = jax.tree.flatten(count_state)
    if len(leaves) != len(counts):
        raise ValueError(f"checkpoint has {len(counts)} RNG streams, the model {len(leaves)}")
    restored = jax.tree.unflatten(tree, [jnp.asarray(c, leaf.dtype) for c, leaf in zip(counts, leaves)])
    return nnx.merge_state(rng, restored)
