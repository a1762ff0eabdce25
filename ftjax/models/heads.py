"""Task heads beside the language-model head: a classification head over a label set, and a regression head.

The head reads the final hidden state of each example's last real token (the pooling transformers'
`*ForSequenceClassification` models use), or with `head.pooling=mean` the mean over the example's tokens (read at
that same token, see `pooled`). That is where the trainer's loss already gathers its target positions: a
classification example is encoded as its text plus the label's index as the one target
(`ftjax.data.encode.encode_label`; a regression example's value rides in the batch's `values`), so the chunked,
token-normalised loss trains a head exactly as it trains the LM head, with accumulation, packing and sharding
unchanged. Head weights are `HeadParam`s: trained with the adapter, saved in its checkpoints, exported as
transformers' `score` layer.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

HEADS = ("lm", "classification", "regression")


class HeadParam(nnx.Param):
    """A task head's weight: always trainable, whatever the fine-tuning method."""


POOLINGS = ("last", "mean")


class ClassificationHead(nnx.Module):
    """logits [..., labels] = h @ kernel, in float32; no bias, like transformers' `score` layer. `pooling`: the
    hidden state of the example's last token (`last`), or the mean over its tokens (`mean`, see `pooled`)."""

    def __init__(self, hidden_size: int, labels: Sequence[str], *, dtype: Any, rngs: nnx.Rngs,
                 pooling: str = "last"):
        self.labels = tuple(labels)
        self.pooling = pooling
        init = nnx.initializers.normal(0.02)
        self.kernel = HeadParam(init(rngs.params(), (hidden_size, len(labels)), dtype), out_sharding=("embed", None))

    def __call__(self, h: jax.Array) -> jax.Array:
        return (h.astype(jnp.float32) @ self.kernel[...].astype(jnp.float32))


class RegressionHead(ClassificationHead):
    """One output, the predicted value (transformers' `score` layer with num_labels=1, problem_type regression),
    trained with the squared error."""

    def __init__(self, hidden_size: int, *, dtype: Any, rngs: nnx.Rngs, pooling: str = "last"):
        super().__init__(hidden_size, ("value",), dtype=dtype, rngs=rngs, pooling=pooling)


def pooled(h: jax.Array, positions: jax.Array) -> jax.Array:
    """h [b, t, d] -> at each position, the mean of the hidden states of its example up to and including it.
    An example starts where its position is 0 (packed rows hold several), so at an example's last token this is
    mean pooling over the example, and it drops in wherever the last-token state is gathered."""
    t = h.shape[1]
    total = jnp.cumsum(h.astype(jnp.float32), axis=1)
    start = jnp.arange(t)[None, :] - positions  # the index of each token's first token
    before = jnp.where(start[..., None] > 0,
                       jnp.take_along_axis(total, jnp.maximum(start - 1, 0)[..., None], axis=1), 0.0)
    return (total - before) / (positions[..., None] + 1).astype(jnp.float32)


def pool(head: nnx.Module, h: jax.Array, positions: jax.Array) -> jax.Array:
    """The hidden states `head` reads: `pooled` ones for a mean-pooling head, else `h`."""
    return pooled(h, positions) if head.pooling == "mean" else h


def default_config() -> ml_collections.ConfigDict:
    """The `head` block: `type` lm (generate the answer) or classification (a head over data.labels, trained
    with cross-entropy), label smoothing of the loss, and `name`: the head's key in `model.heads` (a multi-task
    run names each head after its task, ftjax.tasks; '' = "classification"), and `pooling`: last (the last
    token's hidden state, as transformers' *ForSequenceClassification) or mean (over the example's tokens)."""
    return ml_collections.ConfigDict(dict(type="lm", label_smoothing=0.0, name="", pooling="last"))


def head_type(config: ml_collections.ConfigDict) -> str:
    """The run's `head.type`; "lm" for a workdir written before the head block existed."""
    return config.get("head", {}).get("type", "lm")


