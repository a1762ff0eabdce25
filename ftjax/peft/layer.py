"""`AdaptedLinear`: a frozen base `Linear` with named adapters (LoRA, DoRA, (IA)3), one active at a time.

The base `kernel`/`bias` keep their attribute names, so checkpoint conversion still maps them; adapters live
under `adapters.<name>`. An adapter module implements `__call__(layer, x)`, `merged(layer) -> (kernel, bias)`
(pure) and `unmerged(layer) -> (kernel, bias)` (undoes `merged` on the merged weights).
"""

from __future__ import annotations

from typing import Any

import jax
from flax import nnx

from ftjax.models.layers import Linear

Array = jax.Array


class LoRAInit(nnx.Variable):
    """Frozen adapter state that is saved with the adapter but never trained (PiSSA's initial factors)."""


class MergeState(nnx.Variable):
    """What unmerging needs that the merged weights no longer hold (DoRA's weight norm)."""


class AdaptedLinear(Linear):
    def __init__(self, base: Linear):
        self.kernel = base.kernel
        self.bias = base.bias
        self.adapters = nnx.Dict()
        self.active: str | None = None
        self.merged: str | None = None  # name of the adapter folded into kernel/bias

    @property
    def axes(self) -> tuple[Any, Any]:
        """Logical axis names of the kernel (in, out), for the adapters' own sharding metadata."""
        axes = self.kernel.get_metadata().get("out_sharding") or (None, None)
        return tuple(axes)

    def base_call(self, x: Array) -> Array:
        return Linear.__call__(self, x)

    def __call__(self, x: Array) -> Array:
        if self.active is None or self.merged is not None:
            return self.base_call(x)
        return self.adapters[self.active](self, x)

    def merge(self) -> None:
        """Fold the active adapter into kernel/bias; calls then cost what the base costs."""
        if self.active is None or self.merged is not None:
            return
        kernel, bias = self.adapters[self.active].merged(self, keep_state=True)
        self._set(kernel, bias)
        self.merged = self.active

    def unmerge(self) -> None:
        if self.merged is None:
            return
        kernel, bias = self.adapters[self.merged].unmerged(self)
        self._set(kernel, bias)
        self.merged = None

    def _set(self, kernel: Array, bias: Array | None) -> None:
        self.kernel[...] = kernel.astype(self.kernel.dtype)
        if self.bias is not None:
            self.bias[...] = bias.astype(self.bias.dtype)
