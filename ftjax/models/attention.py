"""Attention kernels: the reference einsum and `jax.nn.dot_product_attention` (XLA, or cuDNN flash attention on
GPU), chosen by `model.attention` and resolved once per run with the reason for any fallback.

Every path takes the same boolean mask [b, t, s] (causal by position, sliding window, valid slot, packing
segment; layers.attention_mask), so windows, packing and the KV cache behave the same on each. Soft-capped
attention logits (Gemma 2) exist only in the reference: a fused kernel never sees the logits to cap them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array
IMPLEMENTATIONS = ("auto", "reference", "xla", "cudnn")
_CUDNN_DTYPES = (jnp.bfloat16, jnp.float16)


def resolve(requested: str, *, platform: str, dtype: jnp.dtype, softcap: float | None) -> tuple[str, str]:
    """(implementation, why) for a model on `platform` ('cpu', 'gpu', 'tpu'): `auto` takes cuDNN on a GPU when
    it can, XLA's fused-friendly op on TPU, the reference on CPU; an explicit choice the model cannot use falls
    back to the reference (soft-capping) or is an error (cuDNN without a GPU)."""
    if requested not in IMPLEMENTATIONS:
        raise ValueError(f"model.attention={requested!r}; choose one of {', '.join(IMPLEMENTATIONS)}")
    if softcap is not None and requested != "reference":
        return "reference", f"attention logits are soft-capped at {softcap}, which only the reference applies"
    if requested == "cudnn":
        if platform != "gpu":
            raise ValueError(f"model.attention=cudnn needs a GPU; this run is on {platform}")
        if jnp.dtype(dtype) not in map(jnp.dtype, _CUDNN_DTYPES):
            return "reference", f"cuDNN attention takes bfloat16 or float16, the model is {jnp.dtype(dtype).name}"
    if requested != "auto":
        return requested, "as configured"
    if platform == "gpu" and jnp.dtype(dtype) in map(jnp.dtype, _CUDNN_DTYPES):
        return "cudnn", "auto: GPU with a 16-bit model"
    if platform in ("gpu", "tpu"):
        return "xla", f"auto: {platform}"
    return "reference", "auto: CPU"


def attend(q: Array, k: Array, v: Array, mask: Array, *, scale: float, softcap: float | None,
           implementation: str = "reference") -> Array:
    """q [b, t, n, h], k/v [b, s, k, h], mask [b, t, s] -> [b, t, n, h]; grouped-query aware."""
    if implementation == "reference":
        return reference(q, k, v, mask, scale=scale, softcap=softcap)
    if softcap is not None:
        raise ValueError(f"{implementation} attention cannot soft-cap logits; resolve() falls back to the reference")
    return jax.nn.dot_product_attention(q, k, v, mask=mask[:, None], scale=scale, implementation=implementation)


def reference(q: Array, k: Array, v: Array, mask: Array, *, scale: float, softcap: float | None) -> Array:
    """The whole score matrix, softmax in float32."""
    b, t, n, h = q.shape
    kv_heads = k.shape[2]
    q = q.reshape(b, t, kv_heads, n // kv_heads, h)
    logits = jnp.einsum("btkgh,bskh->bkgts", q, k, preferred_element_type=jnp.float32) * scale
    if softcap is not None:
        logits = jnp.tanh(logits / softcap) * softcap
    logits = jnp.where(mask[:, None, None], logits, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
    out = jnp.einsum("bkgts,bskh->btkgh", probs, v)
    return out.reshape(b, t, n, h)
