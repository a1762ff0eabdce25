"""The jitted train and loss-evaluation steps: pure functions of the TrainState (state.py).

Gradient accumulation scans over micro-batches, sums token-level losses and gradients, and divides once by the
total number of target tokens, so k micro-batches equal one batch k times the size even with unequal lengths.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from ftjax.loss import NEEDS_REFERENCE, preference_losses, target_logprobs, target_loss_sums
from ftjax.models.heads import RegressionHead, pool
from ftjax.models.hooks import is_output_head
from ftjax.peft.state import use_adapter
from ftjax.train.state import TrainState

PREFERENCE_SUMS = ("reward_chosen", "reward_rejected", "reward_margin")  # summed per pair, logged as means


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


def _row_sums(per_target: jax.Array, batch) -> jax.Array:
    """[rows] sums of a per-target quantity [k] (zero off target) over each row's gathered target positions."""
    rows, width = batch["inputs"].shape
    return jax.ops.segment_sum(per_target, batch["index"] // width, num_segments=rows)


def sequence_logprobs(model, batch, chunk: int) -> tuple[jax.Array, jax.Array]:
    """(summed log-prob of each row's target tokens, their count) [rows]."""
    h, _ = model.hidden_states(batch["inputs"], positions=batch["positions"], attention_mask=batch["attention_mask"],
                               segment_ids=batch["segment_ids"])
    valid = batch["valid"].astype(jnp.float32)
    logp = target_logprobs(model.logits, h, batch["targets"], batch["index"], chunk) * valid
    return _row_sums(logp, batch), _row_sums(valid, batch)


def preference_sums(model, batch, chunk: int, p) -> tuple[jax.Array, jax.Array, jax.Array, dict]:
    """(summed pair loss, pairs, pairs whose chosen reward is higher, summed rewards) of a batch of pairs laid
    out [c0, r0, c1, r1, ...] (ftjax.data.pairs). The reference log-probs are the batch's `values` summed per
    row (precomputed from the initial model, ftjax.train.reference) or, with reference=adapter_off, the same
    model with its adapter off, in the same step and outside the gradient."""
    logp, count = sequence_logprobs(model, batch, chunk)
    ref = (None, None)
    if p.loss in NEEDS_REFERENCE:
        if p.reference == "adapter_off":
            with use_adapter(model, None):
                ref_logp = jax.lax.stop_gradient(sequence_logprobs(model, batch, chunk)[0])
        else:
            ref_logp = _row_sums(jnp.take(batch["values"].reshape(-1), batch["index"]) * batch["valid"], batch)
        ref = (ref_logp[0::2], ref_logp[1::2])
    loss, rc, rr = preference_losses(p.loss, logp[0::2], logp[1::2], *ref, count[0::2], count[1::2], p.beta,
                                     p.label_smoothing, p.gamma, p.orpo_weight)
    real = ((count[0::2] > 0) & (count[1::2] > 0)).astype(jnp.float32)  # padding pairs count for nothing
    mask = lambda x: jnp.sum(jnp.where(real > 0, x, 0.0))
    extra = {"reward_chosen": mask(rc), "reward_rejected": mask(rr), "reward_margin": mask(rc - rr)}
    return mask(loss), jnp.sum(real), jnp.sum((rc > rr) & (real > 0)).astype(jnp.int32), extra


def lm_head_trains(model: nnx.Module, trainable: nnx.State) -> bool:
    """Whether any trainable parameter sits in the LM head (the embedding, when tied): then the loss must be
    differentiated through the head's weights and the fused head gradient (loss.py) does not apply."""
    return any(is_output_head(path, var.shape, model.config, model.layout.head)
               for path, var in nnx.to_flat_state(trainable))


def make_train_step(graphdef: nnx.GraphDef, tx: optax.GradientTransformation, chunk: int, head: str = "lm",
                    smoothing: float = 0.0, accuracy: bool = True, preference=None):
    """step(state, batch) -> (state, metrics); `batch` leaves have a leading micro-batch axis [accum, micro, ...].
    `head`: "lm", or the key of the task head whose loss trains (ftjax.models.heads.head_name). `accuracy`:
    report token_accuracy (False for a regression head, whose loss is a squared error with nothing to hit).
    `preference` (the train.preference block): the loss is its pair loss, normalised by the number of pairs,
    with reward_accuracy and mean rewards logged."""

    def loss_fn(trainable, rng, frozen, mb):
        # copy=True: fresh Variables at this trace level, so dropout may advance its RNG count inside grad
        model = nnx.merge(graphdef, trainable, rng, frozen, copy=True)
        if preference is not None:
            nll, n, hits, extra = preference_sums(model, mb, chunk, preference)
        else:
            (nll, n, hits), extra = _loss_sums(model, mb, chunk, head, smoothing, trainable), {}
        return nll, (n, hits, extra, nnx.state(model, nnx.RngState))

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    extras = PREFERENCE_SUMS if preference is not None else ()

    def step(state: TrainState, batch):
        def micro(carry, mb):
            grads, nll, n, hits, extra, rng = carry
            (l, (k, h, e, rng)), g = grad_fn(state.trainable, rng, state.frozen, mb)
            return (jax.tree.map(jnp.add, grads, g), nll + l, n + k, hits + h, jax.tree.map(jnp.add, extra, e),
                    rng), None

        zeros = jax.tree.map(jnp.zeros_like, state.trainable)
        init = (zeros, jnp.float32(0), jnp.float32(0), jnp.int32(0), {k: jnp.float32(0) for k in extras}, state.rng)
        (grads, nll, n, hits, extra, rng), _ = jax.lax.scan(micro, init, batch)
        n = jnp.maximum(n, 1.0)
        grads = jax.tree.map(lambda g: g / n, grads)
        updates, opt_state = tx.update(grads, state.opt_state, state.trainable)
        trainable = optax.apply_updates(state.trainable, updates)
        metrics = {"loss": nll / n, "grad_norm": optax.tree.norm(grads)}
        if preference is not None:
            metrics |= {"pairs": n, "reward_accuracy": hits / n} | {k: v / n for k, v in extra.items()}
        else:
            metrics["target_tokens"] = n
            if accuracy:
                metrics["token_accuracy"] = hits / n
        return TrainState(trainable, opt_state, rng, state.frozen), metrics

    return step


def make_eval_step(graphdef: nnx.GraphDef, chunk: int, head: str = "lm", preference=None):
    """eval(state, batch) -> (nll sum, target count, argmax hits) for one batch [b, ...]; with `preference`,
    (pair loss sum, pairs, pairs won, summed reward margin)."""

    def step(state: TrainState, batch):
        model = nnx.merge(graphdef, state.trainable, state.rng, state.frozen, copy=True)
        if preference is not None:
            loss, n, hits, extra = preference_sums(model, batch, chunk, preference)
            return loss, n, hits, extra["reward_margin"]
        return _loss_sums(model, batch, chunk, head, 0.0)

    return step
