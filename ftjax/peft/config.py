"""The `peft` config block: which fine-tuning method, its hyperparameters, and which weights it trains.

    method        lora | dora | ia3 | prompt | prefix | full
    name          adapter name (several named adapters can share one base model)
    targets       linear layers to adapt: '' (method default), 'all-linear' (every linear layer but the
                  output head), comma-separated names matched like PEFT (`q_proj`, `self_attn.o_proj`, a full
                  path), or 're:<regex>' matched in full against the dotted module path
    rank, alpha, dropout, rslora, init (kaiming | gaussian | pissa)   LoRA/DoRA
    feedforward   (IA)3 layers whose input (not output) is scaled ('' = the model's feed-forward output)
    num_virtual_tokens, init_text, tokenizer                           prompt/prefix tuning
    unfreeze      regex of base parameter paths trained as well (e.g. 'norm')
    freeze        regex of parameter paths never trained (e.g. 'embed_tokens' in full fine-tuning)
    dtype         adapter weight dtype (the frozen base keeps its own, e.g. bfloat16)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import ml_collections

METHODS = ("lora", "dora", "ia3", "prompt", "prefix", "full")
LORA_INITS = ("kaiming", "gaussian", "pissa")
DTYPES = ("float32", "bfloat16", "float16")


def default_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.method = "lora"
    c.name = "default"
    c.targets = ""
    c.rank = 8
    c.alpha = 16.0
    c.dropout = 0.0
    c.rslora = False
    c.init = "kaiming"
    c.feedforward = ""
    c.num_virtual_tokens = 20
    c.init_text = ""
    c.tokenizer = ""
    c.unfreeze = ""
    c.freeze = ""
    c.dtype = "float32"
    return c


def peft_config(overrides: Mapping[str, Any] | ml_collections.ConfigDict | None = None) -> ml_collections.ConfigDict:
    """Defaults updated with `overrides`, validated; unknown keys and bad values are one-line ValueErrors."""
    cfg = default_config()
    items = dict(overrides.items()) if overrides is not None else {}
    for key, value in items.items():
        if key not in cfg:
            raise ValueError(f"unknown peft key {key!r}; known: {', '.join(cfg.keys())}")
        try:
            cfg[key] = float(value) if key == "alpha" else value
        except (TypeError, ValueError) as e:
            raise ValueError(f"peft.{key}={value!r}: {e}") from None
    validate(cfg)
    return cfg


def validate(cfg: ml_collections.ConfigDict) -> None:
    def bad(key: str, why: str) -> ValueError:
        return ValueError(f"peft.{key}={cfg[key]!r}: {why}")

    if cfg.method not in METHODS:
        raise bad("method", f"choose from {', '.join(METHODS)}")
    if not isinstance(cfg.name, str) or not re.fullmatch(r"[A-Za-z0-9_\-]+", cfg.name):
        raise bad("name", "use letters, digits, '_' or '-'")
    if int(cfg.rank) < 1:
        raise bad("rank", "must be a positive integer")
    if cfg.alpha <= 0:
        raise bad("alpha", "must be positive")
    if not 0.0 <= cfg.dropout < 1.0:
        raise bad("dropout", "must be in [0, 1)")
    if cfg.init not in LORA_INITS:
        raise bad("init", f"choose from {', '.join(LORA_INITS)}")
    if int(cfg.num_virtual_tokens) < 1:
        raise bad("num_virtual_tokens", "must be a positive integer")
    if cfg.dtype not in DTYPES:
        raise bad("dtype", f"choose from {', '.join(DTYPES)}")
    for key in ("unfreeze", "freeze"):
        try:
            re.compile(cfg[key])
        except re.error as e:
            raise bad(key, f"not a regular expression ({e})") from None
    if cfg.targets.startswith("re:"):
        try:
            re.compile(cfg.targets[3:])
        except re.error as e:
            raise bad("targets", f"not a regular expression ({e})") from None


def target_patterns(targets: str) -> list[str]:
    """'q_proj, v_proj' -> ['q_proj', 'v_proj']; a 're:' pattern stays whole (it may contain commas)."""
    if targets.startswith("re:"):
        return [targets]
    return [t.strip() for t in targets.split(",") if t.strip()]
