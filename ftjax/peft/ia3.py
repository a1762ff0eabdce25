"""(IA)3: a learned vector rescales a linear layer's output (attention keys/values) or, for feed-forward
layers, its input. Initialised to ones, so the adapted model starts equal to the base, as in PEFT.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from ftjax.peft.layer import AdaptedLinear

Array = jax.Array


class IA3(nnx.Module):
    def __init__(self, layer: AdaptedLinear, *, feedforward: bool, dtype: Any):
        d_in, d_out = layer.kernel.shape
        ax_in, ax_out = layer.axes
        self.feedforward = feedforward
        size, axis = (d_in, ax_in) if feedforward else (d_out, ax_out)
        self.ia3_l = nnx.LoRAParam(jnp.ones((size,), dtype), out_sharding=(axis,))

    def __call__(self, layer: AdaptedLinear, x: Array) -> Array:
        scale = self.ia3_l[...]
        if self.feedforward:
            return layer.base_call((x.astype(scale.dtype) * scale).astype(x.dtype))
        y = layer.base_call(x)
        return (y * scale).astype(y.dtype)  # scales the bias too, like PEFT

    def merged(self, layer: AdaptedLinear, keep_state: bool = False) -> tuple[Array, Array | None]:
        scale = self.ia3_l[...].astype(jnp.float32)
        w = layer.kernel[...].astype(jnp.float32)
        bias = layer.bias[...] if layer.bias is not None else None
        if self.feedforward:
            return w * scale[:, None], bias
        return w * scale[None, :], None if bias is None else bias.astype(jnp.float32) * scale

    def unmerged(self, layer: AdaptedLinear) -> tuple[Array, Array | None]:
        scale = self.ia3_l[...].astype(jnp.float32)
        w = layer.kernel[...].astype(jnp.float32)
        bias = layer.bias[...] if layer.bias is not None else None
        if self.feedforward:
            return w / scale[:, None], bias
        return w / scale[None, :], None if bias is None else bias.astype(jnp.float32) / scale