def head_name(config: ml_collections.ConfigDict) -> str:
    """The key of the run's task head in `model.heads` ("lm" for the language-model head)."""
    if head_type(config) == "lm":
        return "lm"
    return config.head.get("name") or head_type(config)


def check(block: ml_collections.ConfigDict, labels: Sequence[str] | None) -> None:
    from ftjax.config import one_of

    one_of(block, "head", "type", HEADS)
    if "pooling" in block:  # absent in workdirs written before it existed
        one_of(block, "head", "pooling", POOLINGS)
    if not 0.0 <= block.label_smoothing < 1.0:
        raise ValueError(f"head.label_smoothing={block.label_smoothing!r}: must be in [0, 1)")
    if block.type == "regression" and block.label_smoothing:
        raise ValueError("head.label_smoothing is for classification; a regression head's loss is the squared error")
    if block.type == "classification" and not labels:
        raise ValueError("head.type=classification needs the label set: set data.labels (comma-separated)")


def add_head(model: nnx.Module, labels: Sequence[str] | None, seed: int = 0, name: str = "classification",
             pooling: str = "last") -> ClassificationHead:
    """Give `model` a classification head over `labels` (None: a regression head) under `name` (its `heads`
    slot, see hooks.py)."""
    if labels is None:
        head = RegressionHead(model.config.hidden_size, dtype=jnp.float32, rngs=nnx.Rngs(seed), pooling=pooling)
    else:
        head = ClassificationHead(model.config.hidden_size, labels, dtype=jnp.float32, rngs=nnx.Rngs(seed),
                                  pooling=pooling)
    if model.heads is None:
        model.heads = nnx.Dict()
    model.heads[name] = head
    return head


def export_head(model: nnx.Module) -> tuple[str, ClassificationHead] | None:
    """(name, head) of the one task head a transformers or PEFT export holds, None without one; a ValueError for
    several heads, or a pooling transformers' classifiers do not have."""
    found = dict(model.heads.items()) if model.heads is not None else {}
    if len(found) > 1:
        raise ValueError(f"the model has {len(found)} task heads ({', '.join(found)}); an export holds one: "
                         "export one task (ftjax export --task=NAME)")
    if not found:
        return None
    (name, head), = found.items()
    if head.pooling != "last":
        raise ValueError(f"a {head.pooling}-pooling head has no transformers equivalent (its classifiers read the "
                         "last token); export the ftjax adapter instead (--format=adapter)")
    return name, head


def classify(model: nnx.Module, prompts: Sequence[Sequence[int]], batch_size: int = 32, pad_id: int = 0,
             head: str = "classification") -> np.ndarray:
    """Classification head `head`'s logits [n, labels] for token-id prompts, read at each one's last token."""
    graphdef, state = nnx.split(model)
    width = -(-max(map(len, prompts)) // 16) * 16  # one width: one compile
    out = []
    for i in range(0, len(prompts), batch_size):
        chunk = list(prompts[i:i + batch_size])
        real = len(chunk)
        chunk += [chunk[0]] * (batch_size - real)  # a full last batch reuses the compiled shape
        ids = np.full((batch_size, width), pad_id, np.int32)
        mask = np.zeros((batch_size, width), bool)
        for j, p in enumerate(chunk):
            ids[j, :len(p)], mask[j, :len(p)] = p, True
        last = np.asarray([len(p) - 1 for p in chunk], np.int32)
        out.append(np.asarray(_last_token_logits(graphdef, state, ids, mask, last, head))[:real])
    return np.concatenate(out)


@functools.partial(jax.jit, static_argnames=("graphdef", "head"))
def _last_token_logits(graphdef, state, ids, mask, last, head):
    model = nnx.merge(graphdef, state)
    positions = jnp.maximum(jnp.cumsum(mask, -1) - 1, 0).astype(jnp.int32)
    h, _ = model.hidden_states(ids, positions=positions, attention_mask=mask)
    h = pool(model.heads[head], h, positions)
    return model.heads[head](jnp.take_along_axis(h, last[:, None, None], axis=1)[:, 0])
