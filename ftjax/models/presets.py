"""Shapes of published models, for what needs no weights: parameter tables, random-weight benchmarks."""

from __future__ import annotations

from ftjax.models.config import ModelConfig

_LLAMA3_ROPE = dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                    original_max_position_embeddings=8192)
# name -> (transformers config class, arguments)
PRESETS = {
    "gemma3-270m": ("Gemma3TextConfig", dict(
        vocab_size=262144, hidden_size=640, intermediate_size=2048, num_hidden_layers=18, num_attention_heads=4,
        num_key_value_heads=1, head_dim=256, sliding_window=512, max_position_embeddings=32768,
        query_pre_attn_scalar=256, rope_theta=1_000_000.0, rope_local_base_freq=10_000.0,
        tie_word_embeddings=True)),
    "llama3.2-1b": ("LlamaConfig", dict(
        vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
        num_key_value_heads=8, head_dim=64, max_position_embeddings=131072, rope_theta=500000.0,
        tie_word_embeddings=True, bos_token_id=128000, eos_token_id=128001,
        rope_scaling=dict(_LLAMA3_ROPE, factor=32.0))),
    "llama3.1-8b": ("LlamaConfig", dict(
        vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
        num_key_value_heads=8, head_dim=128, max_position_embeddings=131072, rope_theta=500000.0,
        bos_token_id=128000, eos_token_id=128001, rope_scaling=_LLAMA3_ROPE)),
}


def hf_preset(name: str):
    """The transformers config of preset `name`."""
    import transformers

    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; presets: {', '.join(PRESETS)}")
    cls, kwargs = PRESETS[name]
    return getattr(transformers, cls)(**kwargs)


def preset_config(name: str) -> ModelConfig:
    from ftjax.models.config import from_hf

    return from_hf(hf_preset(name))
