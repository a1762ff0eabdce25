"""Building blocks shared by every family: linear, embedding, norms, rotary embeddings, attention masks, KV cache.

Einsum axis letters: b batch, t query time, s key/value time, d model width, n query heads,
k key/value heads, g query heads per kv head, h head dim, f feed-forward width, v vocabulary.
Parameters carry logical axis names (`embed`, `mlp`, `heads`, `kv`, `vocab`) for the sharding rules.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from ftjax.models.config import RopeConfig
from ftjax.models.quantize import matmul

Array = jax.Array
_INIT = nnx.initializers.normal(0.02)


class Linear(nnx.Module):
    """y = x @ kernel (+ bias); kernel is [in, out] (transformers stores [out, in])."""

    def __init__(self, d_in: int, d_out: int, *, bias: bool, axes: tuple[str | None, str | None],
                 dtype: Any, rngs: nnx.Rngs):
        self.kernel = nnx.Param(_INIT(rngs.params(), (d_in, d_out), dtype), out_sharding=axes)
        self.bias = nnx.Param(jnp.zeros((d_out,), dtype), out_sharding=axes[1:]) if bias else None

    def __call__(self, x: Array) -> Array:
        y = matmul(x, self.kernel.get_value())  # a quantised base kernel is dequantised inside (quantize.py)
        return y + self.bias[...].astype(x.dtype) if self.bias is not None else y


class Embed(nnx.Module):
    def __init__(self, num: int, dim: int, *, axes: tuple[str, str], dtype: Any, rngs: nnx.Rngs):
        self.embedding = nnx.Param(_INIT(rngs.params(), (num, dim), dtype), out_sharding=axes)

    def __call__(self, ids: Array) -> Array:
        return jnp.take(self.embedding[...], ids, axis=0)

    def attend(self, x: Array) -> Array:
        """Tied output head: x @ embedding.T."""
        return x @ self.embedding[...].astype(x.dtype).T


class Norm(nnx.Module):
    """RMSNorm (`rms`: w * x, `rms_gemma`: (1 + w) * x) or LayerNorm, computed in float32 like transformers."""

    def __init__(self, dim: int, *, kind: str, eps: float, dtype: Any):
        self.kind, self.eps = kind, eps
        init = jnp.zeros if kind == "rms_gemma" else jnp.ones
        self.weight = nnx.Param(init((dim,), dtype), out_sharding=(None,))
        self.bias = nnx.Param(jnp.zeros((dim,), dtype), out_sharding=(None,)) if kind == "layernorm" else None

    def __call__(self, x: Array) -> Array:
        h = x.astype(jnp.float32)
        w = self.weight[...].astype(jnp.float32)
        if self.kind == "layernorm":
            h = h - h.mean(-1, keepdims=True)
            h = h * jax.lax.rsqrt((h * h).mean(-1, keepdims=True) + self.eps)
            return (h * w + self.bias[...].astype(jnp.float32)).astype(x.dtype)
        h = h * jax.lax.rsqrt((h * h).mean(-1, keepdims=True) + self.eps)
        if self.kind == "rms_gemma":
            return (h * (1.0 + w)).astype(x.dtype)
        # Llama casts back to the activation dtype before the weight multiply.
        return w.astype(x.dtype) * h.astype(x.dtype)


def _gelu(x: Array) -> Array:
    return jax.nn.gelu(x, approximate=False)


def _gelu_tanh(x: Array) -> Array:
    return jax.nn.gelu(x, approximate=True)


# module-level functions, not lambdas made per call: blocks must compare equal to be stacked (scan.py)
ACTIVATIONS = {"silu": jax.nn.silu, "gelu": _gelu, "gelu_new": _gelu_tanh, "gelu_pytorch_tanh": _gelu_tanh,
               "relu": jax.nn.relu}


def activation(name: str):
    if name not in ACTIVATIONS:
        raise ValueError(f"unsupported activation {name!r}; supported: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def rope_inv_freq(rope: RopeConfig, head_dim: int) -> Array:
    inv = 1.0 / (rope.theta ** (jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim))
    if rope.type == "linear":
        return inv / rope.factor
    if rope.type == "llama3":  # Llama 3.1: long wavelengths scaled down, a smooth ramp in between
        wavelen = 2 * math.pi / inv
        low_wl = rope.original_max_position_embeddings / rope.low_freq_factor
        high_wl = rope.original_max_position_embeddings / rope.high_freq_factor
        scaled = jnp.where(wavelen > low_wl, inv / rope.factor, inv)
        smooth = ((rope.original_max_position_embeddings / wavelen - rope.low_freq_factor)
                  / (rope.high_freq_factor - rope.low_freq_factor))
        smoothed = (1 - smooth) * scaled / rope.factor + smooth * scaled
        medium = (wavelen >= high_wl) & (wavelen <= low_wl)
        return jnp.where(medium, smoothed, scaled)
    return inv


def apply_rope(x: Array, positions: Array, inv_freq: Array) -> Array:
    """x [b, t, heads, h], positions [b, t]; rotate-half convention of transformers."""
    ang = positions[..., None].astype(jnp.float32) * inv_freq  # [b, t, h/2]
    cos = jnp.concatenate([jnp.cos(ang)] * 2, -1)[:, :, None, :]
    sin = jnp.concatenate([jnp.sin(ang)] * 2, -1)[:, :, None, :]
    x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)
    rotated = jnp.concatenate([-x2, x1], axis=-1)
    return (x.astype(jnp.float32) * cos + rotated * sin).astype(x.dtype)


def attention_mask(q_pos: Array, kv_pos: Array, kv_valid: Array, window: int | None,
                   q_seg: Array | None = None, kv_seg: Array | None = None) -> Array:
    """Boolean [b, t, s]: causal by position, within the sliding window, valid slot, same segment."""
    diff = q_pos[:, :, None] - kv_pos[:, None, :]
    mask = (diff >= 0) & kv_valid[:, None, :]
    if window is not None:
        mask &= diff < window
    if q_seg is not None:
        mask &= q_seg[:, :, None] == kv_seg[:, None, :]
    return mask


def write_cache(cache: Array, new: Array, index: Array) -> Array:
    """Write `new` [b, t, ...] into `cache` [b, max_len, ...] at slot `index` (shared by all rows)."""
    return jax.lax.dynamic_update_slice_in_dim(cache, new.astype(cache.dtype), index, axis=1)


def init_cache(num_layers: int, batch: int, max_len: int, kv_heads: int, head_dim: int, dtype: Any,
               stacked: bool = False) -> dict:
    """An empty KV cache: k/v per layer (a list, or one [layers, ...] array each for scanned layers), plus the
    position and validity of every slot and the write index."""
    shape = (batch, max_len, kv_heads, head_dim)
    per_layer = lambda: jnp.zeros((num_layers, *shape), dtype) if stacked else [jnp.zeros(shape, dtype)
                                                                               for _ in range(num_layers)]
    return {
        "k": per_layer(),
        "v": per_layer(),
        "pos": jnp.zeros((batch, max_len), jnp.int32),
        "valid": jnp.zeros((batch, max_len), bool),
        "index": jnp.zeros((), jnp.int32),
    }


def cache_rows(cache: dict, rows: Array) -> dict:
    """The cache with its batch rows taken in the order `rows` (repeated, reordered); a stacked cache's k/v have
    layers first."""
    take = lambda kv: kv[:, rows] if isinstance(kv, jax.Array) else [x[rows] for x in kv]
    return dict(cache, k=take(cache["k"]), v=take(cache["v"]), pos=cache["pos"][rows], valid=cache["valid"][rows])
