"""Prompt tuning and prefix tuning: learned virtual tokens in front of every sequence.

Prompt tuning prepends n learned input embeddings (as the output of the embedding layer, so after Gemma's
sqrt(d) scale, like PEFT). Prefix tuning gives every attention layer n learned keys and values (already
rotated and normalised, i.e. what a KV cache holds) that every query attends to. In both, virtual tokens
take positions 0..n-1 and real tokens are shifted to start at n, as PEFT does.

They fill the model's hook slots (ftjax/models/hooks.py): a `VirtualTokens` module in the backbone's `prompt`
slot (its `prepend(...)` / `strip(h)`) and a `PrefixKV` in each attention's `prefix` slot (`prefix(k, v, mask)`).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

Array = jax.Array


class PromptEmbedding(nnx.Module):
    def __init__(self, values: Array):
        self.num_virtual_tokens = values.shape[0]
        self.embeddings = nnx.LoRAParam(values, out_sharding=(None, "embed"))


class PrefixLength(nnx.Module):
    """Prefix tuning's entry in the backbone hook: only shifts positions (its weights live in PrefixKV)."""

    def __init__(self, num_virtual_tokens: int):
        self.num_virtual_tokens = num_virtual_tokens


class VirtualTokens(nnx.Module):
    def __init__(self):
        self.adapters = nnx.Dict()
        self.active: str | None = None

    def prepend(self, x: Array, positions: Array, valid: Array, segment_ids: Array | None,
                cache: dict | None) -> tuple[Array, Array, Array, Array | None]:
        if self.active is None:
            return x, positions, valid, segment_ids
        adapter = self.adapters[self.active]
        n = adapter.num_virtual_tokens
        positions = positions + n
        if isinstance(adapter, PrefixLength):
            return x, positions, valid, segment_ids
        if cache is not None:
            raise ValueError("prompt tuning does not support KV-cache decoding yet; use prefix tuning to decode "
                             "with a cache")
        b = x.shape[0]
        prompt = jnp.broadcast_to(adapter.embeddings[...].astype(x.dtype), (b, n, x.shape[-1]))
        first = jnp.broadcast_to(jnp.arange(n, dtype=positions.dtype), (b, n))
        if segment_ids is not None:
            # One example per row (the trainer refuses packing with prompt tuning), so the virtual tokens join
            # the row's one segment; training batches carry segment ids even when unpacked.
            row = jnp.broadcast_to(segment_ids.max(axis=1, keepdims=True), (b, n))
            segment_ids = jnp.concatenate([row, segment_ids], 1)
        return (jnp.concatenate([prompt, x], 1), jnp.concatenate([first, positions], 1),
                jnp.concatenate([jnp.ones((b, n), bool), valid], 1), segment_ids)

    def strip(self, h: Array) -> Array:
        """Drop the virtual tokens' hidden states, so outputs line up with input_ids."""
        if self.active is None or isinstance(self.adapters[self.active], PrefixLength):
            return h
        return h[:, self.adapters[self.active].num_virtual_tokens:]


class PrefixWeights(nnx.Module):
    def __init__(self, key: Array, value: Array):
        self.num_virtual_tokens = key.shape[0]
        # [n, kv_heads, head_dim]; tiny, so replicated rather than sharded
        self.key = nnx.LoRAParam(key, out_sharding=(None, None, None))
        self.value = nnx.LoRAParam(value, out_sharding=(None, None, None))


class PrefixKV(nnx.Module):
    def __init__(self):
        self.adapters = nnx.Dict()
        self.active: str | None = None

    def __call__(self, k: Array, v: Array, mask: Array) -> tuple[Array, Array, Array]:
        """k/v [b, s, kv_heads, h], mask [b, t, s] -> the same with n always-visible prefix slots in front."""
        if self.active is None:
            return k, v, mask
        p = self.adapters[self.active]
        b, n = k.shape[0], p.num_virtual_tokens
        pk = jnp.broadcast_to(p.key[...].astype(k.dtype), (b, *p.key.shape))
        pv = jnp.broadcast_to(p.value[...].astype(v.dtype), (b, *p.value.shape))
        seen = jnp.ones((b, mask.shape[1], n), bool)
        return jnp.concatenate([pk, k], 1), jnp.concatenate([pv, v], 1), jnp.concatenate([seen, mask], -1)


def add_prompt(model: nnx.Module, name: str, values: Array) -> None:
    hook = _hook(model)
    hook.adapters[name] = PromptEmbedding(values)


def add_prefix(model: nnx.Module, name: str, keys: Array, values: Array) -> None:
    """keys/values [layers, n, kv_heads, head_dim]."""
    _hook(model).adapters[name] = PrefixLength(keys.shape[1])
    for i, attn in enumerate(model.attention_layers()):
        if attn.prefix is None:
            attn.prefix = PrefixKV()
        attn.prefix.adapters[name] = PrefixWeights(keys[i], values[i])


def _hook(model: nnx.Module) -> VirtualTokens:
    if model.backbone.prompt is None:
        model.backbone.prompt = VirtualTokens()
    return model.backbone.prompt


def random_prompt(model: nnx.Module, n: int, dtype: Any, rngs: nnx.Rngs) -> Array:
    """Random vocabulary rows (PEFT's SAMPLE_VOCAB init), as the embedding layer outputs them."""
    ids = jax.random.randint(rngs.params(), (n,), 0, model.config.vocab_size)
    return vocab_prompt(model, ids, dtype)


def vocab_prompt(model: nnx.Module, ids: Any, dtype: Any) -> Array:
    """The embedding-layer outputs of `ids` (with Gemma's scale), the virtual tokens that mean that text."""
    return model.embed(jnp.asarray(ids, jnp.int32)).astype(dtype)


def vocab_prefix(model: nnx.Module, ids: Any, dtype: Any) -> tuple[Array, Array]:
    """Per-layer keys/values the base model computes for `ids` at positions 0..n-1: the prefix that makes the
    model behave as if `ids` preceded every sequence (outside sliding windows)."""
    return _cached_kv(model, jnp.asarray(ids, jnp.int32)[None], jnp.dtype(dtype))


@functools.partial(nnx.jit, static_argnums=2)
def _cached_kv(model: nnx.Module, ids: Array, dtype: Any) -> tuple[Array, Array]:
    n = ids.shape[1]
    _, cache = model.hidden_states(ids, positions=jnp.arange(n, dtype=jnp.int32)[None],
                                   attention_mask=jnp.ones((1, n), bool), cache=model.init_cache(1, n))
    return (jnp.stack([k[0] for k in cache["k"]]).astype(dtype),
            jnp.stack([v[0] for v in cache["v"]]).astype(dtype))


def random_prefix(model: nnx.Module, n: int, dtype: Any, rngs: nnx.Rngs) -> tuple[Array, Array]:
    """The keys/values of n random vocabulary tokens: on the scale real keys/values have."""
    ids = jax.random.randint(rngs.params(), (n,), 0, model.config.vocab_size)
    return vocab_prefix(model, ids, dtype)
