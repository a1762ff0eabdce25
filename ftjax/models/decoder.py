"""The rotary-position decoder shared by Llama, Mistral, Qwen 2/3 and Gemma 1/2/3.

Module attribute names mirror transformers' parameter names (`model.layers.3.self_attn.q_proj`), so the
checkpoint mapping in convert.py is mechanical. Families differ only through `ModelConfig` fields.
"""

from __future__ import annotations

import json
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from ftjax.models import attention as A, layers as L, scan
from ftjax.models.config import ModelConfig
from ftjax.models.hooks import Layout
from ftjax.models.remat import REMAT_POLICIES, rematerialised

Array = jax.Array


class Attention(nnx.Module):
    def __init__(self, cfg: ModelConfig, *, dtype: Any, rngs: nnx.Rngs):
        d, h = cfg.hidden_size, cfg.head_dim
        qkv = dict(bias=cfg.attention_bias, dtype=dtype, rngs=rngs)
        self.q_proj = L.Linear(d, cfg.num_heads * h, axes=("embed", "heads"), **qkv)
        self.k_proj = L.Linear(d, cfg.num_kv_heads * h, axes=("embed", "kv"), **qkv)
        self.v_proj = L.Linear(d, cfg.num_kv_heads * h, axes=("embed", "kv"), **qkv)
        self.o_proj = L.Linear(cfg.num_heads * h, d, bias=cfg.o_bias, axes=("heads", "embed"),
                               dtype=dtype, rngs=rngs)
        if cfg.qk_norm:
            self.q_norm = L.Norm(h, kind=cfg.norm_type, eps=cfg.norm_eps, dtype=dtype)
            self.k_norm = L.Norm(h, kind=cfg.norm_type, eps=cfg.norm_eps, dtype=dtype)
        self.cfg = cfg
        self.implementation = "reference"  # attention kernel (attention.py), set by CausalLM.set_attention
        self.prefix = nnx.data(None)  # hook: learned keys/values in front (models/hooks.py)

    def __call__(self, x: Array, positions: Array, mask: Array, kv: tuple[Array, Array] | None,
                 index: Array | None, inv_freq: Array) -> tuple[Array, tuple[Array, Array] | None]:
        cfg = self.cfg
        b, t, _ = x.shape
        q = self.q_proj(x).reshape(b, t, cfg.num_heads, cfg.head_dim)
        k = self.k_proj(x).reshape(b, t, cfg.num_kv_heads, cfg.head_dim)
        v = self.v_proj(x).reshape(b, t, cfg.num_kv_heads, cfg.head_dim)
        if cfg.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        q = L.apply_rope(q, positions, inv_freq)
        k = L.apply_rope(k, positions, inv_freq)
        if kv is not None:
            kv = (L.write_cache(kv[0], k, index), L.write_cache(kv[1], v, index))
            k, v = kv
        if self.prefix is not None:
            k, v, mask = self.prefix(k, v, A.dense(mask))
        out = A.attend(q, k, v, mask, scale=cfg.q_scale, softcap=cfg.attn_softcap, implementation=self.implementation)
        return self.o_proj(out.reshape(b, t, -1)), kv


