"""A run's data: the tokenized splits and the batches a train step takes (shared by the trainer and bench)."""

from __future__ import annotations

import dataclasses
from typing import Any

import ml_collections
import numpy as np

from ftjax import distributed
from ftjax.data.config import group_balanced, label_set, row_weights, rows_of
from ftjax.data.encode import encode_all
from ftjax.data.pairs import PairBatches, encode_pair
from ftjax.data.pipeline import Batches
from ftjax.loss import target_positions
from ftjax.models.tokenizer import load_tokenizer, padding_id
from ftjax.tasks import task_for_step
from ftjax.train.config import preference_loss


@dataclasses.dataclass
class RunData:
    tokenizer: Any
    pad_id: int
    train: list[dict]  # encoded examples {"input_ids", "loss_mask"}
    validation: list[dict]  # encoded examples ([] without a validation split)
    validation_rows: list[dict]  # the raw validation rows, for generated task metrics


def load_split(split: str, config: ml_collections.ConfigDict, tokenizer: Any) -> tuple[list[dict], list[dict]]:
    """(rows, encoded examples with loss masks) of split `train` or `validation`; an empty split is an error."""
    rows = rows_of(config.data, split)
    if not rows:
        raise ValueError(f"{config.data[split]}: no rows for the {split} split")
    if preference_loss(config) != "none":  # pairs: (chosen example, rejected example) per row
        return rows, [encode_pair(r, tokenizer, config.data.max_length) for r in rows]
    if split == "train":
        rows = group_balanced(rows, config.data)
    examples = encode_all(rows, tokenizer, config.data.format, config.data.max_length, label_set(config.data),
                          config.head.type)
    if split == "train":  # validation stays unweighted
        for e, w in zip(examples, row_weights(rows, config.data)):
            e["weight"] = w
    return rows, examples


def load_data(config: ml_collections.ConfigDict, validation: bool = True, tokenizer: Any = None) -> RunData:
    """The tokenizer (unless given) and the train (and validation) split of a (task's) config, read once."""
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer(config.model.path)
    pad_id = padding_id(tokenizer)
    _, train = load_split("train", config, tokenizer)
    rows, examples = (load_split("validation", config, tokenizer) if validation and config.data.validation
                      else ([], []))
    return RunData(tokenizer, pad_id, train, examples, rows)


def train_batches(examples: list[dict], config: ml_collections.ConfigDict, shards: distributed.DataShards,
                  pad_id: int) -> Batches | PairBatches:
    """This process's micro-batches of the training split: shuffled by the run's seed, packed if configured;
    of a preference run, its pairs (two rows each)."""
    if preference_loss(config) != "none":
        return PairBatches(examples, batch_size=shards.rows // shards.count // 2, seq_len=config.data.max_length,
                           seed=config.train.seed, shard_index=shards.index, shard_count=shards.count, pad_id=pad_id)
    return Batches(examples, batch_size=shards.rows // shards.count, seq_len=config.data.max_length,
                   seed=config.train.seed, pack=config.data.pack, shard_index=shards.index,
                   shard_count=shards.count, pad_id=pad_id)


class MixtureBatches:
    """Every task's training batches, and which task supplies each optimiser step (ftjax.tasks.task_for_step);
    the position of each task's stream is the data state a checkpoint saves."""

    def __init__(self, batches: dict[str, Batches], rates: dict[str, float], seed: int):
        self.batches, self.rates, self.seed = batches, rates, seed

    def task(self, step: int) -> str:
        return task_for_step(self.rates, self.seed, step)

    def get_state(self) -> dict:
        if list(self.batches) == [""]:  # a single task: the state older checkpoints hold
            return self.batches[""].get_state()
        return {name: b.get_state() for name, b in self.batches.items()}

    def set_state(self, state: dict) -> None:
        if list(self.batches) == [""]:
            self.batches[""].set_state(state)
            return
        if set(state) != set(self.batches):
            raise ValueError(f"the checkpoint holds the data of tasks {sorted(state)}, this run has "
                             f"{sorted(self.batches)}")
        for name, b in self.batches.items():
            b.set_state(state[name])


def step_batch(batches: Batches, accum: int, shards: distributed.DataShards | None = None) -> dict[str, np.ndarray]:
    """`accum` micro-batches stacked [accum, micro, ...], plus the gathered target positions per micro-batch.
    With several processes the positions index the global micro-batch, so every process needs all loss masks."""
    micro = [next(batches) for _ in range(accum)]
    batch = {k: np.stack([m[k] for m in micro]) for k in ("inputs", "targets", "positions", "attention_mask",
                                                          "segment_ids", "values", "loss_mask", "weights")}
    loss_mask, weights = batch.pop("loss_mask"), batch.pop("weights")
    if shards:
        loss_mask, weights = shards.gather(loss_mask, 1), shards.gather(weights, 1)
    batch["index"], batch["valid"] = target_positions(loss_mask)
    batch["weight"] = np.take_along_axis(weights.reshape(accum, -1), batch["index"], -1) * batch["valid"]
    return batch


def eval_batches(examples: list[dict], config: ml_collections.ConfigDict, pad_id: int):
    """The validation examples (or pairs) once, in order, as batches with their target positions."""
    kind = PairBatches if preference_loss(config) != "none" else Batches
    batches = kind(examples, batch_size=config.train.eval_batch_size, seq_len=config.data.max_length, seed=0,
                   shuffle=False, num_epochs=1, pad_id=pad_id, drop_remainder=False)
    for b in batches:
        b = dict(b)
        del b["weights"]  # validation metrics are unweighted
        b["index"], b["valid"] = target_positions(b.pop("loss_mask"))
        yield b
