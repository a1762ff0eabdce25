"""LoRA and DoRA adapters for `AdaptedLinear`.

LoRA:  y = x W + b + s * dropout(x) A B,  A [in, r], B [r, out], s = alpha / r (rsLoRA: alpha / sqrt(r)).
DoRA:  the adapted weight W + s A B is split into a learned per-output magnitude m and a direction;
       y = m / ||W + s A B||_col * (x W + s x A B) + b, the norm treated as a constant in the backward pass
       (as the DoRA paper and PEFT do). With dropout, the dropped input feeds the adapter path like PEFT.
PiSSA: A0 B0 = the top-r singular part of W (divided by s); A, B start there and the frozen copies A0, B0 are
       subtracted, so the base kernel is never modified: the adapter stays portable and exports to PEFT as a
       rank-2r LoRA ([A; A0], [B, -B0]).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from ftjax.peft.layer import AdaptedLinear, LoRAInit, MergeState

Array = jax.Array


def lora_scale(alpha: float, rank: int, rslora: bool) -> float:
    return alpha / (math.sqrt(rank) if rslora else rank)


class LoRA(nnx.Module):
    def __init__(self, layer: AdaptedLinear, *, rank: int, alpha: float, rslora: bool, dropout: float, dora: bool,
                 init: str, dtype: Any, rngs: nnx.Rngs):
        d_in, d_out = layer.kernel.shape
        ax_in, ax_out = layer.axes
        self.scale = lora_scale(alpha, rank, rslora)
        a, b = _init_factors(layer.kernel[...], rank, self.scale, init, dtype, rngs)
        self.lora_a = nnx.LoRAParam(a, out_sharding=(ax_in, None))
        self.lora_b = nnx.LoRAParam(b, out_sharding=(None, ax_out))
        self.pissa = init == "pissa"
        if self.pissa:
            self.lora_a0 = LoRAInit(a.copy(), out_sharding=(ax_in, None))  # own buffers: A, B are donated
            self.lora_b0 = LoRAInit(b.copy(), out_sharding=(None, ax_out))
        self.dora = dora
        if dora:
            self.magnitude = nnx.LoRAParam(self.weight_norm(layer).astype(dtype), out_sharding=(ax_out,))
        self.dropout = nnx.Dropout(dropout, rngs=rngs) if dropout > 0 else None

    def delta(self) -> Array:
        """s * (A B - A0 B0): the [in, out] change to the base kernel, in the adapter dtype."""
        d = self.lora_a[...] @ self.lora_b[...]
        if self.pissa:
            d = d - self.lora_a0[...] @ self.lora_b0[...]
        return d * self.scale

    def weight_norm(self, layer: AdaptedLinear) -> Array:
        """Per-output-column L2 norm of the adapted weight (PEFT's row norm of the [out, in] weight)."""
        w = layer.kernel[...].astype(jnp.float32) + self.delta().astype(jnp.float32)
        return jnp.linalg.norm(w, axis=0)

    def __call__(self, layer: AdaptedLinear, x: Array) -> Array:
        y = layer.base_call(x)
        xd = self.dropout(x) if self.dropout is not None else x
        xa = xd.astype(self.lora_a.dtype)  # the adapter path runs in the adapter dtype, like PEFT
        low = low_rank(xa, self.lora_a[...], self.lora_b[...])
        if self.pissa:
            low = low - low_rank(xa, self.lora_a0[...], self.lora_b0[...])
        low = low * self.scale
        if not self.dora:
            return (y + low).astype(y.dtype)
        mag = self.magnitude[...] / jax.lax.stop_gradient(self.weight_norm(layer))
        if self.dropout is None:  # x W without the bias, reusing the base product
            xw = y - layer.bias[...].astype(y.dtype) if layer.bias is not None else y
        else:
            xw = xd @ layer.kernel[...].astype(xd.dtype)
        return (y + (mag - 1) * xw + mag * low).astype(y.dtype)

    def merged(self, layer: AdaptedLinear, keep_state: bool = False) -> tuple[Array, Array | None]:
        w = layer.kernel[...].astype(jnp.float32) + self.delta().astype(jnp.float32)
        bias = layer.bias[...] if layer.bias is not None else None
        if not self.dora:
            return w, bias
        norm = jnp.linalg.norm(w, axis=0)
        if keep_state:
            self.merged_norm = MergeState(norm)
        return w * (self.magnitude[...].astype(jnp.float32) / norm), bias

    def unmerged(self, layer: AdaptedLinear) -> tuple[Array, Array | None]:
        w = layer.kernel[...].astype(jnp.float32)
        if self.dora:
            w = w * (self.merged_norm[...] / self.magnitude[...].astype(jnp.float32))
            del self.merged_norm
        bias = layer.bias[...] if layer.bias is not None else None
        return w - self.delta().astype(jnp.float32), bias


@jax.custom_vjp
def low_rank(x: Array, a: Array, b: Array) -> Array:
    """x A B for x [..., in], A [in, r], B [r, out], with a hand-written backward pass: dA is formed as
    (dXA^T X)^T, contracting the token axis as the major axis of both operands. Left to autodiff, XLA's CPU
    backend instead writes the layer's input transposed to [in, tokens] (fused into its producer, e.g. the MLP
    activation), which took 40% of a Gemma 3 270M LoRA step (experiments/bench_vs_peers/README.md)."""
    return x @ a @ b


def _low_rank_forward(x: Array, a: Array, b: Array) -> tuple[Array, tuple]:
    xa = x @ a
    return xa @ b, (x, a, b, xa)


def _low_rank_backward(res: tuple, g: Array) -> tuple[Array, Array, Array]:
    x, a, b, xa = res
    x2, xa2, g2 = (v.reshape(-1, v.shape[-1]) for v in (x, xa, g))  # tokens x features
    dxa = g2 @ b.T
    return (dxa @ a.T).reshape(x.shape), (dxa.T @ x2).T.astype(a.dtype), (xa2.T @ g2).astype(b.dtype)


low_rank.defvjp(_low_rank_forward, _low_rank_backward)


def _init_factors(kernel: Array, rank: int, scale: float, init: str, dtype: Any,
                  rngs: nnx.Rngs) -> tuple[Array, Array]:
    d_in, d_out = kernel.shape
    if init == "kaiming":  # PEFT's default: kaiming-uniform(a=sqrt(5)) A, i.e. U(+-1/sqrt(in)); zero B
        bound = 1.0 / math.sqrt(d_in)
        a = jax.random.uniform(rngs.params(), (d_in, rank), dtype, -bound, bound)
        return a, jnp.zeros((rank, d_out), dtype)
    if init == "gaussian":  # PEFT's 'gaussian': A ~ N(0, (1/r)^2)
        return jax.random.normal(rngs.params(), (d_in, rank), dtype) / rank, jnp.zeros((rank, d_out), dtype)
    if init == "pissa":
        if rank > min(d_in, d_out):
            raise ValueError(f"PiSSA needs rank <= min(in, out) = {min(d_in, d_out)}, got {rank}")
        u, s, vh = jnp.linalg.svd(kernel.astype(jnp.float32), full_matrices=False)
        root = jnp.sqrt(s[:rank] / scale)
        return (u[:, :rank] * root).astype(dtype), (root[:, None] * vh[:rank]).astype(dtype)
    raise ValueError(f"unknown LoRA init {init!r}")
