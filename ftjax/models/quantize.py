"""QLoRA's frozen base: linear kernels stored as int8 (per-output-channel absmax) or 4-bit NF4 (absmax per block
of 64 inputs, two codes per byte; Dettmers et al. 2023) and dequantised inside the matmul.

`quantize_base(model, kind)` replaces the value of every backbone linear kernel (not the embedding, the output
head or task heads) by a `QTensor`, a pytree of codes and scales. The kernel stays an `nnx.Param` at the same
path, so checkpoint names, sharding metadata and adapters are unchanged: `kernel[...]` and `kernel.shape` give
the dequantised weight and its shape, which is all LoRA, DoRA and (IA)3 read. `layers.Linear` multiplies through
`matmul`, a checkpointed function whose backward pass dequantises again instead of keeping the float kernel, so
a step holds only codes.

Why not qwix: it quantises by intercepting a whole model's ops for serving or QAT; a frozen base under our own
adapters needs only storage and a dequantise-in-matmul, and keeping the kernel a plain Param keeps every other
part of ftjax (sharding rules, checkpoints, exports) working unchanged.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

Array = jax.Array
KINDS = ("none", "int8", "nf4")
BLOCK = 64  # NF4 inputs per absmax scale
# The 16 NF4 levels: quantiles of N(0, 1) scaled to [-1, 1] with an exact zero (QLoRA paper, appendix E).
NF4 = np.array([-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
                -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
                0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
                0.7229568362236023, 1.0], np.float32)


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class QTensor:
    """A quantised [in, out] kernel: `codes` (int8 [in, out], or NF4 pairs uint8 [in / 2, out]) and `scales`
    ([1, out], or [in / 64, out]). Indexing dequantises; writing is refused (it would re-round the base)."""

    codes: Array
    scales: Array
    kind: str = dataclasses.field(metadata=dict(static=True))
    shape: tuple[int, int] = dataclasses.field(metadata=dict(static=True))
    dtype: Any = dataclasses.field(metadata=dict(static=True))

    @property
    def ndim(self) -> int:
        return 2

    @property
    def nbytes(self) -> int:
        return int(self.codes.size * self.codes.dtype.itemsize + self.scales.size * self.scales.dtype.itemsize)

    def per_leaf(self, fn, names: tuple) -> QTensor:
        """fn(leaf, logical names) on codes and scales, given the kernel's logical names (sharding rules)."""
        # int8 scales are [1, out]; stacked layers (scan.py) put their own axis name in front
        scale_names = names if self.kind == "nf4" else (*names[:-2], None, names[-1])
        return QTensor(fn(self.codes, names), fn(self.scales, scale_names), self.kind, self.shape, self.dtype)

    def dequantize(self) -> Array:
        return dequantize(self.codes, self.scales, self.kind).astype(self.dtype)

    def __getitem__(self, index: Any) -> Array:
        return self.dequantize()[index]

    def __setitem__(self, index: Any, value: Any) -> None:
        raise ValueError("the base is quantised (model.quantize); merge the adapter into the full-precision "
                         "checkpoint instead (ftjax export --format=merged loads it)")


def quantize(w: Array, kind: str) -> QTensor:
    """The QTensor of a kernel [in, out]."""
    if kind not in KINDS[1:]:
        raise ValueError(f"model.quantize={kind!r}; choose from {', '.join(KINDS)}")
    shape, dtype = tuple(w.shape), w.dtype
    w = w.astype(jnp.float32)
    if kind == "int8":
        scale = jnp.max(jnp.abs(w), axis=0, keepdims=True) / 127.0
        scale = jnp.where(scale == 0, 1.0, scale)
        return QTensor(jnp.clip(jnp.round(w / scale), -127, 127).astype(jnp.int8), scale, kind, shape, dtype)
    d_in, d_out = shape
    if d_in % BLOCK:
        raise ValueError(f"nf4 needs input widths divisible by {BLOCK}; a kernel is {shape}")
    blocks = w.reshape(d_in // BLOCK, BLOCK, d_out)
    scale = jnp.max(jnp.abs(blocks), axis=1)  # [in / BLOCK, out]
    scale = jnp.where(scale == 0, 1.0, scale)
    x = (blocks / scale[:, None]).reshape(d_in, d_out)
    # nearest level: count the midpoints below x (no [in, out, 16] temporary)
    codes = jnp.searchsorted(jnp.asarray((NF4[1:] + NF4[:-1]) / 2), x).astype(jnp.uint8)
    return QTensor((codes[0::2] << 4) | codes[1::2], scale, kind, shape, dtype)  # rows 2i, 2i + 1 share a byte


def dequantize(codes: Array, scales: Array, kind: str) -> Array:
    """The float32 kernel [in, out] from codes and scales."""
    if kind == "int8":
        return codes.astype(jnp.float32) * scales
    pairs = jnp.stack([codes >> 4, codes & 15], axis=1).reshape(-1, codes.shape[-1])  # undo the row pairing
    w = jnp.asarray(NF4)[pairs.astype(jnp.int32)]
    return (w.reshape(-1, BLOCK, w.shape[-1]) * scales[:, None]).reshape(w.shape)


@jax.checkpoint
def _quantized_matmul(x: Array, q: QTensor) -> Array:
    return x @ q.dequantize().astype(x.dtype)


def matmul(x: Array, kernel: Array | QTensor) -> Array:
    """x @ kernel in x's dtype; a QTensor is dequantised in the forward and again in the backward pass."""
    if isinstance(kernel, QTensor):
        return _quantized_matmul(x, kernel)
    return x @ kernel.astype(x.dtype)


def quantize_base(model: nnx.Module, kind: str) -> nnx.Module:
    """Quantise every linear kernel under the backbone in place; `none` leaves the model as it is."""
    if kind not in KINDS:
        raise ValueError(f"model.quantize={kind!r}; choose from {', '.join(KINDS)}")
    if kind == "none":
        return model
    backbone = model.layout.backbone
    for path, module in nnx.iter_modules(model):
        kernel = getattr(module, "kernel", None)
        if path and str(path[0]) == backbone and isinstance(kernel, nnx.Param) and kernel.ndim == 2 \
                and not isinstance(kernel.get_value(), QTensor):
            kernel.set_value(quantize(kernel.get_value(), kind))
    return model


def base_nbytes(model: nnx.Module) -> int:
    """Bytes the base weights occupy (quantised kernels at their packed size)."""
    total = 0
    for _, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        v = var.get_value()
        total += v.nbytes if isinstance(v, QTensor) else int(np.prod(v.shape)) * jnp.dtype(v.dtype).itemsize
    return total
