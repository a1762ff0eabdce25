"""Attention kernels: the reference einsum, `jax.nn.dot_product_attention` (XLA, or cuDNN flash attention on
GPU) and the Pallas splash-attention kernel (TPU), chosen by `model.attention` and resolved once per run with the
reason for any fallback.

The reference, XLA and cuDNN paths take one boolean mask [b, t, s] (causal by position, sliding window, valid
slot, packing segment; layers.attention_mask), so windows, packing and the KV cache behave the same on each.
Splash takes `Segments` instead: it builds its block-sparse causal/window mask from static shapes and only reads
each token's segment, so it serves training and scoring passes (no cache, no prefix hook); anything else, and
rows whose length is not a multiple of 128, run on XLA's fused op with the equivalent dense mask. Soft-capped
attention logits (Gemma 2) exist in the reference and splash: the other kernels never see the logits to cap them.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, PartitionSpec as P

Array = jax.Array
IMPLEMENTATIONS = ("auto", "reference", "xla", "cudnn", "splash")
_CUDNN_DTYPES = (jnp.bfloat16, jnp.float16)
_SPLASH_BLOCKS = (512, 256, 128)  # the largest that divides the row length; TPU tiles need multiples of 128


def resolve(requested: str, *, platform: str, dtype: jnp.dtype, softcap: float | None) -> tuple[str, str]:
    """(implementation, why) for a model on `platform` ('cpu', 'gpu', 'tpu'): `auto` takes cuDNN on a GPU when
    it can, splash on TPU, the reference on CPU; an explicit choice the model cannot use falls back to the
    reference (soft-capping, cuDNN in float32) or is an error (cuDNN without a GPU). Splash off TPU runs in the
    Pallas interpreter: correct and slow, for tests."""
    if requested not in IMPLEMENTATIONS:
        raise ValueError(f"model.attention={requested!r}; choose one of {', '.join(IMPLEMENTATIONS)}")
    why = "as configured"
    if requested == "auto":
        requested, why = _auto(platform, dtype)
    if softcap is not None and requested not in ("reference", "splash"):
        return "reference", f"attention logits are soft-capped at {softcap}, which only the reference and splash apply"
    if requested == "cudnn":
        if platform != "gpu":
            raise ValueError(f"model.attention=cudnn needs a GPU; this run is on {platform}")
        if jnp.dtype(dtype) not in map(jnp.dtype, _CUDNN_DTYPES):
            return "reference", f"cuDNN attention takes bfloat16 or float16, the model is {jnp.dtype(dtype).name}"
    if requested == "splash" and platform != "tpu":
        why += f" (the Pallas interpreter on {platform}: slow, for tests)"
    return requested, why


def _auto(platform: str, dtype: jnp.dtype) -> tuple[str, str]:
    if platform == "gpu" and jnp.dtype(dtype) in map(jnp.dtype, _CUDNN_DTYPES):
        return "cudnn", "auto: GPU with a 16-bit model"
    if platform == "tpu":
        return "splash", "auto: TPU"
    if platform == "gpu":
        return "xla", "auto: GPU"
    return "reference", "auto: CPU"


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Segments:
    """The splash kernel's mask, in place of a dense one: each token's packing segment (-1 on padding) and which
    of `windows` (None = full) the layer uses. The window is an index carried as data so that scanned layers can
    stack it; masking is causal by index within a segment, which equals causal by position because positions
    rise by one along every segment of a training row (packed, padded or with virtual tokens in front)."""

    ids: Array  # [b, t] int32
    window: Array  # [] int32, an index into windows
    windows: tuple = dataclasses.field(metadata=dict(static=True))
    mesh: Mesh | None = dataclasses.field(default=None, metadata=dict(static=True))  # batch split over it

    def dense(self) -> Array:
        """The same mask as a boolean [b, t, t] for the kernels that take one."""
        t = self.ids.shape[1]
        i = jnp.arange(t)
        diff = i[:, None] - i[None, :]
        width = jnp.asarray([t + 1 if w is None else w for w in self.windows], jnp.int32)[self.window]
        return (diff >= 0) & (diff < width) & (self.ids[:, :, None] == self.ids[:, None, :])


def segments(valid: Array, segment_ids: Array | None, windows: tuple, mesh: Mesh | None = None) -> dict:
    """`Segments` keyed by window, like the dense masks (decoder._masks)."""
    ids = jnp.where(valid, 0 if segment_ids is None else segment_ids, -1).astype(jnp.int32)
    return {w: Segments(ids, jnp.int32(i), windows, mesh) for i, w in enumerate(windows)}


def dense(mask: Array | Segments) -> Array:
    return mask.dense() if isinstance(mask, Segments) else mask


def attend(q: Array, k: Array, v: Array, mask: Array | Segments, *, scale: float, softcap: float | None,
           implementation: str = "reference") -> Array:
    """q [b, t, n, h], k/v [b, s, k, h], mask [b, t, s] or Segments -> [b, t, n, h]; grouped-query aware."""
    if implementation == "splash":
        if isinstance(mask, Segments) and q.shape[1] % _SPLASH_BLOCKS[-1] == 0:
            return _splash(q, k, v, mask, scale=scale, softcap=softcap)
        implementation = "reference" if softcap is not None else "xla"  # a cache, a prefix, or an odd length
    mask = dense(mask)
    if implementation == "reference":
        return reference(q, k, v, mask, scale=scale, softcap=softcap)
    if softcap is not None:
        raise ValueError(f"{implementation} attention cannot soft-cap logits; resolve() falls back to the reference")
    return jax.nn.dot_product_attention(q, k, v, mask=mask[:, None], scale=scale, implementation=implementation)


@functools.lru_cache(maxsize=64)
def _splash_kernel(t: int, heads: int, window: int | None, softcap: float | None, interpret: bool):
    from jax.experimental.pallas.ops.tpu import splash_attention as S

    block = next(b for b in _SPLASH_BLOCKS if t % b == 0)
    shape = (t, t)
    one = S.CausalMask(shape) if window is None else S.LocalMask(shape, (window - 1, 0), 0)
    sizes = S.BlockSizes(block_q=block, block_kv=block, block_kv_compute=block, block_q_dkv=block,
                         block_kv_dkv=block, block_kv_dkv_compute=block, block_q_dq=block, block_kv_dq=block)
    with jax.ensure_compile_time_eval():  # the block-sparsity tables are constants, cached across traces
        kernel = S.make_splash_mha_single_device(S.MultiHeadMask([one] * heads), block_sizes=sizes,
                                                 attn_logits_soft_cap=softcap, interpret=interpret)
    return lambda q, k, v, ids: kernel(q, k, v, segment_ids=S.SegmentIds(ids, ids))


def _splash(q: Array, k: Array, v: Array, mask: Segments, *, scale: float, softcap: float | None) -> Array:
    interpret = jax.devices()[0].platform != "tpu"

    def local(q, k, v, ids, window):  # one device's rows (and heads), heads-first as the kernel wants them
        heads_first = lambda x: x.transpose(0, 2, 1, 3)
        branches = [jax.vmap(_splash_kernel(q.shape[1], q.shape[2], w, softcap, interpret)) for w in mask.windows]
        out = jax.lax.switch(window, branches, heads_first(q * scale), heads_first(k), heads_first(v), ids)
        return heads_first(out)

    if mask.mesh is None or mask.mesh.size == 1:
        return local(q, k, v, mask.ids, mask.window)
    # a Pallas call is not partitioned by XLA: each device runs the kernel on its own rows, and on its own heads
    # where the tensor axis divides both head counts
    from ftjax.sharding import BATCH_AXES

    tp = mask.mesh.shape.get("tensor", 1)
    heads = "tensor" if q.shape[2] % tp == 0 and k.shape[2] % tp == 0 else None
    x = P(BATCH_AXES, None, heads, None)
    run = jax.shard_map(local, mesh=mask.mesh, in_specs=(x, x, x, P(BATCH_AXES), P()), out_specs=x,
                        check_vma=False)
    return run(q, k, v, mask.ids, mask.window)


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
