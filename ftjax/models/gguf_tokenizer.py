"""A transformers tokenizer from a GGUF file's tokenizer metadata, built with `gguf` and `tokenizers` only.

transformers can do this (`AutoTokenizer.from_pretrained(folder, gguf_file=name)`), but its GGUF reader
imports torch, which is not a runtime dependency of ftjax. This module builds the same tokenizer
(checked id-for-id against transformers in tests/test_gguf_tokenizer.py) from the metadata llama.cpp
writes:

- `tokenizer.ggml.model == "llama"`: a SentencePiece BPE vocabulary (Gemma 1/2/3, Llama 2, Mistral).
  The file has the pieces and their scores but usually no merges, so the merges are rebuilt from the
  vocabulary: every way to cut a piece into two pieces of the vocabulary, best piece first. Gemma files
  are special in two ways: their scores do not follow the merge order (the order of the pieces in the
  file does), and their runs of spaces are stored as real spaces rather than "▁".
- `tokenizer.ggml.model == "gpt2"`: byte-level BPE with the merges in the file (Llama 3, Qwen 2/3),
  split first with the regex that `tokenizer.ggml.pre` names.

Tokens marked CONTROL become special added tokens and USER_DEFINED ones plain added tokens, so both are
matched whole in the raw text, as llama.cpp does.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gguf
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

log = logging.getLogger(__name__)

SUPPORTED_MODELS = ("gpt2", "llama")
# `general.architecture`s whose SentencePiece vocabulary is Gemma's.
_GEMMA_ARCHS = frozenset({"gemma", "gemma2", "gemma3"})
# llama.cpp's token types (gguf.TokenType).
_CONTROL, _USER_DEFINED = 3, 4
_SPACE = "\u2581"  # SentencePiece's "▁", which stands for a space inside pieces

# Pre-tokenizer regexes of the byte-level vocabularies, by `tokenizer.ggml.pre`. Any other value gets
# the GPT-2 regex built into `pre_tokenizers.ByteLevel`.
_LLAMA3_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN35_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}"
    r"| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_GPT4O_REGEX = (
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
PRE_REGEXES = {
    **dict.fromkeys(("llama3", "llama-v3", "llama-bpe", "smaug-bpe", "dbrx", "falcon3", "pixtral"), _LLAMA3_REGEX),
    **dict.fromkeys(("qwen2", "deepseek-r1-qwen", "megrez"), _QWEN2_REGEX),
    "qwen35": _QWEN35_REGEX,
    **dict.fromkeys(("gpt-4o", "llama4"), _GPT4O_REGEX),
}


@dataclass
class GGUFVocab:
    """The tokenizer metadata of a GGUF file (llama.cpp's `tokenizer.*` keys)."""

    model: str  # tokenizer.ggml.model
    architecture: str  # general.architecture
    tokens: list[str]
    scores: list[float] | None = None
    token_types: list[int] | None = None
    merges: list[str] | None = None
    pre: str | None = None  # tokenizer.ggml.pre: which pre-tokenizer regex a byte-level vocabulary wants
    bos_id: int | None = None
    eos_id: int | None = None
    unk_id: int | None = None
    pad_id: int | None = None
    add_bos: bool | None = None
    add_eos: bool | None = None
    add_space_prefix: bool | None = None
    chat_template: str | None = None


def read_gguf_vocab(path: str | os.PathLike) -> GGUFVocab:
    """Read the tokenizer metadata (takes ~10-20 s for a 262k-token vocabulary: `GGUFReader` parses every string)."""
    reader = gguf.GGUFReader(path)

    def get(key: str) -> Any:
        field = reader.get_field(key)
        return None if field is None else field.contents()

    model = get("tokenizer.ggml.model")
    if model not in SUPPORTED_MODELS:
        raise ValueError(
            f"{os.fspath(path)}: unsupported GGUF tokenizer model {model!r} (supported: {', '.join(SUPPORTED_MODELS)})"
        )
    tokens = get("tokenizer.ggml.tokens")
    if not tokens:
        raise ValueError(f"{os.fspath(path)}: no tokenizer.ggml.tokens in the GGUF metadata")
    return GGUFVocab(
        model=model,
        architecture=get("general.architecture") or "",
        tokens=tokens,
        scores=get("tokenizer.ggml.scores"),
        token_types=get("tokenizer.ggml.token_type"),
        merges=get("tokenizer.ggml.merges"),
        pre=get("tokenizer.ggml.pre"),
        bos_id=get("tokenizer.ggml.bos_token_id"),
        eos_id=get("tokenizer.ggml.eos_token_id"),
        unk_id=get("tokenizer.ggml.unknown_token_id"),
        pad_id=get("tokenizer.ggml.padding_token_id"),
        add_bos=get("tokenizer.ggml.add_bos_token"),
        add_eos=get("tokenizer.ggml.add_eos_token"),
        add_space_prefix=get("tokenizer.ggml.add_space_prefix"),
        chat_template=get("tokenizer.chat_template"),
    )


def _byte_to_char() -> dict[int, str]:
    """GPT-2's spelling of bytes as printable characters: printable Latin-1 bytes as themselves, the
    other 68 as chr(256), chr(257), ... in byte order."""
    printable = {*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)}
    spelling, extra = {}, 0
    for b in range(256):
        if b in printable:
            spelling[b] = chr(b)
        else:
            spelling[b] = chr(256 + extra)
            extra += 1
    return spelling


