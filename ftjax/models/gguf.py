"""Read llama.cpp GGUF checkpoints as a Hugging Face config dict + float32 state dict.

The facts about llama.cpp's conversion (convert_hf_to_gguf.py, and the hparams llama.cpp hard-codes
instead of storing) are undone here so that a transformers model built from the result matches
what llama.cpp runs.
"""

from __future__ import annotations

import math
import os
import re
from typing import TYPE_CHECKING, Any

import gguf
import numpy as np

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

# GGUF `general.architecture` -> Hugging Face model_type (the GGUF gemma3 holds only the text model).
_MODEL_TYPES = {
    "gemma": "gemma",
    "gemma2": "gemma2",
    "gemma3": "gemma3_text",
    "llama": "llama",
    "qwen2": "qwen2",
    "qwen3": "qwen3",
}
# llama.cpp stores Gemma RMSNorm weights as w + 1, since HF computes x * (1 + w) and llama.cpp x * w.
_PLUS_ONE_NORMS = {"gemma", "gemma2", "gemma3"}

_GLOBAL_NAMES = {
    "token_embd": "model.embed_tokens",
    "output_norm": "model.norm",
    "output": "lm_head",
}
_BLOCK_NAMES = {
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "attn_q_norm": "self_attn.q_norm",
    "attn_k_norm": "self_attn.k_norm",
    "ffn_norm": "post_attention_layernorm",
    "post_attention_norm": "post_attention_layernorm",
    "post_ffw_norm": "post_feedforward_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
# Gemma 2/3 have four norms per block: there `ffn_norm` is the pre-MLP one.
_SANDWICH_BLOCK_NAMES = _BLOCK_NAMES | {"ffn_norm": "pre_feedforward_layernorm"}


def _hf_name(gguf_name: str, arch: str) -> str | None:
    """The transformers parameter name of a GGUF tensor, or None when there is none."""
    base, _, suffix = gguf_name.rpartition(".")
    if suffix not in ("weight", "bias"):
        return None
    if base in _GLOBAL_NAMES:
        return f"{_GLOBAL_NAMES[base]}.{suffix}"
    m = re.fullmatch(r"blk\.(\d+)\.(\w+)", base)
    names = _SANDWICH_BLOCK_NAMES if arch in ("gemma2", "gemma3") else _BLOCK_NAMES
    if m is None or m[2] not in names:
        return None
    return f"model.layers.{m[1]}.{names[m[2]]}.{suffix}"


def _unpermute_rope(w: np.ndarray, n_head: int) -> np.ndarray:
    """Undo llama.cpp's `LlamaModel.permute` of Q/K rows (HF's rotate-half -> GGML's interleaved rope)."""
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _llama3_rope_scaling(factors: np.ndarray, theta: float, head_dim: int) -> dict[str, Any]:
    """Recover HF's `llama3` rope_scaling from llama.cpp's per-frequency divisors (`rope_freqs`).

    The file stores only the divisors; every Llama 3.x model uses low/high_freq_factor 1/4 and an
    8192 original context (also llama.cpp's converter defaults), so take those and check they reproduce
    the divisors exactly rather than fit them.
    """
    scaling = {
        "rope_type": "llama3",
        "factor": float(factors.max()),
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
    }
    old_ctx, lo, hi, factor = 8192, 1.0, 4.0, scaling["factor"]
    wavelen = 2 * math.pi * theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    smooth = (old_ctx / wavelen - lo) / (hi - lo)
    smoothed = 1 / ((1 - smooth) / factor + smooth)
    expected = np.where(wavelen < old_ctx / hi, 1.0, np.where(wavelen > old_ctx / lo, factor, smoothed))
    if factors.shape != (head_dim // 2,) or not np.allclose(factors, expected, rtol=1e-5, atol=0):
        raise ValueError("rope_freqs.weight is not Llama 3 rope scaling with the standard parameters; unsupported")
    return scaling


def _config(
    reader: gguf.GGUFReader, arch: str, shapes: dict[str, tuple[int, ...]], rope_freqs: np.ndarray | None
) -> dict[str, Any]:
    def get(key: str, default: Any = None) -> Any:
        field = reader.get_field(key)
        if field is None:
            return default
        if field.types == [gguf.GGUFValueType.FLOAT32]:
            # The shortest decimal that rounds to this float32 is the config.json value (1e-06, not 9.99...e-07).
            return float(str(np.float32(field.contents())))
        return field.contents()

    n_layer = get(f"{arch}.block_count")
    hidden = get(f"{arch}.embedding_length")
    n_head = get(f"{arch}.attention.head_count")
    # key_length is written where head_dim != hidden / heads (Gemma, Qwen3); llama also has it as the rope width.
    head_dim = get(f"{arch}.attention.key_length") or get(f"{arch}.rope.dimension_count") or hidden // n_head
    cfg: dict[str, Any] = {
        "model_type": _MODEL_TYPES[arch],
        "vocab_size": shapes["token_embd.weight"][0],  # rows of the (possibly padded) embedding
        "hidden_size": hidden,
        "intermediate_size": get(f"{arch}.feed_forward_length"),
        "num_hidden_layers": n_layer,
        "num_attention_heads": n_head,
        "num_key_value_heads": get(f"{arch}.attention.head_count_kv", n_head),
        "head_dim": head_dim,
        "rms_norm_eps": get(f"{arch}.attention.layer_norm_rms_epsilon"),
        "max_position_embeddings": get(f"{arch}.context_length"),
        "rope_theta": get(f"{arch}.rope.freq_base", 10000.0),
        # llama.cpp writes `output.weight` only when it is not the embedding matrix.
        "tie_word_embeddings": "output.weight" not in shapes,
    }
    for key, hf_key in (("bos", "bos_token_id"), ("eos", "eos_token_id"), ("padding", "pad_token_id")):
        if (token := get(f"tokenizer.ggml.{key}_token_id")) is not None:
            cfg[hf_key] = token

    scaling = get(f"{arch}.rope.scaling.type", "none")
    if scaling in ("linear", "yarn"):
        cfg["rope_scaling"] = {"rope_type": scaling, "factor": get(f"{arch}.rope.scaling.factor")}
        if scaling == "yarn":
            original = get(f"{arch}.rope.scaling.original_context_length")
            cfg["rope_scaling"]["original_max_position_embeddings"] = original
    elif scaling != "none":
        raise ValueError(f"unsupported GGUF rope scaling type {scaling!r} (supported: linear, yarn)")

    if arch == "qwen2":
        del cfg["head_dim"]  # not a Qwen2Config field: always hidden / heads there
    if arch == "llama":
        # Mistral GGUFs are `llama` files; llama.cpp ignores Mistral's sliding window, so drop it too.
        if "mistral" in get("general.name", "").lower():
            cfg.update(model_type="mistral", sliding_window=None)
        else:
            cfg["attention_bias"] = "blk.0.attn_q.bias" in shapes
            cfg["mlp_bias"] = "blk.0.ffn_up.bias" in shapes
        if rope_freqs is not None:
            cfg["rope_scaling"] = _llama3_rope_scaling(rope_freqs, cfg["rope_theta"], head_dim)
    if arch in ("gemma2", "gemma3"):
        cfg["sliding_window"] = get(f"{arch}.attention.sliding_window")
        cfg["attn_logit_softcapping"] = get(f"{arch}.attn_logit_softcapping")
        cfg["final_logit_softcapping"] = get(f"{arch}.final_logit_softcapping")
        # llama.cpp hard-codes the query scale, 1/sqrt(hidden/heads) for the 27B models, else 1/sqrt(head_dim),
        is_27b = n_layer == {"gemma2": 46, "gemma3": 62}[arch]
        cfg["query_pre_attn_scalar"] = hidden // n_head if is_27b else head_dim
        # ... and, unless the file states one, the sliding pattern: every 2nd (Gemma 2) / 6th (Gemma 3) layer global.
        pattern = get(f"{arch}.attention.sliding_window_pattern", 2 if arch == "gemma2" else 6)
        sliding = pattern if isinstance(pattern, list) else [(i + 1) % pattern != 0 for i in range(n_layer)]
        cfg["layer_types"] = ["sliding_attention" if s else "full_attention" for s in sliding]
    if arch == "gemma3":
        cfg["rope_local_base_freq"] = get(f"{arch}.rope.freq_base_swa", 10000.0)  # llama.cpp's hard-coded value
    return cfg


def read_gguf(path: str | os.PathLike) -> tuple[dict, dict[str, np.ndarray]]:
    """Read a GGUF file: returns (hf_config, state_dict).

    hf_config: config.json-style keys; `AutoConfig.for_model(hf_config.pop('model_type'), **hf_config)`
    builds the matching transformers config. state_dict: transformers parameter names -> float32 numpy
    arrays in transformers' layouts ([out, in] for Linear weights), dequantized with `gguf`.
    Raises ValueError for an unsupported architecture or a tensor with no transformers counterpart.
    """
    reader = gguf.GGUFReader(path)
    field = reader.get_field("general.architecture")
    arch = None if field is None else field.contents()
    if arch not in _MODEL_TYPES:
        raise ValueError(f"unsupported GGUF architecture {arch!r} (supported: {', '.join(sorted(_MODEL_TYPES))})")
    by_name = {t.name: t for t in reader.tensors}
    # Llama 3's rope_freqs has no parameter: it becomes the config's rope_scaling.
    extra = {"rope_freqs.weight"} if arch == "llama" else set()
    unmapped = [n for n in by_name if n not in extra and _hf_name(n, arch) is None]
    if unmapped:
        raise ValueError(f"GGUF tensors with no transformers counterpart for {arch}: {', '.join(unmapped)}")

    def load(name: str) -> np.ndarray:
        t = by_name[name]
        w = gguf.quants.dequantize(t.data, t.tensor_type)
        # F32 tensors come back as views of the memory-mapped file: copy so the result owns its memory.
        return w.copy() if np.may_share_memory(w, reader.data) else w

    shapes = {n: tuple(int(d) for d in reversed(t.shape)) for n, t in by_name.items()}  # GGUF: innermost dim first
    rope_freqs = load("rope_freqs.weight") if arch == "llama" and "rope_freqs.weight" in by_name else None
    config = _config(reader, arch, shapes, rope_freqs)

    state: dict[str, np.ndarray] = {}
    for name in (n for n in by_name if n not in extra):  # one at a time: never more than one temporary
        w = load(name)
        kind = name.rsplit(".", 2)[-2]
        if arch == "llama" and kind in ("attn_q", "attn_k"):
            w = _unpermute_rope(w, config["num_attention_heads" if kind == "attn_q" else "num_key_value_heads"])
        if arch in _PLUS_ONE_NORMS and kind.endswith("norm"):
            w -= 1.0
        state[_hf_name(name, arch)] = w
    return config, state


def gguf_tokenizer(path: str | os.PathLike) -> PreTrainedTokenizerBase:
    """The tokenizer (with the chat template, if the file has one) from the GGUF metadata.

    Built with `gguf` and `tokenizers` (ftjax.models.gguf_tokenizer), not transformers' GGUF loader, which
    needs torch. Supports the `llama` (SentencePiece) and `gpt2` (byte-level BPE) tokenizer models.
    """
    from ftjax.models.gguf_tokenizer import tokenizer_from_gguf

    return tokenizer_from_gguf(path)
