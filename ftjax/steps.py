"""The jitted train and loss-evaluation steps: pure functions of split NNX state.

The model is split once into (trainable, rng, rest); only `trainable` is differentiated and updated, so a
LoRA run never computes or stores gradients for the frozen base (DESIGN practice 4). Gradient accumulation
scans over micro-batches, sums token-level losses and gradients, and divides once by the total number of
target tokens, so k micro-batches equal one batch k times the size even with unequal lengths.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from ftjax.loss import target_loss_sums

BATCH_KEYS = ("inputs", "targets", "positions", "attention_mask", "segment_ids", "index", "valid")


def _loss_sums(model, batch, chunk: int):
    h, _ = model.hidden_states(batch["inputs"], positions=batch["positions"], attention_mask=batch["attention_mask"],
                               segment_ids=batch["segment_ids"])
    return target_loss_sums(model.logits, h, batch["targets"], batch["index"], batch["valid"], chunk)


def make_train_step(graphdef: nnx.GraphDef, tx: optax.GradientTransformation, chunk: int):
    """step(trainable, opt_state, rng, rest, batch) -> (trainable, opt_state, rng, metrics).

    `batch` leaves have a leading micro-batch axis [accum, micro, ...]."""

    def loss_fn(trainable, rng, rest, mb):
        # copy=True: fresh Variables at this trace level, so dropout may advance its RNG count inside grad
        model = nnx.merge(graphdef, trainable, rng, rest, copy=True)
        nll, n, hits = _loss_sums(model, mb, chunk)
        return nll, (n, hits, nnx.state(model, nnx.RngState))

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def step(trainable, opt_state, rng, rest, batch):
        def micro(carry, mb):
            grads, nll, n, hits, rng = carry
            (l, (k, h, rng)), g = grad_fn(trainable, rng, rest, mb)
            return (jax.tree.map(jnp.add, grads, g), nll + l, n + k, hits + h, rng), None

        zeros = jax.tree.map(jnp.zeros_like, trainable)
        init = (zeros, jnp.float32(0), jnp.float32(0), jnp.int32(0), rng)
        (grads, nll, n, hits, rng), _ = jax.lax.scan(micro, init, batch)
        n = jnp.maximum(n, 1.0)
        grads = jax.tree.map(lambda g: g / n, grads)
        updates, opt_state = tx.update(grads, opt_state, trainable)
        trainable = optax.apply_updates(trainable, updates)
        metrics = {"loss": nll / n, "target_tokens": n, "token_accuracy": hits / n,
                   "grad_norm": optax.tree.norm(grads)}
        return trainable, opt_state, rng, metrics

    return step


def make_eval_step(graphdef: nnx.GraphDef, chunk: int):
    """eval(trainable, rng, rest, batch) -> (nll sum, target count, argmax hits) for one batch [b, ...]."""

    def step(trainable, rng, rest, batch):
        return _loss_sums(nnx.merge(graphdef, trainable, rng, rest, copy=True), batch, chunk)

    return step


def rng_counts(rng: nnx.State) -> list[int]:
    """The positions of the model's RNG streams (dropout), for the checkpoint: their keys never change."""
    return [int(x) for x in jax.tree.leaves(rng.filter(nnx.RngCount))]


def set_rng_counts(rng: nnx.State, counts: list[int]) -> nnx.State:
    count_state = rng.filter(nnx.RngCount)
    leaves, tree = jax.tree.flatten(count_state)
    if len(leaves) != len(counts):
        raise ValueError(f"checkpoint has {len(counts)} RNG streams, the model {len(leaves)}")
    restored = jax.tree.unflatten(tree, [jnp.asarray(c, leaf.dtype) for c, leaf in zip(counts, leaves)])
    return nnx.merge_state(rng, restored)
