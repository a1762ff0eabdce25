"""GPT-2: learned absolute positions, LayerNorm, fused qkv (`c_attn`), plain GELU MLP, tied head.

Attribute names mirror transformers (`transformer.h.0.attn.c_attn`); kernels are [in, out], which is also
the layout of GPT-2's Conv1D weights, so conversion needs no transpose for this family (`hf_kernels_in_out`).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from ftjax.models import attention as A, layers as L
from ftjax.models.config import ModelConfig
from ftjax.models.decoder import CausalLM, _masks, run_layers
from ftjax.models.hooks import Layout

Array = jax.Array


class GPT2Attention(nnx.Module):
    def __init__(self, cfg: ModelConfig, *, dtype: Any, rngs: nnx.Rngs):
        d = cfg.hidden_size
        self.c_attn = L.Linear(d, 3 * d, bias=True, axes=("embed", "heads"), dtype=dtype, rngs=rngs)
        self.c_proj = L.Linear(d, d, bias=True, axes=("heads", "embed"), dtype=dtype, rngs=rngs)
        self.cfg = cfg
        self.implementation = "reference"  # attention kernel (attention.py), set by CausalLM.set_attention
        self.prefix = nnx.data(None)  # hook: learned keys/values in front (models/hooks.py)

    def __call__(self, x, positions, mask, kv, index, inv_freq=None):  # no rotary embedding in GPT-2
        cfg = self.cfg
        b, t, _ = x.shape
        q, k, v = (y.reshape(b, t, cfg.num_heads, cfg.head_dim) for y in jnp.split(self.c_attn(x), 3, -1))
        if kv is not None:
            kv = (L.write_cache(kv[0], k, index), L.write_cache(kv[1], v, index))
            k, v = kv
        if self.prefix is not None:
            k, v, mask = self.prefix(k, v, A.dense(mask))
        out = A.attend(q, k, v, mask, scale=cfg.q_scale, softcap=None, implementation=self.implementation)
        return self.c_proj(out.reshape(b, t, -1)), kv


class GPT2MLP(nnx.Module):
    def __init__(self, cfg: ModelConfig, *, dtype: Any, rngs: nnx.Rngs):
        d, f = cfg.hidden_size, cfg.intermediate_size
        self.c_fc = L.Linear(d, f, bias=True, axes=("embed", "mlp"), dtype=dtype, rngs=rngs)
        self.c_proj = L.Linear(f, d, bias=True, axes=("mlp", "embed"), dtype=dtype, rngs=rngs)
        self.act = L.activation(cfg.activation)

    def __call__(self, x):
        return self.c_proj(self.act(self.c_fc(x)))


class GPT2Block(nnx.Module):
    def __init__(self, cfg: ModelConfig, *, dtype: Any, rngs: nnx.Rngs):
        norm = lambda: L.Norm(cfg.hidden_size, kind="layernorm", eps=cfg.norm_eps, dtype=dtype)
        self.ln_1, self.ln_2 = norm(), norm()
        self.attn = GPT2Attention(cfg, dtype=dtype, rngs=rngs)
        self.mlp = GPT2MLP(cfg, dtype=dtype, rngs=rngs)

    def __call__(self, x, positions, mask, kv, index, inv_freq=None):
        a, kv = self.attn(self.ln_1(x), positions, mask, kv, index)
        x = x + a
        return x + self.mlp(self.ln_2(x)), kv


class GPT2Backbone(nnx.Module):
    def __init__(self, cfg: ModelConfig, *, dtype: Any, rngs: nnx.Rngs):
        self.wte = L.Embed(cfg.vocab_size, cfg.hidden_size, axes=("vocab", "embed"), dtype=dtype, rngs=rngs)
        self.wpe = L.Embed(cfg.max_position_embeddings, cfg.hidden_size, axes=(None, "embed"), dtype=dtype,
                           rngs=rngs)
        self.h = nnx.List([GPT2Block(cfg, dtype=dtype, rngs=rngs) for _ in range(cfg.num_layers)])
        self.ln_f = L.Norm(cfg.hidden_size, kind="layernorm", eps=cfg.norm_eps, dtype=dtype)
        self.cfg = cfg
        self.remat = "none"
        self.attention = ("reference", None)  # kernel and mesh (CausalLM.set_attention)
        self.prompt = nnx.data(None)  # hook: virtual input tokens (models/hooks.py)

    @property
    def embed_tokens(self) -> L.Embed:  # the name the shared CausalLM head uses
        return self.wte

    def embed(self, input_ids: Array) -> Array:
        return self.wte(input_ids)  # positions are added after any virtual tokens

    def __call__(self, input_ids, positions, valid, segment_ids, cache):
        x = self.embed(input_ids)
        if self.prompt is not None:
            x, positions, valid, segment_ids = self.prompt.prepend(x, positions, valid, segment_ids, cache)
        x = x + self.wpe(positions)
        masks, cache = _masks(self.cfg, positions, valid, segment_ids, cache, self.attention)
        x, cache = run_layers(self.h, x, positions, masks, [None] * len(self.h), None, cache,
                              advance=input_ids.shape[1], remat=self.remat)
        h = self.ln_f(x)
        return (h if self.prompt is None else self.prompt.strip(h)), cache


class GPT2LM(CausalLM):
    """GPT2LMHeadModel: the shared CausalLM with a GPT-2 backbone under `transformer`."""

    layout = Layout(backbone="transformer", blocks="h", attention="attn", key_value=("attn.c_attn",),
                    feedforward_out=("mlp.c_proj",), hf_kernels_in_out=True)
    backbone_cls = GPT2Backbone