class MLP(nnx.Module):
    """Gated feed-forward: down(act(gate(x)) * up(x))."""

    def __init__(self, cfg: ModelConfig, *, dtype: Any, rngs: nnx.Rngs):
        d, f = cfg.hidden_size, cfg.intermediate_size
        kw = dict(bias=cfg.mlp_bias, dtype=dtype, rngs=rngs)
        self.gate_proj = L.Linear(d, f, axes=("embed", "mlp"), **kw)
        self.up_proj = L.Linear(d, f, axes=("embed", "mlp"), **kw)
        self.down_proj = L.Linear(f, d, axes=("mlp", "embed"), **kw)
        self.act = L.activation(cfg.activation)

    def __call__(self, x: Array) -> Array:
        return self.down_proj(self.act(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nnx.Module):
    """One block; what differs between layers (rotary frequencies, window) comes in as arguments, so every block
    has the same structure and the stack can run under lax.scan (scan.py)."""

    def __init__(self, cfg: ModelConfig, *, dtype: Any, rngs: nnx.Rngs):
        norm = lambda: L.Norm(cfg.hidden_size, kind=cfg.norm_type, eps=cfg.norm_eps, dtype=dtype)
        self.input_layernorm = norm()
        self.self_attn = Attention(cfg, dtype=dtype, rngs=rngs)
        self.post_attention_layernorm = norm()
        if cfg.sandwich_norms:  # Gemma 2/3 normalise both the input and the output of each sub-block
            self.pre_feedforward_layernorm = norm()
            self.post_feedforward_layernorm = norm()
        self.mlp = MLP(cfg, dtype=dtype, rngs=rngs)
        self.sandwich = cfg.sandwich_norms

    def __call__(self, x, positions, mask, kv, index, inv_freq):
        a, kv = self.self_attn(self.input_layernorm(x), positions, mask, kv, index, inv_freq)
        if self.sandwich:
            x = x + self.post_attention_layernorm(a)
            return x + self.post_feedforward_layernorm(self.mlp(self.pre_feedforward_layernorm(x))), kv
        x = x + a
        return x + self.mlp(self.post_attention_layernorm(x)), kv


class Backbone(nnx.Module):
    def __init__(self, cfg: ModelConfig, *, dtype: Any, rngs: nnx.Rngs):
        self.embed_tokens = L.Embed(cfg.vocab_size, cfg.hidden_size, axes=("vocab", "embed"), dtype=dtype,
                                    rngs=rngs)
        self.layers = nnx.List([DecoderLayer(cfg, dtype=dtype, rngs=rngs) for _ in range(cfg.num_layers)])
        self.norm = L.Norm(cfg.hidden_size, kind=cfg.norm_type, eps=cfg.norm_eps, dtype=dtype)
        self.cfg = cfg
        self.remat = "none"  # what the backward pass recomputes (CausalLM.set_remat)
        self.attention = ("reference", None)  # kernel and mesh (CausalLM.set_attention): which masks to build
        self.prompt = nnx.data(None)  # hook: virtual input tokens (models/hooks.py)

    def embed(self, input_ids: Array) -> Array:
        x = self.embed_tokens(input_ids)
        if self.cfg.embed_scale:  # transformers rounds the scale to the activation dtype first
            x = x * jnp.asarray(self.cfg.hidden_size ** 0.5, x.dtype)
        return x

    def __call__(self, input_ids, positions, valid, segment_ids, cache):
        cfg = self.cfg
        x = self.embed(input_ids)
        if self.prompt is not None:
            x, positions, valid, segment_ids = self.prompt.prepend(x, positions, valid, segment_ids, cache)
        masks, cache = _masks(cfg, positions, valid, segment_ids, cache, self.attention)
        # per-layer rotary frequencies: constants under jit, never parameters
        ropes = [L.rope_inv_freq(cfg.rope_for(i), cfg.head_dim) for i in range(cfg.num_layers)]
        x, cache = run_layers(self.layers, x, positions, masks, [cfg.window_for(i) for i in range(cfg.num_layers)],
                              ropes, cache, advance=input_ids.shape[1], remat=self.remat)
        h = self.norm(x)
        return (h if self.prompt is None else self.prompt.strip(h)), cache


def run_layers(layers, x, positions, masks: dict, windows: list, ropes: list | None, cache, *, advance: int,
               remat: str):
    """Apply the blocks in order, threading each layer's slice of the KV cache (and rematerialising if asked):
    a Python loop over an nnx.List, or one lax.scan over StackedBlocks (scan.py). `masks` by window;
    `windows[i]` and `ropes[i]` (None: no rotary embedding) per layer."""
    index = None if cache is None else cache["index"]
    if isinstance(layers, scan.StackedBlocks):
        kv = None if cache is None else (cache["k"], cache["v"])
        x, kv = scan.run(layers, x, positions, masks, windows, ropes, kv, index, remat)
        if cache is not None:
            cache["k"], cache["v"] = kv
    else:
        for i, layer in enumerate(layers):
            kv = (cache["k"][i], cache["v"][i]) if cache is not None else None
            call = rematerialised(type(layer).__call__, remat)
            x, kv = call(layer, x, positions, masks[windows[i]], kv, index, None if ropes is None else ropes[i])
            if cache is not None:
                cache["k"][i], cache["v"][i] = kv
    if cache is not None:
        cache["index"] = index + advance
    return x, cache


def _masks(cfg: ModelConfig, positions, valid, segment_ids, cache, attention: tuple = ("reference", None)):
    """Attention masks keyed by window (None = full), and the cache with this chunk's slots recorded; for the
    splash kernel without a cache, each token's segment instead of a dense mask (attention.Segments)."""
    windows = tuple(dict.fromkeys(cfg.window_for(i) for i in range(cfg.num_layers)))
    if attention[0] == "splash" and cache is None:
        return A.segments(valid, segment_ids, windows, attention[1]), cache
    if cache is None:
        kv_pos, kv_valid = positions, valid
    else:
        # a list per layer is copied (the loop writes into it); a stacked cache [layers, ...] is replaced whole
        copy = lambda c: c if isinstance(c, jax.Array) else list(c)
        cache = dict(cache, k=copy(cache["k"]), v=copy(cache["v"]))
        cache["pos"] = L.write_cache(cache["pos"], positions, cache["index"])
        cache["valid"] = L.write_cache(cache["valid"], valid, cache["index"])
        kv_pos, kv_valid = cache["pos"], cache["valid"]
        segment_ids = None  # packing is a training-time feature; decoding rows are single sequences
    seg = (segment_ids, segment_ids) if segment_ids is not None else (None, None)
    return {w: L.attention_mask(positions, kv_pos, kv_valid, w, *seg) for w in windows}, cache


class CausalLM(nnx.Module):
    """A decoder-only language model: `model(input_ids)` -> logits [batch, seq, vocab]."""

    layout = Layout(backbone="model", blocks="layers", attention="self_attn",
                    key_value=("self_attn.k_proj", "self_attn.v_proj"), feedforward_out=("mlp.down_proj",))
    backbone_cls = Backbone

    def __init__(self, cfg: ModelConfig, *, dtype: Any = jnp.float32, rngs: nnx.Rngs):
        self.config = cfg
        self.dtype = dtype
        setattr(self, self.layout.backbone, self.backbone_cls(cfg, dtype=dtype, rngs=rngs))
        if not cfg.tie_embeddings:
            setattr(self, self.layout.head, L.Linear(cfg.hidden_size, cfg.vocab_size, bias=False,
                                                     axes=("embed", "vocab"), dtype=dtype, rngs=rngs))
        self.heads = nnx.data(None)  # hook: task heads beside the LM head (models/heads.py)

    @property
    def backbone(self) -> nnx.Module:
        """The decoder stack (hook point): embeds, runs the blocks, holds the `prompt` slot."""
        return getattr(self, self.layout.backbone)

    def attention_layers(self) -> list[nnx.Module]:
        """Every block's attention module, in order (hook point: each holds a `prefix` slot)."""
        blocks = getattr(self.backbone, self.layout.blocks)
        blocks = [blocks.block] if isinstance(blocks, scan.StackedBlocks) else blocks
        return [getattr(block, self.layout.attention) for block in blocks]

    def set_remat(self, policy: str | bool) -> None:
        """What the backward pass recomputes instead of storing: a `REMAT_POLICIES` name (True means full)."""
        policy = {True: "full", False: "none"}.get(policy, policy)
        if policy not in REMAT_POLICIES:
            raise ValueError(f"model.remat={policy!r}; choose one of {', '.join(REMAT_POLICIES)}")
        if policy == "offload" and jax.devices()[0].platform == "cpu":
            raise ValueError("model.remat=offload parks activations in host memory, which needs a GPU or TPU")
        self.backbone.remat = policy

    def set_attention(self, requested: str = "auto", mesh: Any = None) -> tuple[str, str]:
        """Pick every attention layer's kernel (attention.py); returns (implementation, why). `mesh`: the one
        the batch is split over, which a splash kernel runs under (shard_map)."""
        impl, why = A.resolve(requested, platform=jax.devices()[0].platform, dtype=self.dtype,
                              softcap=self.config.attn_softcap)
        for layer in self.attention_layers():
            layer.implementation = impl
        self.backbone.attention = (impl, mesh)
        return impl, why

    def embed(self, input_ids: Array) -> Array:
        """What the embedding layer hands the first block (Gemma's sqrt(d) scale included)."""
        return self.backbone.embed(input_ids)

    def __call__(self, input_ids: Array, *, positions: Array | None = None, attention_mask: Array | None = None,
                 segment_ids: Array | None = None) -> Array:
        positions, valid = default_positions(input_ids, positions, attention_mask)
        h, _ = self.backbone(input_ids, positions, valid, segment_ids, None)
        return self.logits(h)

    def hidden_states(self, input_ids: Array, *, positions: Array, attention_mask: Array,
                      segment_ids: Array | None = None, cache: dict | None = None) -> tuple[Array, dict | None]:
        """Final-norm hidden states [b, t, d] (and the updated cache): losses can pick the positions they need."""
        return self.backbone(input_ids, positions, attention_mask.astype(bool), segment_ids, cache)

    def logits(self, h: Array) -> Array:
        cfg = self.config
        out = self.backbone.embed_tokens.attend(h) if cfg.tie_embeddings else getattr(self, self.layout.head)(h)
        out = out.astype(jnp.float32)
        if cfg.final_softcap is not None:
            out = jnp.tanh(out / cfg.final_softcap) * cfg.final_softcap
        return out

    @property
    def hf_config(self) -> dict:
        """The transformers config dict of this model (written as config.json by save_pretrained)."""
        return json.loads(self.config.hf_config_json)

    def init_cache(self, batch: int, max_len: int) -> dict:
        cfg = self.config
        return L.init_cache(cfg.num_layers, batch, max_len, cfg.num_kv_heads, cfg.head_dim, self.dtype,
                            stacked=scan.is_stacked(self))


def default_positions(input_ids: Array, positions: Array | None, attention_mask: Array | None):
    """Positions count real tokens only, so left-padded rows start at 0 like unpadded ones."""
    valid = jnp.ones(input_ids.shape, bool) if attention_mask is None else attention_mask.astype(bool)
    if positions is None:
        positions = jnp.maximum(jnp.cumsum(valid, axis=-1) - 1, 0).astype(jnp.int32)
    return positions, valid
