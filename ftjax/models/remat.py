"""Rematerialisation policies (`model.remat`): which block activations the backward pass recomputes instead of
storing. Memory for compute: `full` stores only each block's input, `dots` keeps matmul outputs and recomputes
the cheap element-wise rest, `offload` parks matmul outputs in host memory (GPU/TPU only)."""

from __future__ import annotations

from collections.abc import Callable

import jax
from flax import nnx

REMAT_POLICIES = {
    "none": None,
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
    "offload": jax.checkpoint_policies.offload_dot_with_no_batch_dims("device", "pinned_host"),
}


def rematerialised(call: Callable, policy: str) -> Callable:
    """`call` (a block's __call__) under the named policy; unchanged for `none`."""
    return call if policy == "none" else nnx.remat(call, policy=REMAT_POLICIES[policy])
