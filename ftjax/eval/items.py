"""An evaluation set: rows grouped by prompt, each prompt with all its references, and few-shot prompts.

Rows of the same prompt (E2E style: one meaning representation, several human references) become one item, so
it is generated once and scored against every reference. Chat rows are evaluated on their last assistant
turn, given every turn before it. Prompts are encoded exactly as `ftjax generate` encodes them.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from ftjax.data.formats import check_row, prompt_and_target, resolve_format
from ftjax.data.sources import where
from ftjax.models.tokenizer import encode_prompt


@dataclasses.dataclass
class EvalItem:
    prompt: str | None  # plain prompt text; None for chat items
    messages: list[dict] | None  # chat turns before the evaluated assistant turn
    references: list[str]
    label: str | None = None  # the gold class of classification rows
    rows: list[dict] = dataclasses.field(default_factory=list)  # the source rows (teacher-forced scoring)

    @property
    def sources(self) -> list[str]:
        return [where(r) for r in self.rows]


def _split_row(row: dict, fmt: str, label_set: list[str] | None) -> tuple[str | None, list | None, str]:
    if fmt != "chat":
        prompt, target = prompt_and_target(row, fmt, label_set)
        return prompt, None, target
    check_row(row, fmt)
    msgs = row["messages"]
    last = max((i for i, m in enumerate(msgs) if m["role"] == "assistant"), default=None)
    if last is None or last == 0:
        raise ValueError(f"{where(row)}: a chat row needs turns before its last assistant turn to evaluate it")
    return None, msgs[:last], msgs[last]["content"]


def eval_items(rows: Sequence[dict], fmt: str = "auto", label_set: list[str] | None = None
               ) -> tuple[list[EvalItem], str]:
    """(items in order of first appearance, task) where task is 'classification' when every row is a
    classification row, else the format of the first row ('prompt_completion', 'chat', 'data_to_text')."""
    if not rows:
        raise ValueError("no rows to evaluate")
    items: dict[str, EvalItem] = {}
    formats = set()
    for row in rows:
        row_fmt = resolve_format(row, fmt)
        formats.add(row_fmt)
        prompt, messages, target = _split_row(row, row_fmt, label_set)
        key = json.dumps([prompt, messages], sort_keys=True)
        item = items.setdefault(key, EvalItem(prompt, messages, []))
        if row_fmt == "classification":
            if item.label is not None and item.label != target:
                raise ValueError(f"{where(row)}: the same text has label {target!r} here and {item.label!r} at "
                                 f"{item.sources[0]}")
            item.label = target
        if target not in item.references:
            item.references.append(target)
        item.rows.append(row)
    task = "classification" if formats == {"classification"} else resolve_format(rows[0], fmt)
    return list(items.values()), task


def pick_shots(rows: Sequence[dict], k: int, fmt: str = "auto", label_set: list[str] | None = None,
               seed: int = 0) -> list[EvalItem]:
    """k training items, drawn at random (fixed seed), the same for every prompt."""
    if k <= 0:
        return []
    items, _ = eval_items(rows, fmt, label_set)
    if k > len(items):
        raise ValueError(f"--few_shot={k} but the training data has only {len(items)} distinct prompts")
    chosen = np.random.default_rng(seed).choice(len(items), k, replace=False)
    return [items[i] for i in sorted(chosen)]


def _shot_pair(shot: EvalItem) -> tuple[str, str]:
    """(what the user said, the answer) of a shot, for either prompt style."""
    said = shot.prompt if shot.messages is None else next(
        (m["content"] for m in reversed(shot.messages) if m["role"] == "user"), "")
    return said, shot.references[0]


def with_shots(item: EvalItem, shots: Sequence[EvalItem]) -> tuple[str | None, list[dict] | None]:
    """The item's (prompt, messages) with the shots before it: text blocks `prompt answer` separated by a blank
    line, or user/assistant turns after any system turns."""
    pairs = [_shot_pair(s) for s in shots]
    if item.messages is None:
        return "".join(f"{p}{a}\n\n" for p, a in pairs) + item.prompt, None
    lead = next((i for i, m in enumerate(item.messages) if m["role"] != "system"), len(item.messages))
    turns = [t for p, a in pairs for t in ({"role": "user", "content": p}, {"role": "assistant", "content": a})]
    return None, item.messages[:lead] + turns + item.messages[lead:]


def encode_items(tokenizer: Any, items: Sequence[EvalItem], shots: Sequence[EvalItem] = ()) -> list[list[int]]:
    """Prompt token ids, exactly as `ftjax generate` encodes a row with this `prompt` or `messages`."""
    return [encode_prompt(tokenizer, *with_shots(item, shots)) for item in items]


def prompt_row(item: EvalItem, shots: Sequence[EvalItem] = ()) -> dict:
    """The item as an `ftjax generate` input row ({"prompt"} or {"messages"})."""
    prompt, messages = with_shots(item, shots)
    return {"prompt": prompt} if messages is None else {"messages": messages}
