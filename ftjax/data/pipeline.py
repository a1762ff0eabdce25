"""Training batches from encoded examples, on grain: shard, shuffle per epoch, pack or pad, batch, prefetch.

Every batch is a dict of numpy arrays of shape [batch_size, seq_len] (narrower with bucketing), right padded:
    inputs         int32  token ids
    targets        int32  the next token of the same example (inputs shifted left by one within each example)
    loss_mask      bool   True where targets[t] is a target token of its example
    values         float32  a regression example's value at its target position (0 elsewhere)
    weights        float32  the example's loss weight at its target positions (0 elsewhere; 1 unless given)
    attention_mask bool   True on real tokens
    positions      int32  0, 1, ... restarting for every packed example
    segment_ids    int32  0 on padding, 1..k for the k examples packed in a row (1 for unpacked rows)
`batch_size` is per process: with `shard_count` processes each reads its own disjoint shard of the examples.
"""

from __future__ import annotations

import functools
import json

import grain
import numpy as np
from grain.experimental import FirstFitPackIterDataset, ThreadPrefetchIterDataset

FEATURES = ("inputs", "targets", "loss_mask", "values", "weights")


class Batches:
    """Deterministic given `seed`; `get_state`/`set_state` resume exactly where a run stopped. One pass over the
    object continues where the last left off (it is its own iterator); build a new one to start over.
    `bucket_window` > 0 (padded batches only) sorts windows of that many batches by length and shuffles the
    batches inside each window; each batch is then cut to the shortest of seq_len, seq_len/2, seq_len/4,
    seq_len/8 that holds it, so short batches cost less while the model sees at most four shapes."""

    def __init__(self, examples: list[dict], *, batch_size: int, seq_len: int, seed: int, shuffle: bool = True,
                 pack: bool = False, num_epochs: int | None = None, shard_index: int = 0, shard_count: int = 1,
                 pad_id: int = 0, drop_remainder: bool = True, bucket_window: int = 0, prefetch: int = 4):
        if not 0 <= shard_index < shard_count:
            raise ValueError(f"shard_index must be in [0, {shard_count}), got {shard_index}")
        if bucket_window and (pack or shard_count > 1):  # hosts would disagree on a step's batch width
            raise ValueError("bucket_window is for padded batches in one process (packing avoids padding anyway)")
        if batch_size < 1 or seq_len < 2:
            raise ValueError(f"need batch_size >= 1 and seq_len >= 2, got {batch_size} and {seq_len}")
        self._arrays = [example_arrays(e, i, seq_len, pad_id) for i, e in enumerate(examples)]
        self._lengths = np.array([len(a["inputs"]) for a in self._arrays])
        self.batch_size, self.seq_len, self.pad_id, self.pack = batch_size, seq_len, pad_id, pack
        self._widths = sorted({max(2, seq_len >> k) for k in range(4)}) if bucket_window else [seq_len]
        n = len(examples) - len(examples) % shard_count if drop_remainder else len(examples)  # equal shards
        self.shard_size = len(range(shard_index, n, shard_count))
        if self.shard_size == 0:
            raise ValueError(f"shard {shard_index} of {shard_count} gets none of the {len(examples)} examples")
        # a saved state only fits a pipeline built the same way
        self._key = dict(examples=len(examples), seed=seed, shuffle=shuffle, pack=pack, batch_size=batch_size,
                         seq_len=seq_len, shard_index=shard_index, shard_count=shard_count,
                         bucket_window=bucket_window)
        ids = grain.MapDataset.range(len(examples))[:n][shard_index::shard_count]
        if shuffle:
            ids = ids.shuffle(seed=seed)  # reshuffled every epoch (the seed is offset by the epoch)
        ids = ids.repeat(num_epochs)
        if bucket_window:
            ids = _Bucketed(ids, self._lengths, batch_size, bucket_window, seed)
        if pack:  # read examples ahead in threads, pack in order, batch, and prefetch batches in a thread
            reads = grain.ReadOptions(num_threads=2, prefetch_buffer_size=prefetch * batch_size)
            ds = ids.map(self._arrays.__getitem__).to_iter_dataset(reads)
            ds = FirstFitPackIterDataset(ds, length_struct={k: seq_len for k in FEATURES},
                                         num_packing_bins=batch_size, seed=seed, shuffle_bins=shuffle)
            ds = ds.batch(batch_size, drop_remainder=drop_remainder, batch_fn=self._collate_packed)
            self._dataset = ThreadPrefetchIterDataset(ds, prefetch_buffer_size=prefetch)
        else:  # batches are random-access: grain builds `prefetch` of them ahead in threads
            ds = ids.map(self._padded).batch(batch_size, drop_remainder=drop_remainder, batch_fn=self._collate)
            self._dataset = ds.to_iter_dataset(grain.ReadOptions(num_threads=2, prefetch_buffer_size=prefetch))
        self._iterator = None

    def __iter__(self) -> Batches:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        if self._iterator is None:
            self._iterator = iter(self._dataset)
        return next(self._iterator)

    def get_state(self) -> dict:
        """JSON-serialisable position: grain's iterator state, the epoch reached, and how the pipeline was built."""
        if self._iterator is None:
            self._iterator = iter(self._dataset)
        state = json.loads(json.dumps(self._iterator.get_state(), default=int))
        consumed = _next_index(state) * (1 if self.pack else self.batch_size)
        return {"grain": state, "epoch": consumed // self.shard_size, **self._key}

    def set_state(self, state: dict) -> None:
        """Resume: the next batch equals the one an uninterrupted run gets next."""
        diff = {k: (state.get(k), v) for k, v in self._key.items() if state.get(k) != v}
        if diff:
            shown = ", ".join(f"{k}: saved {a}, now {b}" for k, (a, b) in diff.items())
            raise ValueError(f"data state does not fit this pipeline ({shown})")
        self._iterator = iter(self._dataset)
        self._iterator.set_state(state["grain"])

    def _padded(self, i: int) -> dict[str, np.ndarray]:
        return padded_row(self._arrays[i], self.seq_len, self.pad_id)

    def _collate(self, rows: list[dict]) -> dict[str, np.ndarray]:
        return self._fill({k: np.stack([r[k] for r in rows]) for k in rows[0]})

    def _collate_packed(self, rows: list[dict]) -> dict[str, np.ndarray]:
        seg = np.stack([r["inputs_segment_ids"] for r in rows]).astype(np.int32)
        real = seg > 0
        batch = {k: np.stack([r[k] for r in rows]) for k in FEATURES}
        return self._fill({"inputs": np.where(real, batch["inputs"], self.pad_id).astype(np.int32),
                           "targets": np.where(real, batch["targets"], self.pad_id).astype(np.int32),
                           "loss_mask": batch["loss_mask"] & real, "attention_mask": real, "segment_ids": seg,
                           "values": np.where(real, batch["values"], 0).astype(np.float32),
                           "weights": np.where(real, batch["weights"], 0).astype(np.float32),
                           "positions": np.stack([r["inputs_positions"] for r in rows]).astype(np.int32)})

    def _fill(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """A short last batch (drop_remainder=False) gets all-padding rows, so shapes stay static; with bucketing
        the batch is cut to the narrowest allowed width."""
        longest = int(batch["attention_mask"].sum(1).max())
        width = next(w for w in self._widths if w >= longest)
        missing = self.batch_size - len(batch["inputs"])
        batch = {k: np.concatenate([v[:, :width], np.zeros((missing, width), v.dtype)]) for k, v in batch.items()}
        if missing:
            batch["inputs"][-missing:] = batch["targets"][-missing:] = self.pad_id
        return batch


class _Bucketed(grain.MapDataset):
    """Example indices reordered so that each run of `batch_size` has similar lengths: every window of
    `batches` batches is sorted by length, cut into batches, and the full batches are shuffled (seeded)."""

    def __init__(self, parent: grain.MapDataset, lengths: np.ndarray, batch_size: int, batches: int, seed: int):
        super().__init__(parent)
        self._lengths, self._batch, self._window, self._seed = lengths, batch_size, batches * batch_size, seed

    def __len__(self) -> int:
        return len(self._parent)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.slice(index)
        start = index - index % self._window
        return self._window_order(start)[index - start]

    @functools.lru_cache(maxsize=8)
    def _window_order(self, start: int) -> list[int]:
        ids = sorted((self._parent[i] for i in range(start, min(start + self._window, len(self._parent)))),
                     key=lambda i: self._lengths[i])
        full = len(ids) // self._batch  # a short last batch (end of a finite run) stays last
        order = np.random.default_rng([self._seed, start]).permutation(full)
        return [i for b in order for i in ids[b * self._batch:(b + 1) * self._batch]] + ids[full * self._batch:]


def example_arrays(e: dict, i: int, seq_len: int, pad_id: int) -> dict[str, np.ndarray]:
    ids, mask = e["input_ids"], e["loss_mask"]
    if len(ids) != len(mask) or not ids:
        raise ValueError(f"example {i}: input_ids and loss_mask must be non-empty and of equal length")
    if len(ids) > seq_len:
        raise ValueError(f"example {i} has {len(ids)} tokens, more than seq_len={seq_len}; encode with "
                         "max_length <= seq_len")
    ids = np.asarray(ids, np.int32)
    loss_mask = np.append(np.asarray(mask[1:], bool), False)
    at_targets = lambda x: np.where(loss_mask, np.float32(x), np.float32(0)).astype(np.float32)
    return {"inputs": ids, "targets": np.append(ids[1:], np.int32(pad_id)), "loss_mask": loss_mask,
            "values": at_targets(e.get("value", 0.0)), "weights": at_targets(e.get("weight", 1.0))}


def padded_row(a: dict[str, np.ndarray], seq_len: int, pad_id: int) -> dict[str, np.ndarray]:
    """One example's arrays (example_arrays) right-padded to seq_len, with its attention mask, positions and
    segment id."""
    n, pad = len(a["inputs"]), seq_len - len(a["inputs"])
    out = {k: np.pad(a[k], (0, pad), constant_values=pad_id if k in ("inputs", "targets") else 0) for k in FEATURES}
    out["attention_mask"] = np.arange(seq_len) < n
    out["positions"] = np.where(out["attention_mask"], np.arange(seq_len), 0).astype(np.int32)
    out["segment_ids"] = out["attention_mask"].astype(np.int32)
    return out


def _next_index(state: dict) -> int:
    """The innermost `next_index` in a nested grain state (elements read from the index dataset)."""
    found = 0
    for key, value in state.items():
        if key == "next_index":
            found = value
        elif isinstance(value, dict):
            found = _next_index(value) or found
    return found
