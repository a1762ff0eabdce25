"""`ftjax data stats`: token lengths with the model's tokenizer, label counts, training tokens per epoch."""

from __future__ import annotations

import math
import sys
from typing import Any

from tqdm import tqdm

from ftjax.data.formats import label_counts
from ftjax.data.encode import encode, truncate
from ftjax.data.report import histogram

UNLIMITED = 1 << 30


def token_stats(rows: list[dict], tokenizer: Any, fmt: str, max_length: int,
                label_set: list[str] | None = None) -> dict:
    """Length distributions before truncation, and what one epoch at `max_length` costs padded or packed."""
    total, target, kept, kept_target = [], [], 0, 0
    bos = tokenizer.bos_token_id
    for row in tqdm(rows, desc="tokenize", unit="row", file=sys.stderr, disable=len(rows) < 2000):
        e = encode(row, tokenizer, fmt, UNLIMITED, label_set)
        ids, mask = e["input_ids"], e["loss_mask"]
        total.append(len(ids))
        target.append(sum(mask))
        ids, mask = truncate(ids, mask, max_length, keep_first=bos is not None and ids[0] == bos)
        kept += len(ids)
        kept_target += sum(mask)
    padded = len(rows) * max_length
    return {
        "rows": len(rows), "max_length": max_length,
        "tokens": histogram(total), "target_tokens": histogram(target),
        "prompt_tokens": histogram([a - b for a, b in zip(total, target)]),
        "truncated_rows": sum(n > max_length for n in total),
        "labels": label_counts(rows, fmt),
        "per_epoch": {"tokens": kept, "target_tokens": kept_target, "padded_tokens": padded,
                      "padding_fraction": round(1 - kept / padded, 4) if padded else 0.0,
                      "packed_sequences_at_least": math.ceil(kept / max_length)},
    }