def _merges_from_vocab(tokens: list[str], priority: list[float]) -> list[tuple[str, str]]:
    """The BPE merges a vocabulary without merges implies, best first.

    Every cut of a piece into a left and right piece that are both in the vocabulary is a merge. Merges
    are ordered by their piece's priority (highest first), then by the longer left part, then the longer
    right part; ties keep vocabulary order. (Same order as transformers' `generate_merges`.)
    """
    known = set(tokens)
    best = dict(zip(tokens, priority))  # a repeated piece keeps its first position and its last priority
    found = [
        (left, right, p)
        for piece, p in best.items()
        for cut in range(1, len(piece))
        if (left := piece[:cut]) in known and (right := piece[cut:]) in known
    ]
    found.sort(key=lambda m: (m[2], len(m[0]), len(m[1])), reverse=True)  # stable, also when reversed
    return [(left, right) for left, right, _ in found]


def _file_merges(merges: list[str]) -> list[tuple[str, str]]:
    out = []
    for merge in merges:
        left, sep, right = merge.partition(" ")
        if not sep:
            raise ValueError(f"malformed GGUF merge {merge!r} (expected 'left right')")
        out.append((left, right))
    return out


def _sentencepiece_backend(v: GGUFVocab) -> Tokenizer:
    """SentencePiece BPE with byte fallback; Gemma's or Llama's flavour by architecture."""
    gemma = v.architecture in _GEMMA_ARCHS
    tokens = v.tokens
    if gemma:
        # Gemma stores its pieces made of 2+ spaces as real spaces; in the text they are "▁"s.
        tokens = [_SPACE * len(t) if " " in t and not t.strip() else t for t in tokens]
    if v.merges:
        merges = _file_merges(v.merges)
    elif gemma:
        merges = _merges_from_vocab(tokens, [-i for i in range(len(tokens))])  # file order, not the scores
    else:
        if v.scores is None or len(v.scores) != len(tokens):
            raise ValueError("a GGUF SentencePiece vocabulary without merges needs tokenizer.ggml.scores")
        merges = _merges_from_vocab(tokens, v.scores)
    vocab = {t: i for i, t in enumerate(tokens)}
    unk = tokens[v.unk_id] if v.unk_id is not None and 0 <= v.unk_id < len(tokens) else None
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token=unk, fuse_unk=True, byte_fallback=True,
                               dropout=None))
    steps = [decoders.Replace(_SPACE, " "), decoders.ByteFallback(), decoders.Fuse()]
    if gemma:
        # No dummy prefix: spaces are just "▁". (The split is a no-op after that normalizer; it is kept
        # because Gemma's own tokenizer.json, and transformers' conversion, have it.)
        tok.normalizer = normalizers.Replace(" ", _SPACE)
        tok.pre_tokenizer = pre_tokenizers.Split(" ", behavior="merged_with_previous")
    else:
        # A "▁" in front of the text (not after a special token), dropped again when decoding.
        prefix = v.add_space_prefix is not False
        tok.pre_tokenizer = pre_tokenizers.Metaspace(
            replacement=_SPACE, prepend_scheme="first" if prefix else "never", split=False
        )
        if prefix:
            steps.append(decoders.Strip(content=" ", left=1, right=0))
    tok.decoder = decoders.Sequence(steps)
    return tok


def _byte_level_backend(v: GGUFVocab) -> Tokenizer:
    """Byte-level BPE with the file's merges, split first with the regex `tokenizer.ggml.pre` names."""
    if not v.merges:
        raise ValueError("a GGUF gpt2 (byte-level BPE) vocabulary needs tokenizer.ggml.merges")
    spelling = _byte_to_char()
    alphabet = set(spelling.values())
    # Every real token is spelled in the byte alphabet; respell any that is not (as transformers does).
    vocab = {
        t if set(t) <= alphabet else "".join(spelling[b] for b in t.encode("utf-8")): i
        for i, t in enumerate(v.tokens)
    }
    tok = Tokenizer(models.BPE(vocab=vocab, merges=_file_merges(v.merges), dropout=None,
                               continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False))
    regex = PRE_REGEXES.get(v.pre or "")
    if regex is None:
        if v.pre not in (None, "default", "gpt2", "gpt-2"):
            log.warning("GGUF tokenizer.ggml.pre %r is not known here; splitting text with GPT-2's regex", v.pre)
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    else:
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(regex), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
    tok.decoder = decoders.ByteLevel()
    return tok


