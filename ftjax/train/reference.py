"""The reference log-probs of a DPO / IPO run (train.preference.reference=initial), computed once from the model
the run starts from (the base with its fresh or model.init_from adapter) before any step, and carried in each
answer's `value` (its log-prob spread over its target tokens, so a step's per-row sum of the batch's values
gives it back). Recomputed from the same initial state at every (re)start, so a resumed run compares with the
same reference as an uninterrupted one."""

from __future__ import annotations

import jax
import ml_collections
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from ftjax.loss import NEEDS_REFERENCE
from ftjax.train.batches import RunData, eval_batches
from ftjax.train.config import preference_loss
from ftjax.train.setup import TrainSetup
from ftjax.train.step import sequence_logprobs


def attach_reference(run: TrainSetup, config: ml_collections.ConfigDict, data: dict[str, RunData]) -> None:
    """Set `value` on every answer example of the train and validation pairs (a no-op unless a reference loss
    with reference=initial)."""
    if preference_loss(config) not in NEEDS_REFERENCE or config.train.preference.reference != "initial":
        return
    graphdef, chunk = run.eval_graphdef, config.train.loss_chunk

    def logprobs(state, batch):
        return sequence_logprobs(nnx.merge(graphdef, state.trainable, state.rng, state.frozen, copy=True), batch,
                                 chunk)[0]

    fn = jax.jit(logprobs, in_shardings=(run.shardings, run.eval_shardings),
                 out_shardings=NamedSharding(run.mesh, P()))
    for d in data.values():
        for pairs in (p for p in (d.train, d.validation) if p):
            found = []
            for b in eval_batches(pairs, config, d.pad_id):
                found += np.asarray(fn(run.state, run.place_eval(b))).tolist()
            for example, logp in zip((e for pair in pairs for e in pair), found):  # padding rows come last
                example["value"] = logp / max(sum(example["loss_mask"][1:]), 1)
