"""The five example formats, their fields, and plain-text views of a row (for curation, splits and reports).

    prompt_completion  `prompt`, `completion`
    chat               `messages`: [{"role": "system"|"user"|"assistant", "content": str}, ...]
    classification     `text`, `label` (a string, or an index into the label set)
    data_to_text       `data` (an attribute dict, or an already linearised string), `text`
    regression         `text`, `value` (a number, or a string that reads as one: CSV cells)
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable

from ftjax.data.sources import where

FORMATS = ("prompt_completion", "chat", "classification", "data_to_text", "regression")
ROLES = ("system", "user", "assistant")


def detect_format(row: dict) -> str:
    """The row's format, from which fields it has."""
    if "messages" in row:
        return "chat"
    if "prompt" in row or "completion" in row:
        return "prompt_completion"
    if "data" in row:
        return "data_to_text"
    if "label" in row:
        return "classification"
    if "value" in row:
        return "regression"
    fields = ", ".join(k for k in row if not k.startswith("_"))
    raise ValueError(f"{where(row)}: cannot tell the format from the fields ({fields}); expected prompt+completion,"
                     " messages, text+label, data+text or text+value (map columns with --columns)")


def resolve_format(row: dict, fmt: str) -> str:
    if fmt == "auto":
        return detect_format(row)
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose from auto, {', '.join(FORMATS)}")
    return fmt


def check_row(row: dict, fmt: str) -> None:
    """A ValueError naming file:line and the field when a row lacks what its format needs."""
    need = {"prompt_completion": ("prompt", "completion"), "classification": ("text", "label"),
            "data_to_text": ("data", "text"), "chat": ("messages",), "regression": ("text", "value")}[fmt]
    for name in need:
        if row.get(name) is None:
            raise ValueError(f"{where(row)}: missing field {name!r} (format {fmt})")
    if fmt == "chat":
        msgs = row["messages"]
        if not isinstance(msgs, list) or not msgs:
            raise ValueError(f"{where(row)}: field 'messages' must be a non-empty list of turns")
        for i, m in enumerate(msgs):
            if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
                raise ValueError(f"{where(row)}: messages[{i}] must be {{'role': system|user|assistant, "
                                 "'content': str}")
        return
    if fmt == "regression":
        value_of(row)
    for name in need:
        if name in ("label", "data", "value"):
            continue
        if not isinstance(row[name], str):
            raise ValueError(f"{where(row)}: field {name!r} must be a string, got {type(row[name]).__name__}")


def linearise(data: dict | str) -> str:
    """`{"name": "Aromi", "area": "riverside"}` -> `name[Aromi], area[riverside]` (the E2E meaning-representation
    form); strings pass through."""
    if isinstance(data, dict):
        return ", ".join(f"{k}[{v}]" for k, v in data.items())
    return str(data)


def label_text(row: dict, label_set: list[str] | None) -> str:
    label = row["label"]
    if label_set is not None:
        if isinstance(label, int) and not isinstance(label, bool) and 0 <= label < len(label_set):
            return label_set[label]
        if str(label) not in label_set:
            shown = ", ".join(label_set[:5]) + (", ..." if len(label_set) > 5 else "")
            raise ValueError(f"{where(row)}: label {label!r} is not in the label set ({len(label_set)} labels: "
                             f"{shown})")
    return str(label)


def value_of(row: dict) -> float:
    """A regression row's value as a float; a ValueError names file:line when it is not a finite number."""
    value = row["value"]
    try:
        number = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number):
        raise ValueError(f"{where(row)}: field 'value' must be a finite number, got {value!r}")
    return number


def prompt_and_target(row: dict, fmt: str, label_set: list[str] | None = None) -> tuple[str, str]:
    """The model's input text and the text it learns to produce (for every format but chat)."""
    check_row(row, fmt)
    if fmt == "prompt_completion":
        return row["prompt"], row["completion"]
    if fmt == "classification":
        return row["text"], label_text(row, label_set)
    if fmt == "data_to_text":
        return linearise(row["data"]), row["text"]
    if fmt == "regression":
        return row["text"], repr(value_of(row))
    raise ValueError(f"{where(row)}: chat rows have turns, not one prompt and target")


def text_views(row: dict, fmt: str) -> tuple[str, str]:
    """(input text, target text) for any format; chat joins user/system turns and assistant turns."""
    if fmt != "chat":
        return prompt_and_target(row, fmt)
    check_row(row, fmt)
    msgs = row["messages"]
    said = "\n".join(m["content"] for m in msgs if m["role"] != "assistant")
    answered = "\n".join(m["content"] for m in msgs if m["role"] == "assistant")
    return said, answered


def label_of(row: dict, fmt: str) -> str | None:
    return str(row["label"]) if fmt == "classification" else None


def label_counts(rows: list[dict], fmt: str = "auto") -> dict[str, int]:
    """Rows per label, most common first (empty when no row is a classification row)."""
    counts = Counter(label_of(r, resolve_format(r, fmt)) for r in rows)
    counts.pop(None, None)
    return dict(counts.most_common())


def map_texts(row: dict, fmt: str, fn: Callable[[str], str]) -> dict:
    """A copy of the row with `fn` applied to every free-text field of its format (used for PII scrubbing)."""
    out = dict(row)
    if fmt == "chat":
        out["messages"] = [dict(m, content=fn(m["content"])) for m in row["messages"]]
        return out
    names = {"prompt_completion": ("prompt", "completion"), "classification": ("text",),
             "data_to_text": ("data", "text"), "regression": ("text",)}[fmt]
    for name in names:
        value = row[name]
        if isinstance(value, str):
            out[name] = fn(value)
        elif isinstance(value, dict):
            out[name] = {k: fn(v) if isinstance(v, str) else v for k, v in value.items()}
    return out