def _add_marked_tokens(tok: Tokenizer, v: GGUFVocab) -> None:
    """CONTROL tokens as special added tokens, USER_DEFINED ones as plain added tokens: matched whole."""
    types = v.token_types or ()
    vocab = tok.get_vocab(with_added_tokens=False)
    byte_level = v.model == "gpt2"
    control, user = [], []
    for token, kind in zip(v.tokens, types):
        if kind == _CONTROL:
            # In a byte-level vocabulary a control token outside the byte alphabet is a llama.cpp mislabel;
            # adding it would grow the vocabulary past the model's.
            if not byte_level or token in vocab:
                control.append(AddedToken(token, special=True, normalized=False))
        elif kind == _USER_DEFINED and token in vocab:
            user.append(AddedToken(token, special=False, normalized=False))
    # The named special tokens, whatever their type (an <unk> is UNKNOWN, not CONTROL).
    named = {_token(v, i) for i in (v.bos_id, v.eos_id, v.unk_id, v.pad_id)} - {None}
    control += [AddedToken(t, special=True, normalized=False) for t in sorted(named - {str(a) for a in control})
                if t in vocab]
    if control:
        tok.add_special_tokens(control)
    if user:
        tok.add_tokens(user)


def build_backend(v: GGUFVocab) -> Tokenizer:
    """The `tokenizers.Tokenizer` (model, normalizer, pre-tokenizer, decoder, BOS/EOS post-processor)."""
    if v.model == "llama":
        tok = _sentencepiece_backend(v)
    elif v.model == "gpt2":
        tok = _byte_level_backend(v)
    else:
        raise ValueError(f"unsupported GGUF tokenizer model {v.model!r} (supported: {', '.join(SUPPORTED_MODELS)})")
    _add_marked_tokens(tok, v)
    add_bos, add_eos = _add_bos_eos(v)
    bos, eos = _token(v, v.bos_id), _token(v, v.eos_id)

    def template(seq: str, type_id: int) -> list[str]:
        return [f"{bos}:{type_id}"] * add_bos + [f"{seq}:{type_id}"] + [f"{eos}:{type_id}"] * add_eos

    tok.post_processor = processors.TemplateProcessing(
        single=template("$A", 0), pair=template("$A", 0) + template("$B", 1),
        special_tokens=list((({bos: v.bos_id} if add_bos else {}) | ({eos: v.eos_id} if add_eos else {})).items()),
    )
    return tok


def _token(v: GGUFVocab, token_id: int | None) -> str | None:
    return v.tokens[token_id] if token_id is not None and 0 <= token_id < len(v.tokens) else None


def _add_bos_eos(v: GGUFVocab) -> tuple[bool, bool]:
    # Without the flag llama.cpp adds BOS to a SentencePiece vocabulary; transformers adds none to a byte-level one.
    add_bos = v.add_bos if v.add_bos is not None else v.model == "llama"
    return bool(add_bos and _token(v, v.bos_id) is not None), bool(v.add_eos and _token(v, v.eos_id) is not None)


def tokenizer_from_vocab(v: GGUFVocab) -> PreTrainedTokenizerFast:
    """Wrap `build_backend(v)` as a transformers tokenizer with the special tokens and chat template."""
    from transformers import PreTrainedTokenizerFast

    add_bos, add_eos = _add_bos_eos(v)
    kwargs: dict[str, Any] = dict(
        bos_token=_token(v, v.bos_id), eos_token=_token(v, v.eos_id), unk_token=_token(v, v.unk_id),
        pad_token=_token(v, v.pad_id),
        add_bos_token=add_bos, add_eos_token=add_eos, clean_up_tokenization_spaces=False,
        # transformers' Llama and Gemma tokenizers pad on the left
        padding_side="left" if v.model == "llama" else "right",
    )
    if v.chat_template:
        kwargs["chat_template"] = v.chat_template
    kwargs = {k: x for k, x in kwargs.items() if x is not None}
    return PreTrainedTokenizerFast(tokenizer_object=build_backend(v), **kwargs)


def tokenizer_from_gguf(path: str | os.PathLike) -> PreTrainedTokenizerFast:
    """The tokenizer a GGUF file describes (see the module docstring). ValueError for an unsupported one."""
    return tokenizer_from_vocab(read_gguf_vocab(path))
