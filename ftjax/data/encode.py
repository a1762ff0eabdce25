"""Rows to token ids with a loss mask: which tokens the model learns to produce.

Prompt and target are tokenized separately and concatenated, so the prompt's ids are exactly what
`ftjax.models.tokenizer.encode_prompt` gives at inference. Every target ends with a token generation stops on (EOS,
or the chat template's end-of-turn marker when `stop_token_ids` knows it), so fine-tuned models stop.
"""

from __future__ import annotations

import sys
from typing import Any

from tqdm import tqdm

from ftjax.data.formats import check_row, prompt_and_target, resolve_format, value_of
from ftjax.data.sources import where
from ftjax.models.tokenizer import stop_token_ids


def encode(row: dict, tokenizer: Any, fmt: str, max_length: int, label_set: list[str] | None = None) -> dict:
    """{"input_ids": [...], "loss_mask": [...]} of equal length <= max_length; loss_mask[t] = 1 on target tokens
    (completion, assistant turns with their end-of-turn token, label text, data-to-text text; each plus EOS)."""
    if max_length < 2:
        raise ValueError(f"max_length must be at least 2, got {max_length}")
    fmt = resolve_format(row, fmt)
    if fmt == "chat":
        ids, mask = _chat(row, tokenizer)
    else:
        prompt, target = prompt_and_target(row, fmt, label_set)
        prompt_ids = _prompt_ids(tokenizer, prompt)
        target_ids = target_token_ids(tokenizer, target)
        ids, mask = prompt_ids + target_ids, [0] * len(prompt_ids) + [1] * len(target_ids)
    if not any(mask):
        raise ValueError(f"{where(row)}: no target tokens (format {fmt})")
    bos = tokenizer.bos_token_id
    ids, mask = truncate(ids, mask, max_length, keep_first=bos is not None and ids[0] == bos)
    return {"input_ids": ids, "loss_mask": mask}


def encode_label(row: dict, tokenizer: Any, max_length: int, label_set: list[str]) -> dict:
    """A classification row for a classification head: the text's ids (as a prompt) followed by the label's
    index as the one target, so the loss reads the head at the text's last token (ftjax.models.heads)."""
    text, label = prompt_and_target(row, "classification", label_set)
    ids = _prompt_ids(tokenizer, text)[: max_length - 1]
    if not ids:
        raise ValueError(f"{where(row)}: the text tokenizes to nothing")
    return {"input_ids": ids + [label_set.index(label)], "loss_mask": [0] * len(ids) + [1]}


def encode_value(row: dict, tokenizer: Any, max_length: int) -> dict:
    """A regression row for a regression head: as `encode_label`, the text's ids and one target position at its
    last token, whose float target travels in `value` (the id after the text is a placeholder, 0)."""
    text, _ = prompt_and_target(row, "regression")
    ids = _prompt_ids(tokenizer, text)[: max_length - 1]
    if not ids:
        raise ValueError(f"{where(row)}: the text tokenizes to nothing")
    return {"input_ids": ids + [0], "loss_mask": [0] * len(ids) + [1], "value": value_of(row)}


def encode_all(rows: list[dict], tokenizer: Any, fmt: str, max_length: int,
               label_set: list[str] | None = None, head: str = "lm") -> list[dict]:
    """`encode` over many rows (`encode_label` for a classification head, `encode_value` for a regression
    head), with a progress bar."""
    if head == "classification":
        one = lambda r: encode_label(r, tokenizer, max_length, label_set)
    elif head == "regression":
        one = lambda r: encode_value(r, tokenizer, max_length)
    else:
        one = lambda r: encode(r, tokenizer, fmt, max_length, label_set)
    return [one(r) for r in tqdm(rows, desc="tokenize", unit="row", file=sys.stderr, disable=len(rows) < 2000)]


def truncate(ids: list[int], mask: list[int], max_length: int, keep_first: bool = False) -> tuple[list, list]:
    """Cut to max_length keeping the end of the prompt (what the target follows) and the start of the target.
    A long target still gets at least half the room; `keep_first` keeps a leading BOS."""
    if len(ids) <= max_length:
        return ids, mask
    first = mask.index(1)
    head = 1 if keep_first and first > 0 else 0
    room = max(max_length - (len(ids) - first), min(first, max_length // 2))  # prompt tokens kept
    keep = list(range(head)) + list(range(first - max(room - head, 0), first))
    keep += range(first, first + max_length - len(keep))
    return [ids[i] for i in keep], [mask[i] for i in keep]


def _prompt_ids(tokenizer: Any, text: str) -> list[int]:
    ids = tokenizer(text)["input_ids"]  # with BOS when the tokenizer adds one
    eos = tokenizer.eos_token_id
    if ids and eos is not None and ids[-1] == eos and eos != tokenizer.bos_token_id:
        ids = ids[:-1]  # a tokenizer that appends EOS to everything must not end the prompt with it
    return ids


def target_token_ids(tokenizer: Any, target: str) -> list[int]:
    """The tokens a model learns to produce for `target` (a completion, a label): its text's ids, then EOS."""
    return _text_ids(tokenizer, target) + [_eos(tokenizer)]


def _text_ids(tokenizer: Any, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"] if text else []


def _eos(tokenizer: Any) -> int:
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no EOS token, so fine-tuned models could not learn to stop")
    return tokenizer.eos_token_id


def _chat(row: dict, tokenizer: Any) -> tuple[list[int], list[int]]:
    """Render turn by turn with the tokenizer's chat template; assistant turns (from after the generation
    prompt to the end of the turn, end-of-turn marker included) are the targets."""
    check_row(row, "chat")
    if not tokenizer.chat_template:
        raise ValueError(f"{where(row)}: chat rows need a tokenizer with a chat template; this one has none")
    msgs = row["messages"]
    if not any(m["role"] == "assistant" for m in msgs):
        raise ValueError(f"{where(row)}: no assistant turn to learn from")
    render = lambda turns, gen: tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=gen)
    stops = set(stop_token_ids(tokenizer))
    ids: list[int] = []
    mask: list[int] = []
    done = ""
    for i, m in enumerate(msgs):
        if m["role"] != "assistant":
            continue
        full = render(msgs[: i + 1], False)
        # a conversation opening with the assistant: its turn starts where its content does
        head = render(msgs[:i], True) if i else full[: max(full.find(m["content"].strip()), 0)]
        if not head.startswith(done) or not full.startswith(head):
            raise ValueError(f"{where(row)}: the chat template does not render a conversation as the prefix of "
                             "its continuation, so assistant tokens cannot be located")
        context = _text_ids(tokenizer, head[len(done):])
        turn = _text_ids(tokenizer, full[len(head):])
        if not stops & set(turn):  # the template's end-of-turn marker is not a stop token: add EOS
            turn.append(_eos(tokenizer))
        ids += context + turn
        mask += [0] * len(context) + [1] * len(turn)
        done = full
    tail = _text_ids(tokenizer, render(msgs, False)[len(done):])  # turns after the last assistant one
    return ids + tail, mask + [0] * len(tail)

