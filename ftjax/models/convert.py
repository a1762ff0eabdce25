"""Checkpoint key mapping between ftjax NNX state and transformers state dicts, checked both ways.

ftjax attribute paths mirror transformers names, so `model.layers.0.self_attn.q_proj.kernel` maps to
`model.layers.0.self_attn.q_proj.weight` (transposed: NNX kernels are [in, out], torch Linear is
[out, in]; a layout with `hf_kernels_in_out`, GPT-2's Conv1D, is not). Every source tensor must be used and
every parameter filled.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ftjax.models.config import ModelConfig
from ftjax.models.hooks import Layout

# Buffers some checkpoints carry that are recomputed, never learned.
_BUFFER_SUFFIXES = ("rotary_emb.inv_freq", "attn.bias", "attn.masked_bias")


def nnx_to_hf_key(path: tuple[Any, ...]) -> str:
    *prefix, leaf = (str(p) for p in path)
    return ".".join([*prefix, {"kernel": "weight", "embedding": "weight"}.get(leaf, leaf)])


def transposed(layout: Layout, path: tuple[Any, ...]) -> bool:
    """Whether the parameter at `path` is stored transposed in transformers checkpoints."""
    return str(path[-1]) == "kernel" and not layout.hf_kernels_in_out


def _normalise_keys(layout: Layout, keys: list[str]) -> dict[str, str]:
    """Map each source key to its canonical transformers name (original GPT-2 files lack `transformer.`)."""
    own = (f"{layout.backbone}.", f"{layout.head}.")
    return {(k if k.startswith(own) else f"{layout.backbone}.{k}"): k for k in keys}


def load_into(model_state: nnx.State, cfg: ModelConfig, layout: Layout, keys: list[str],
              get: Callable[..., Any], dtype: Any, *, shape_of: Callable[[str], tuple[int, ...]] | None = None,
              shardings: Mapping[tuple, Any] | None = None) -> nnx.State:
    """Fill an (abstract) NNX param state from source tensors `get(key)`; errors name the offending key.

    Given `shardings` (flat param path -> NamedSharding) and `shape_of(key)`, each parameter is built on its
    devices from the slices they hold: `get(key, index)` must return only `source[index]`, so no host or device
    ever holds more of a tensor than one device's shard (jax.make_array_from_callback).
    """
    source = _normalise_keys(layout, keys)
    used = set()
    flat = []
    for path, var in nnx.to_flat_state(model_state):
        name = nnx_to_hf_key(path)
        if name not in source:
            raise KeyError(f"checkpoint has no tensor for parameter {'.'.join(map(str, path))} (expected {name})")
        key, flip = source[name], transposed(layout, path)
        if shardings is None:
            arr = get(key)
            arr = arr.T if flip else arr
            shape = tuple(arr.shape)
        else:
            shape = tuple(shape_of(key))[::-1] if flip else tuple(shape_of(key))
        if shape != tuple(var.shape):
            raise ValueError(f"shape mismatch for {name}: checkpoint {shape}, model {tuple(var.shape)}")
        used.add(name)
        if shardings is None:
            value = jnp.asarray(arr, dtype=dtype)
        else:
            value = jax.make_array_from_callback(shape, shardings[path], _slice_reader(get, key, flip, dtype))
        flat.append((path, var.replace(value)))
    unused = [k for k in source if k not in used and not _ignorable(cfg, layout, k)]
    if unused:
        raise KeyError(f"checkpoint tensor {source[unused[0]]} is not used by the {cfg.model_type} port"
                       + (f" (and {len(unused) - 1} more)" if len(unused) > 1 else ""))
    return nnx.from_flat_state(flat)


def _slice_reader(get: Callable[..., Any], key: str, flip: bool, dtype: Any) -> Callable[[tuple], np.ndarray]:
    """The callback that reads one device's block of a (possibly transposed) source tensor."""
    def read(index: tuple) -> np.ndarray:
        block = np.asarray(get(key, index[::-1] if flip else index))
        return np.ascontiguousarray(block.T if flip else block).astype(jnp.dtype(dtype))

    return read


def _ignorable(cfg: ModelConfig, layout: Layout, key: str) -> bool:
    # A tied checkpoint may still carry lm_head.weight (a copy of the embedding).
    return key.endswith(_BUFFER_SUFFIXES) or (cfg.tie_embeddings and key == f"{layout.head}.weight")


def to_hf_state_dict(model: nnx.Module, dtype: Any | None = None) -> dict[str, np.ndarray]:
    """transformers-named numpy tensors for every parameter of `model`."""
    out = {}
    for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        arr = np.asarray(var[...] if dtype is None else var[...].astype(dtype))
        out[nnx_to_hf_key(path)] = np.ascontiguousarray(arr.T if transposed(model.layout, path) else arr)
    return out
