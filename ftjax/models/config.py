"""One frozen config for every ported decoder family, built from a transformers config.

transformers parses config.json (defaults, legacy keys, `layer_types`, `rope_parameters`); this module only
reads the parsed object, so every family's quirks live in one table-like function.
"""

from __future__ import annotations

import dataclasses
from typing import Any

SUPPORTED_MODEL_TYPES = (
    "llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "gpt2",
)
SUPPORTED_ROPE_TYPES = ("default", "linear", "llama3")


@dataclasses.dataclass(frozen=True)
class RopeConfig:
    theta: float
    type: str = "default"
    factor: float = 1.0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_position_embeddings: int = 8192


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Architecture of a decoder-only LM. `layer_types[i]` is 'full_attention' or 'sliding_attention'."""

    model_type: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    layer_types: tuple[str, ...]
    sliding_window: int | None = None
    norm_eps: float = 1e-6
    # 'rms' (w * x), 'rms_gemma' ((1 + w) * x), 'layernorm' (GPT-2)
    norm_type: str = "rms"
    activation: str = "silu"
    tie_embeddings: bool = False
    attention_bias: bool = False  # bias on q/k/v (and o when o_bias)
    o_bias: bool = False
    mlp_bias: bool = False
    qk_norm: bool = False
    sandwich_norms: bool = False  # Gemma 2/3: post-attention and pre/post-feedforward norms
    embed_scale: bool = False  # Gemma: embeddings times sqrt(hidden_size)
    query_scale: float | None = None  # defaults to head_dim ** -0.5
    attn_softcap: float | None = None
    final_softcap: float | None = None
    rope: RopeConfig | None = None  # None: learned absolute positions (GPT-2)
    rope_local: RopeConfig | None = None  # rope for sliding layers when it differs (Gemma 3)
    max_position_embeddings: int = 2048
    bos_token_id: int | None = None
    eos_token_id: int | tuple[int, ...] | None = None
    pad_token_id: int | None = None
    # the transformers config.json this was built from, written back by save_pretrained
    hf_config_json: str = dataclasses.field(default="{}", compare=False, repr=False)

    @property
    def q_scale(self) -> float:
        return self.query_scale if self.query_scale is not None else self.head_dim ** -0.5

    def rope_for(self, layer: int) -> RopeConfig | None:
        if self.rope_local is not None and self.layer_types[layer] == "sliding_attention":
            return self.rope_local
        return self.rope

    def window_for(self, layer: int) -> int | None:
        return self.sliding_window if self.layer_types[layer] == "sliding_attention" else None

    @property
    def eos_ids(self) -> tuple[int, ...]:
        e = self.eos_token_id
        return () if e is None else (e,) if isinstance(e, int) else tuple(e)


def _rope(params: dict[str, Any]) -> RopeConfig:
    kind = params.get("rope_type", params.get("type", "default"))
    if kind not in SUPPORTED_ROPE_TYPES:
        raise ValueError(f"unsupported rope_type {kind!r}; supported: {', '.join(SUPPORTED_ROPE_TYPES)}")
    keys = {f.name for f in dataclasses.fields(RopeConfig)} - {"theta", "type"}
    return RopeConfig(theta=float(params["rope_theta"]), type=kind,
                      **{k: params[k] for k in keys if params.get(k) is not None})


def _tuple(x: Any) -> Any:
    return tuple(x) if isinstance(x, list) else x


def from_hf(hf: Any) -> ModelConfig:
    """Build a ModelConfig from a parsed transformers `PretrainedConfig`."""
    mt = hf.model_type
    if mt not in SUPPORTED_MODEL_TYPES:
        raise ValueError(f"unsupported model_type {mt!r}; supported: {', '.join(SUPPORTED_MODEL_TYPES)}")
    common = dict(model_type=mt, vocab_size=hf.vocab_size, bos_token_id=hf.bos_token_id,
                  eos_token_id=_tuple(hf.eos_token_id), pad_token_id=hf.pad_token_id,
                  tie_embeddings=bool(getattr(hf, "tie_word_embeddings", False)),
                  hf_config_json=hf.to_json_string(use_diff=False))
    if mt == "gpt2":
        n = hf.n_layer
        return ModelConfig(
            **common, hidden_size=hf.n_embd, intermediate_size=hf.n_inner or 4 * hf.n_embd, num_layers=n,
            num_heads=hf.n_head, num_kv_heads=hf.n_head, head_dim=hf.n_embd // hf.n_head,
            layer_types=("full_attention",) * n, norm_eps=hf.layer_norm_epsilon, norm_type="layernorm",
            activation=hf.activation_function, attention_bias=True, o_bias=True, mlp_bias=True,
            query_scale=None if hf.scale_attn_weights else 1.0, max_position_embeddings=hf.n_positions)

    n = hf.num_hidden_layers
    head_dim = getattr(hf, "head_dim", None) or hf.hidden_size // hf.num_attention_heads
    rp = hf.rope_parameters
    rope = _rope(rp.get("full_attention", rp))
    rope_local = _rope(rp["sliding_attention"]) if "sliding_attention" in rp else None
    window = getattr(hf, "sliding_window", None)
    layer_types = getattr(hf, "layer_types", None)
    if mt == "qwen2" or mt == "qwen3":
        window = window if getattr(hf, "use_sliding_window", False) else None
    if layer_types is None:
        layer_types = ("sliding_attention" if window else "full_attention",) * n
    if window is None:  # a config may list sliding layers with no window (Qwen with use_sliding_window off)
        layer_types = ("full_attention",) * n
    gemma = mt.startswith("gemma")
    qpas = getattr(hf, "query_pre_attn_scalar", None)
    return ModelConfig(
        **common, hidden_size=hf.hidden_size, intermediate_size=hf.intermediate_size, num_layers=n,
        num_heads=hf.num_attention_heads, num_kv_heads=hf.num_key_value_heads or hf.num_attention_heads,
        head_dim=head_dim, layer_types=tuple(layer_types), sliding_window=window,
        norm_eps=hf.rms_norm_eps, norm_type="rms_gemma" if gemma else "rms",
        activation=(getattr(hf, "hidden_activation", None) or hf.hidden_act),
        attention_bias=mt == "qwen2" or bool(getattr(hf, "attention_bias", False)),
        o_bias=mt != "qwen2" and bool(getattr(hf, "attention_bias", False)),
        mlp_bias=bool(getattr(hf, "mlp_bias", False)), qk_norm=mt in ("qwen3", "gemma3_text"),
        sandwich_norms=mt in ("gemma2", "gemma3_text"), embed_scale=gemma,
        query_scale=qpas ** -0.5 if qpas else None,
        attn_softcap=getattr(hf, "attn_logit_softcapping", None),
        final_softcap=getattr(hf, "final_logit_softcapping", None),
        rope=rope, rope_local=rope_local, max_position_embeddings=hf.max_position_embeddings)


DTYPES = ("float32", "bfloat16", "float16")


def default_config() -> Any:
    """The `model` block of an experiment config: which checkpoint (folder, hub id or .gguf), the dtype of its
    frozen weights, what the backward pass recomputes (`remat`: none, full, dots, offload; decoder.py), whether
    training runs the blocks as one scanned, stacked block (`scan_layers`; scan.py), the attention kernel
    (`attention`: auto, reference, xla, cudnn, splash; attention.py), `quantize` (none, int8, nf4: the
    frozen base stored quantised for QLoRA; quantize.py), and `init_from`: another run's
    workdir (`WORKDIR` or `WORKDIR:best|last|STEP`) whose adapter and task heads this run starts from."""
    import ml_collections

    return ml_collections.ConfigDict(dict(path="", dtype="float32", remat="none", scan_layers=False, attention="auto",
                                           quantize="none", init_from=""))


def check(block: Any) -> None:
    """One-line errors for a bad `model` block (before anything is loaded)."""
    from ftjax.config import one_of

    if not str(block.path).strip():
        raise ValueError("model.path is empty: set --config.model.path to a model folder, hub id or .gguf file")
    from ftjax.models.attention import IMPLEMENTATIONS
    from ftjax.models.quantize import KINDS
    from ftjax.models.remat import REMAT_POLICIES

    one_of(block, "model", "dtype", DTYPES)
    if not isinstance(block.remat, bool):  # runs saved before the policies had remat=True/False
        one_of(block, "model", "remat", tuple(REMAT_POLICIES))
    if "attention" in block:
        one_of(block, "model", "attention", IMPLEMENTATIONS)
    if "quantize" in block:
        one_of(block, "model", "quantize", KINDS)


def check_limits(cfg: ModelConfig, max_length: int, extra_positions: int = 0) -> None:
    """Sequences must fit a model with learned positions (GPT-2): beyond them there is no embedding."""
    if cfg.rope is None and max_length + extra_positions > cfg.max_position_embeddings:
        raise ValueError(f"data.max_length={max_length}" + (f" + {extra_positions} virtual tokens" if extra_positions
                         else "") + f" exceeds the {cfg.max_position_embeddings} positions of this "
                         f"{cfg.model_type} model; lower data.max_length")
