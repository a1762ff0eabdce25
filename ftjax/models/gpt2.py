"""GPT-2: learned absolute positions, LayerNorm, fused qkv (`c_attn`), plain GELU MLP, tied head.

Attribute names mirror transformers (`transformer.h.0.attn.c_attn`); kernels are [in, out], which is also
the layout of GPT-2's Conv1D weights, so conversion needs no transpose for this family.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from ftjax.models import layers as L
from ftjax.models.config import ModelConfig
from ftjax.models.decoder import CausalLM, _masks, run_layers

Array = jax.Array


class GPT2Attention(nnx.Module):
    def __init__(self, cfg: ModelConfig, *, dtype: Any, rngs: nnx.Rngs):
        d = cfg.hidden_size
        self.c_attn = L.Linear(d, 3 * d, bias=True, axes=("embed", "heads"), dtype=dtype, rngs=rngs)
        self.c_proj = L.Linear(d, d, bias=True, axes=("heads", "embed"), dtype=dtype, rngs=rngs)
        self.cfg = cfg

    def __call__(self, x, positions, mask, kv, index):
        cfg = self.cfg
        b, t, _ = x.shape
        q, k, v = (y.reshape(b, t, cfg.num_heads, cfg.head_dim) for y in jnp.split(self.c_attn(x), 3, -1))
        if kv is not None:
            kv = (L.write_cache(kv[0], k, index), L.write_cache(kv[1], v, index))
            k, v = kv
        if hasattr(self, "prefix"):  # prefix tuning (ftjax.peft.prompt) adds learned keys/values
            k, v, mask = self.prefix(k, v, mask)
        out = L.attend(q, k, v, mask, scale=cfg.q_scale, softcap=None)
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

    def __call__(self, x, positions, mask, kv, index):
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
        self.remat = False

    @property
    def embed_tokens(self) -> L.Embed:  # the name the shared CausalLM head uses
        return self.wte

    def __call__(self, input_ids, positions, valid, segment_ids, cache):
        x = self.wte(input_ids)
        prompt = getattr(self, "prompt", None)  # prompt/prefix tuning (ftjax.peft.prompt): virtual tokens
        if prompt is not None:
            x, positions, valid, segment_ids = prompt.prepend(x, positions, valid, segment_ids, cache)
        x = x + self.wpe(positions)
        masks, cache = _masks(self.cfg, positions, valid, segment_ids, cache)
        x, cache = run_layers(self.h, x, positions, [masks[None]] * len(self.h), cache,
                              advance=input_ids.shape[1], remat=self.remat)
        h = self.ln_f(x)
        return (h if prompt is None else prompt.strip(h)), cache


class GPT2LM(CausalLM):
    """GPT2LMHeadModel: the shared CausalLM with a GPT-2 backbone under `transformer`."""

    backbone_name, backbone_cls = "transformer", GPT2Backbone

    @property
    def model(self) -> GPT2Backbone:
        return self.transformer
