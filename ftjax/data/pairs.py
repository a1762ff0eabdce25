"""Preference pairs: rows with a prompt and a chosen and a rejected answer, encoded and batched for the
preference losses (ftjax.loss.preference_losses).

A row is `{"prompt": str | chat turns, "chosen": str, "rejected": str}` (JSONL/CSV/Parquet, hf:, tfds:; map
other column names with data.columns). Each answer is encoded as a prompt/completion example (or, for chat
turns, the turns plus the answer as the assistant's turn), so its target tokens are the answer and EOS. A batch
holds `batch_size` pairs as 2 x batch_size padded rows, chosen then rejected: [c0, r0, c1, r1, ...], with the
same arrays as ftjax.data.pipeline's batches, so the trainer's step batching, sharding and resume apply as they
are. Pairs are not packed (a pair's two rows must stay apart and aligned).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ftjax.data.encode import encode
from ftjax.data.pipeline import FEATURES, example_arrays, padded_row
from ftjax.data.sources import where

FIELDS = ("prompt", "chosen", "rejected")


def check_pair(row: dict) -> None:
    missing = [f for f in FIELDS if f not in row]
    if missing:
        have = ", ".join(k for k in row if not k.startswith("_"))
        raise ValueError(f"{where(row)}: a preference row needs prompt, chosen and rejected; missing "
                         f"{', '.join(missing)} (columns: {have})")
    for f in ("chosen", "rejected"):
        if not isinstance(row[f], str) or not row[f].strip():
            raise ValueError(f"{where(row)}: field {f!r} must be a non-empty string")
    prompt = row["prompt"]
    if not (isinstance(prompt, str) and prompt.strip()) and not (
            isinstance(prompt, list) and prompt and all(isinstance(m, dict) and "role" in m and "content" in m
                                                        for m in prompt)):
        raise ValueError(f"{where(row)}: 'prompt' must be a string or a list of chat turns (role, content)")
    if row["chosen"].strip() == row["rejected"].strip():
        raise ValueError(f"{where(row)}: chosen and rejected are the same answer")


def encode_pair(row: dict, tokenizer: Any, max_length: int) -> tuple[dict, dict]:
    """(chosen example, rejected example), each {"input_ids", "loss_mask"}; an answer cut off entirely by
    max_length is an error naming the row."""
    check_pair(row)
    out = []
    for f in ("chosen", "rejected"):
        if isinstance(row["prompt"], str):
            one = {"prompt": row["prompt"], "completion": row[f], "_source": row.get("_source"),
                   "_line": row.get("_line")}
            fmt = "prompt_completion"
        else:
            one = {"messages": [*row["prompt"], {"role": "assistant", "content": row[f]}],
                   "_source": row.get("_source"), "_line": row.get("_line")}
            fmt = "chat"
        e = encode(one, tokenizer, fmt, max_length)
        if not any(e["loss_mask"][1:]):
            raise ValueError(f"{where(row)}: the prompt leaves no room for the {f} answer in data.max_length="
                             f"{max_length}")
        out.append(e)
    return out[0], out[1]


class PairBatches:
    """Batches of `batch_size` pairs (2 x batch_size rows), shuffled per epoch with (seed, epoch); this process
    reads pairs shard_index, shard_index + shard_count, ...; `get_state`/`set_state` resume exactly."""

    def __init__(self, pairs: list[tuple[dict, dict]], *, batch_size: int, seq_len: int, seed: int,
                 shuffle: bool = True, num_epochs: int | None = None, shard_index: int = 0, shard_count: int = 1,
                 pad_id: int = 0, drop_remainder: bool = True):
        if batch_size < 1:
            raise ValueError(f"need batch_size >= 1 pair, got {batch_size}")
        n = len(pairs) - len(pairs) % shard_count if drop_remainder else len(pairs)
        self._mine = list(range(n))[shard_index::shard_count]
        if not self._mine:
            raise ValueError(f"shard {shard_index} of {shard_count} gets none of the {len(pairs)} pairs")
        self._arrays = [(example_arrays(c, i, seq_len, pad_id), example_arrays(r, i, seq_len, pad_id))
                        for i, (c, r) in enumerate(pairs)]
        self.batch_size, self.seq_len, self.pad_id = batch_size, seq_len, pad_id
        self.seed, self.shuffle, self.num_epochs, self.drop_remainder = seed, shuffle, num_epochs, drop_remainder
        self._key = dict(pairs=len(pairs), seed=seed, shuffle=shuffle, batch_size=batch_size, seq_len=seq_len,
                         shard_index=shard_index, shard_count=shard_count)
        self.epoch, self.index = 0, 0

    def _order(self, epoch: int) -> list[int]:
        if not self.shuffle:
            return self._mine
        return [self._mine[i] for i in np.random.default_rng([self.seed, epoch]).permutation(len(self._mine))]

    def __iter__(self) -> PairBatches:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        if self.num_epochs is not None and self.epoch >= self.num_epochs:
            raise StopIteration
        order = self._order(self.epoch)
        picked = order[self.index:self.index + self.batch_size]
        if len(picked) < self.batch_size and (self.drop_remainder or not picked):
            self.epoch, self.index = self.epoch + 1, 0
            return next(self)
        self.index += len(picked)
        if self.index >= len(order):
            self.epoch, self.index = self.epoch + 1, 0
        rows = [padded_row(a, self.seq_len, self.pad_id) for i in picked for a in self._arrays[i]]
        rows += [self._blank()] * (2 * self.batch_size - len(rows))
        return {k: np.stack([r[k] for r in rows]) for k in rows[0]}

    def _blank(self) -> dict[str, np.ndarray]:
        """An all-padding row (a short last batch keeps its shape); its pair has no targets and counts for none."""
        return padded_row({k: np.zeros(0, np.float32 if k in ("values", "weights") else
                                  bool if k == "loss_mask" else np.int32) for k in FEATURES}, self.seq_len, self.pad_id)

    def get_state(self) -> dict:
        return {"epoch": self.epoch, "index": self.index, **self._key}

    def set_state(self, state: dict) -> None:
        diff = {k: (state.get(k), v) for k, v in self._key.items() if state.get(k) != v}
        if diff:
            shown = ", ".join(f"{k}: saved {a}, now {b}" for k, (a, b) in diff.items())
            raise ValueError(f"data state does not fit this pipeline ({shown})")
        self.epoch, self.index = int(state["epoch"]), int(state["index"])
