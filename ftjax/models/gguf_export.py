"""Write a model as a llama.cpp GGUF file: the inverse of gguf.py's reader (llama.cpp's conventions applied:
Llama's Q/K rows permuted for its interleaved rope, Gemma's RMSNorm weights stored as w + 1, tensor names from
the `gguf` package's own name map, hyper-parameters under `{arch}.*`), and the tokenizer's vocabulary, merges,
token types, special ids and chat template under `tokenizer.*`.

Weights: `f32`, `f16`, `bf16` or `q8_0` (blocks of 32 with one scale, llama.cpp's Q8_0, quantised by the `gguf`
package); vectors (norms, biases) always stay float32, as llama.cpp's converter keeps them, and a matrix whose
rows do not split into 32-wide blocks falls back to f16. What llama.cpp cannot represent is refused in one line
rather than written wrong: a Gemma query scale other than the one llama.cpp hard-codes, rope scaling other than
linear or Llama 3's, a tokenizer that is not BPE.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gguf
import numpy as np

from ftjax.io import atomic_file
from ftjax.models.convert import to_hf_state_dict

log = logging.getLogger(__name__)

# transformers model_type -> GGUF general.architecture (the reader's map, inverted; Mistral files are `llama`)
ARCHS = {"llama": "llama", "mistral": "llama", "qwen2": "qwen2", "qwen3": "qwen3", "gemma": "gemma",
         "gemma2": "gemma2", "gemma3_text": "gemma3"}
TYPES = {"f32": gguf.GGMLQuantizationType.F32, "f16": gguf.GGMLQuantizationType.F16,
         "bf16": gguf.GGMLQuantizationType.BF16, "q8_0": gguf.GGMLQuantizationType.Q8_0}
FILE_TYPES = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
              "bf16": gguf.LlamaFileType.MOSTLY_BF16, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}
_PRE = {"llama": "llama-bpe", "qwen2": "qwen2", "qwen3": "qwen2"}  # byte-level pre-tokenizer regex by arch
_SPACE = "\u2581"


def write_gguf(model: Any, path: str | os.PathLike, tokenizer: Any, weights: str = "f16",
               name: str | None = None) -> Path:
    """Write `model` (a plain CausalLM: merge adapters first) and `tokenizer` (a transformers fast tokenizer) to
    the GGUF file `path`, which appears only when complete."""
    if weights not in TYPES:
        raise ValueError(f"GGUF weights {weights!r}; choose from {', '.join(TYPES)}")
    if getattr(model, "heads", None) is not None:
        raise ValueError("a task head has no GGUF form; export a classifier with --format=merged or --format=peft")
    arch, names = gguf_arch(model)
    hf, cfg = model.hf_config, model.config
    writer_meta = _metadata(hf, cfg, arch, name or hf.get("_name_or_path") or f"ftjax {hf['model_type']}")
    vocab = _vocabulary(tokenizer, arch, cfg.vocab_size)
    state = to_hf_state_dict(model)
    if hf.get("tie_word_embeddings", False):
        state.pop("lm_head.weight", None)

    def fill(w: gguf.GGUFWriter) -> None:
        for key, value in writer_meta.items():
            getattr(w, f"add_{key}")(value)
        w.add_file_type(FILE_TYPES[weights])
        for key, value in vocab.items():
            getattr(w, f"add_{key}")(value)
        for hf_name, array in state.items():
            w.add_tensor(*_tensor(names, hf_name, array, arch, cfg, weights))
        rope_freqs = _llama3_divisors(cfg) if arch == "llama" else None
        if rope_freqs is not None:
            w.add_tensor("rope_freqs.weight", rope_freqs)

    return write_file(path, arch, fill)


def gguf_arch(model: Any) -> tuple[str, Any]:
    """(GGUF `general.architecture`, the `gguf` package's tensor-name map) of a model; other families refused."""
    model_type = model.hf_config.get("model_type")
    if model_type not in ARCHS:
        raise ValueError(f"GGUF export supports {', '.join(sorted(ARCHS))}; this model is {model_type!r}")
    arch = ARCHS[model_type]
    key = next(k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == arch)
    return arch, gguf.get_tensor_name_map(key, model.config.num_layers)


def write_file(path: str | os.PathLike, arch: str, fill: Callable[[gguf.GGUFWriter], None]) -> Path:
    """A GGUF file at `path`, its metadata and tensors added by `fill(writer)`; it appears only when complete."""
    path = Path(path)
    with atomic_file(path) as tmp:
        w = gguf.GGUFWriter(tmp, arch)
        fill(w)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
    return path


def permute_rope_rows(a: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's permutation of Llama's Q/K output rows: HF's rotate-half pairs -> GGML's interleaved pairs (the
    inverse of gguf.py's `_unpermute_rope`)."""
    return a.reshape(heads, 2, a.shape[0] // heads // 2, *a.shape[1:]).swapaxes(1, 2).reshape(a.shape)


def encoded(a: np.ndarray, weights: str) -> tuple:
    """`GGUFWriter.add_tensor`'s array (and raw shape, type) after it: float32 as is, else quantised."""
    return (a,) if weights == "f32" else (gguf.quants.quantize(a, TYPES[weights]), None, TYPES[weights])


def _tensor(names: Any, hf_name: str, a: np.ndarray, arch: str, cfg: Any, weights: str) -> tuple:
    name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
    if name is None:
        raise ValueError(f"{hf_name} has no GGUF name for {arch}")
    a = np.asarray(a, np.float32)
    kind = name.rsplit(".", 2)[-2]
    if arch == "llama" and kind in ("attn_q", "attn_k"):
        a = permute_rope_rows(a, cfg.num_heads if kind == "attn_q" else cfg.num_kv_heads)
    if arch.startswith("gemma") and kind.endswith("norm"):
        a = a + 1.0  # llama.cpp multiplies by w; Gemma's HF norm by 1 + w
    if a.ndim < 2:
        return name, a
    return (name, *encoded(a, "f16" if weights == "q8_0" and a.shape[-1] % 32 else weights))


def _metadata(hf: dict, cfg: Any, arch: str, name: str) -> dict[str, Any]:
    """GGUF hyper-parameters as (writer method suffix -> value), in the order llama.cpp's converter writes."""
    meta: dict[str, Any] = {
        "name": name, "context_length": cfg.max_position_embeddings, "embedding_length": cfg.hidden_size,
        "feed_forward_length": cfg.intermediate_size, "block_count": cfg.num_layers, "head_count": cfg.num_heads,
        "head_count_kv": cfg.num_kv_heads, "layer_norm_rms_eps": cfg.norm_eps, "vocab_size": cfg.vocab_size,
    }
    if cfg.rope is not None:
        meta["rope_freq_base"] = cfg.rope.theta
    if arch == "llama":
        meta["rope_dimension_count"] = cfg.head_dim
        if hf.get("model_type") == "mistral" and hf.get("sliding_window"):
            log.warning("llama.cpp ignores Mistral's sliding window (%s); the GGUF attends to the whole context",
                        hf["sliding_window"])
        if "mistral" not in name.lower() and hf.get("model_type") == "mistral":
            meta["name"] = f"{name} (mistral)"  # the reader tells Mistral files by their name
    if arch != "qwen2":
        meta["key_length"] = meta["value_length"] = cfg.head_dim
    scaling = (cfg.rope.type if cfg.rope is not None else "default")
    if scaling == "linear":
        meta["rope_scaling_type"] = gguf.RopeScalingType.LINEAR
        meta["rope_scaling_factor"] = cfg.rope.factor
    elif scaling not in ("default", "llama3") or (scaling == "llama3" and arch != "llama"):
        raise ValueError(f"GGUF export: rope scaling {scaling!r} is not supported (linear, llama3)")
    elif scaling == "llama3" and (cfg.rope.low_freq_factor, cfg.rope.high_freq_factor,
                                  cfg.rope.original_max_position_embeddings) != (1.0, 4.0, 8192):
        raise ValueError("GGUF export: a GGUF holds Llama 3 rope scaling only as frequency divisors, which readers "
                         "map back to the standard low/high factors 1/4 and 8192 original positions; this model "
                         "uses others")
    if arch in ("gemma2", "gemma3"):
        meta["sliding_window"] = cfg.sliding_window
        n, heads = cfg.num_layers, cfg.num_heads
        hard_coded = cfg.hidden_size // heads if n == {"gemma2": 46, "gemma3": 62}[arch] else cfg.head_dim
        wanted = hf.get("query_pre_attn_scalar", cfg.head_dim)
        if wanted != hard_coded:
            raise ValueError(f"llama.cpp fixes this Gemma's query scale to 1/sqrt({hard_coded}); the model uses "
                             f"query_pre_attn_scalar={wanted}, which a GGUF cannot state")
    if arch == "gemma2":
        meta["attn_logit_softcapping"] = cfg.attn_softcap
        meta["final_logit_softcapping"] = cfg.final_softcap
    if arch == "gemma3":
        meta["sliding_window_pattern"] = [t == "sliding_attention" for t in cfg.layer_types]
        meta["rope_freq_base_swa"] = (cfg.rope_local or cfg.rope).theta
        if cfg.final_softcap is not None:
            meta["final_logit_softcapping"] = cfg.final_softcap
    return meta


def _llama3_divisors(cfg: Any) -> np.ndarray | None:
    """llama.cpp's `rope_freqs`: what each default rotary frequency is divided by under Llama 3 scaling."""
    rope = cfg.rope
    if rope is None or rope.type != "llama3":
        return None
    from ftjax.models.layers import rope_inv_freq

    default = 1.0 / rope.theta ** (np.arange(0, cfg.head_dim, 2, dtype=np.float64) / cfg.head_dim)
    return (default / np.asarray(rope_inv_freq(rope, cfg.head_dim), np.float64)).astype(np.float32)


def _vocabulary(tokenizer: Any, arch: str, vocab_size: int) -> dict[str, Any]:
    """The `tokenizer.*` metadata of a transformers fast tokenizer whose model is BPE: SentencePiece style (byte
    fallback, "▁" for spaces; GGUF model `llama`) or byte-level (GGUF model `gpt2`). The vocabulary is padded to
    the embedding's rows with unused tokens, as llama.cpp's converter does."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ValueError("GGUF export needs a fast (tokenizers) tokenizer")
    spec = json.loads(backend.to_str())
    model = spec["model"]
    if model.get("type") != "BPE":
        raise ValueError(f"GGUF export supports BPE tokenizers (SentencePiece-style or byte-level); this one is "
                         f"{model.get('type')}")
    byte_level = "ByteLevel" in json.dumps(spec.get("pre_tokenizer")) or "ByteLevel" in json.dumps(spec.get("decoder"))
    ids = dict(model["vocab"])
    special = {}
    for added in spec.get("added_tokens", []):
        ids[added["content"]] = added["id"]
        special[added["id"]] = added.get("special", False)
    size = max(vocab_size, max(ids.values()) + 1)
    if size > vocab_size:
        raise ValueError(f"the tokenizer has {size} tokens but the model's embedding only {vocab_size}")
    tokens = [f"[PAD{i}]" for i in range(size)]
    types = [gguf.TokenType.UNUSED] * size
    for token, i in ids.items():
        tokens[i] = token
        types[i] = gguf.TokenType.NORMAL
    for i, is_special in special.items():
        types[i] = gguf.TokenType.CONTROL if is_special else gguf.TokenType.USER_DEFINED
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    out: dict[str, Any] = {}
    if byte_level:
        out |= {"tokenizer_model": "gpt2", "tokenizer_pre": _pre_tokenizer_name(spec, arch)}
    else:
        if not model.get("byte_fallback"):
            raise ValueError("GGUF export: a SentencePiece-style BPE tokenizer needs byte_fallback (llama.cpp's "
                             "`llama` vocabulary)")
        out["tokenizer_model"] = "llama"
        for i, token in enumerate(tokens):
            if len(token) == 6 and token.startswith("<0x") and token.endswith(">"):
                types[i] = gguf.TokenType.BYTE
        # llama.cpp's SentencePiece BPE merges the pair whose piece scores highest: the merge rank, negated
        rank = {left + right: -float(r) for r, (left, _, right) in enumerate(m.partition(" ") for m in merges)}
        out["token_scores"] = [rank.get(t, -float(len(merges) + i)) for i, t in enumerate(tokens)]
        if arch.startswith("gemma"):  # Gemma's file spells runs of 2+ spaces as spaces, not "▁"
            tokens = [" " * len(t) if len(t) > 1 and set(t) == {_SPACE} else t for t in tokens]
        else:
            out["add_space_prefix"] = _space_prefix(spec)
    out |= {"token_list": tokens, "token_types": types, "token_merges": merges}
    if tokenizer.unk_token_id is not None:
        types[tokenizer.unk_token_id] = gguf.TokenType.UNKNOWN
    for key, value in (("bos_token_id", tokenizer.bos_token_id), ("eos_token_id", tokenizer.eos_token_id),
                       ("unk_token_id", tokenizer.unk_token_id), ("pad_token_id", tokenizer.pad_token_id)):
        if value is not None:
            out[key] = int(value)
    probe = tokenizer("a")["input_ids"]
    out["add_bos_token"] = tokenizer.bos_token_id is not None and probe[:1] == [tokenizer.bos_token_id]
    out["add_eos_token"] = tokenizer.eos_token_id is not None and probe[-1:] == [tokenizer.eos_token_id]
    if isinstance(getattr(tokenizer, "chat_template", None), str):
        out["chat_template"] = tokenizer.chat_template
    return out


def _pre_tokenizer_name(spec: dict, arch: str) -> str:
    """llama.cpp's name (`tokenizer.ggml.pre`) for the split regex of a byte-level tokenizer: the name the
    reader (gguf_tokenizer.py) maps to that same regex, else the architecture's usual one."""
    from ftjax.models.gguf_tokenizer import PRE_REGEXES

    text = json.dumps(spec.get("pre_tokenizer"))
    for name in ("llama-bpe", "qwen2", "qwen35", "gpt-4o"):
        if json.dumps(PRE_REGEXES[name])[1:-1] in text:
            return name
    return _PRE.get(arch, "default")


def _space_prefix(spec: dict) -> bool:
    """Whether a SentencePiece-style tokenizer puts "▁" in front of the text (its Metaspace prepend scheme)."""
    text = json.dumps(spec.get("pre_tokenizer")) + json.dumps(spec.get("normalizer"))
    return '"prepend_scheme": "first"' in text or '"prepend_scheme": "always"' in text or "Prepend" in text

