"""Tokenizers from a model folder, a hub id or a GGUF file, with chat templates and stop tokens."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ftjax.io import atomic_dir
from ftjax.models.loading import resolve


def load_tokenizer(path_or_hub_id: str | os.PathLike) -> Any:
    """A transformers tokenizer for the model at `path_or_hub_id` (folder, hub id or .gguf)."""
    from transformers import AutoTokenizer

    path = resolve(path_or_hub_id)
    if path.suffix == ".gguf":
        return _cached_gguf_tokenizer(path)

    if not any((path / f).is_file() for f in ("tokenizer.json", "tokenizer.model", "vocab.json")):
        raise FileNotFoundError(f"{path} has no tokenizer (tokenizer.json, tokenizer.model or vocab.json)")
    try:
        return AutoTokenizer.from_pretrained(path)
    except (ValueError, OSError, TypeError, KeyError, RecursionError) as e:  # a corrupt or truncated file
        raise ValueError(f"{path}: its tokenizer files cannot be read ({type(e).__name__}: "
                         f"{' '.join(str(e).split())[:200]})") from None


def _cached_gguf_tokenizer(path: Path) -> Any:
    """Converting a GGUF vocabulary takes ~20 s; keep the result beside the file (when writable) and reuse it."""
    from transformers import AutoTokenizer

    from ftjax.models.gguf import gguf_tokenizer

    cache = path.with_name(path.name + ".tokenizer")
    if (cache / "tokenizer.json").is_file() and cache.stat().st_mtime >= path.stat().st_mtime:
        return AutoTokenizer.from_pretrained(cache)
    tokenizer = gguf_tokenizer(path)
    try:
        with atomic_dir(cache, overwrite=True) as tmp:  # our own cache
            tokenizer.save_pretrained(tmp)
    except OSError:  # a read-only model folder: just convert every time
        pass
    return tokenizer


def encode_prompt(tokenizer: Any, prompt: str | None = None, messages: list[dict] | None = None,
                  chat: bool = False) -> list[int]:
    """Token ids of a plain prompt, or of chat `messages` (or a prompt wrapped as one user turn when `chat`)
    rendered with the tokenizer's chat template and the generation prompt for the assistant's turn."""
    if messages is None and chat:
        messages = [{"role": "user", "content": prompt}]
    if messages is not None:
        if not tokenizer.chat_template:
            raise ValueError("this tokenizer has no chat template; pass a plain prompt instead of messages")
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return tokenizer(text, add_special_tokens=False)["input_ids"]
    if prompt is None:
        raise ValueError("need a prompt or messages")
    return tokenizer(prompt)["input_ids"]


def padding_id(tokenizer: Any) -> int:
    """The tokenizer's padding id, or 0 when it has none (padded positions are masked, so any id serves)."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


def stop_token_ids(tokenizer: Any, config_eos: tuple[int, ...] = ()) -> tuple[int, ...]:
    """EOS ids from the model config and tokenizer, plus chat end-of-turn markers the vocabulary has."""
    ids = set(config_eos)
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    vocab = tokenizer.get_vocab()
    ids.update(vocab[t] for t in ("<end_of_turn>", "<|im_end|>", "<|eot_id|>", "<|endoftext|>") if t in vocab)
    return tuple(sorted(ids))
