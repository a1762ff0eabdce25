"""The jitted train and loss-evaluation steps: pure functions of the TrainState (state.py).

Gradient accumulation scans over micro-batches, sums token-level losses and gradients, and divides once by the
total number of target tokens, so k micro-batches equal one batch k times the size even with unequal lengths.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from ftjax.loss import target_loss_sums
from ftjax.models.heads import RegressionHead, pool
from ftjax.models.hooks import is_output_head
from ftjax.train.state import TrainState

def _loss_sums(model, batch, chunk: int, head: str, smoothing: float, trainable: nnx.State | None = None):
    h, _ = model.hidden_states(batch["inputs"], positions=batch["positions"], attention_mask=batch["attention_mask"],
                               segment_ids=batch["segment_ids"])
    out = model.logits if head == "lm" else model.heads[head]
    values = None
    if head != "lm":
        h = pool(out, h, batch["positions"])
        values = batch["values"] if isinstance(out, RegressionHead) else None
    fused = head == "lm" and not (trainable is not None and lm_head_trains(model, trainable))
    return target_loss_sums(out, h, batch["targets"], batch["index"], batch["valid"], chunk, smoothing, values,
                            fused=fused, weights=batch.get("weight"))


def lm_head_trains(model: nnx.Module, trainable: nnx.State) -> bool:
    """Whether any trainable parameter sits in the LM head (the embedding, when tied): then the loss must be
    differentiated through the head's weights and the fused head gradient (loss.py) does not apply."""
    return any(is_output_head(path, var.shape, model.config, model.layout.head)
               for path, var in nnx.to_flat_state(trainable))


def make_train_step(graphdef: nnx.GraphDef, tx: optax.GradientTransformation, chunk: int, head: str = "lm",
                    smoothing: float = 0.0, accuracy: bool = True):
    """step(state, batch) -> (state, metrics); `batch` leaves have a leading micro-batch axis [accum, micro, ...].
    `head`: "lm", or the key of the task head whose loss trains (ftjax.models.heads.head_name). `accuracy`:
    report token_accuracy (False for a regression head, whose loss is a squared error with nothing to hit)."""

    def loss_fn(trainable, rng, frozen, mb):
        # copy=True: fresh Variables at this trace level, so dropout may advance its RNG count inside grad
        model = nnx.merge(graphdef, trainable, rng, frozen, copy=True)
        nll, n, hits = _loss_sums(model, mb, chunk, head, smoothing, trainable)
        return nll, (n, hits, nnx.state(model, nnx.RngState))

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def step(state: TrainState, batch):
        def micro(carry, mb):
            grads, nll, n, hits, rng = carry
            (l, (k, h, rng)), g = grad_fn(state.trainable, rng, state.frozen, mb)
            return (jax.tree.map(jnp.add, grads, g), nll + l, n + k, hits + h, rng), None

        zeros = jax.tree.map(jnp.zeros_like, state.trainable)
        init = (zeros, jnp.float32(0), jnp.float32(0), jnp.int32(0), state.rng)
        (grads, nll, n, hits, rng), _ = jax.lax.scan(micro, init, batch)
        n = jnp.maximum(n, 1.0)
        grads = jax.tree.map(lambda g: g / n, grads)
        updates, opt_state = tx.update(grads, state.opt_state, state.trainable)
        trainable = optax.apply_updates(state.trainable, updates)
        metrics = {"loss": nll / n, "target_tokens": n, "grad_norm": optax.tree.norm(grads)}
        if accuracy:
            metrics["token_accuracy"] = hits / n
        return TrainState(trainable, opt_state, rng, state.frozen), metrics

    return step


def make_eval_step(graphdef: nnx.GraphDef, chunk: int, head: str = "lm"):
    """eval(state, batch) -> (nll sum, target count, argmax hits) for one batch [b, ...]."""

    def step(state: TrainState, batch):
        model = nnx.merge(graphdef, state.trainable, state.rng, state.frozen, copy=True)
        return _loss_sums(model, batch, chunk, head, 0.0)

    return step
