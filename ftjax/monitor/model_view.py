"""What the drift monitor asks of a fine-tuned model: its predicted label for each input, and a pooled embedding.

Production rows carry inputs only (no label or target): the input is read from the row's `text`, `prompt`,
`data` (linearised as training linearises it) or `messages` (the turns before the model's answer), and encoded
as evaluation encodes a prompt. Predictions come from the run's classification head, or for a run that
generates its label, from greedy generation mapped onto the label set ("other" when no label matches).
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

from ftjax.data.config import label_set
from ftjax.data.formats import linearise
from ftjax.data.sources import where
from ftjax.eval.config import eval_settings
from ftjax.eval.runner import classify_texts, generate_texts, labels_only, likeliest_labels
from ftjax.metrics.classification import OTHER
from ftjax.metrics.text import normalizer
from ftjax.models.heads import head_name, head_type
from ftjax.models.tokenizer import encode_prompt, padding_id


def input_of(row: dict) -> str | list[dict]:
    """A row's model input: its text, prompt or linearised data, or its chat turns up to the last answer."""
    for key in ("text", "prompt"):
        if isinstance(row.get(key), str):
            return row[key]
    if isinstance(row.get("data"), dict):
        return linearise(row["data"])
    msgs = row.get("messages")
    if isinstance(msgs, list) and msgs:
        answers = [i for i, m in enumerate(msgs) if isinstance(m, dict) and m.get("role") == "assistant"]
        return msgs[:answers[-1]] if answers and answers[-1] > 0 else msgs
    raise ValueError(f"{where(row)}: no input: a row needs a text, prompt, data or messages field")


def input_words_text(value: str | list[dict]) -> str:
    """The input as plain text (chat turns joined), for the text statistics."""
    return value if isinstance(value, str) else "\n".join(str(m.get("content", "")) for m in value)


class ModelView:
    """Predictions and embeddings of one loaded run (model with its adapter, tokenizer, config)."""

    def __init__(self, model: nnx.Module, tokenizer: Any, config: ml_collections.ConfigDict):
        self.model, self.tokenizer, self.config = model, tokenizer, config
        self.labels = label_set(config.data)
        self.batch_size = eval_settings(config).batch_size
        self.pad = padding_id(tokenizer)

    def prompts(self, inputs: Sequence[str | list[dict]]) -> list[list[int]]:
        limit = self.config.data.max_length - 1
        return [(encode_prompt(self.tokenizer, x) if isinstance(x, str) else
                 encode_prompt(self.tokenizer, messages=x))[:limit] for x in inputs]

    @property
    def predicts_labels(self) -> bool:
        return head_type(self.config) == "classification" or (head_type(self.config) == "lm" and bool(self.labels))

    def predict(self, inputs: Sequence[str | list[dict]]) -> list[str]:
        """The model's label for each input."""
        prompts = self.prompts(inputs)
        if head_type(self.config) == "classification":
            return classify_texts(self.model, self.tokenizer, prompts, self.config.data.max_length,
                                  self.batch_size, head_name(self.config))[0]
        settings = eval_settings(self.config)
        if settings.constrain == "rank":  # as `ftjax eval` predicts
            return likeliest_labels(self.model, self.tokenizer, prompts, self.labels, self.batch_size)
        texts, _ = generate_texts(self.model, self.tokenizer, prompts, settings.max_new_tokens, self.batch_size)
        if settings.constrain == "labels":
            texts, _ = labels_only(self.model, self.tokenizer, prompts, texts, self.labels,
                                   normalizer(settings.normalize), self.batch_size)
        known = {label.lower(): label for label in self.labels}
        return [known.get(t.strip().lower(), OTHER) for t in texts]

    def embed(self, inputs: Sequence[str | list[dict]]) -> np.ndarray:
        """[n, hidden] mean over each input's tokens of the final hidden states."""
        prompts = self.prompts(inputs)
        graphdef, state = nnx.split(self.model)
        width = -(-max(map(len, prompts)) // 16) * 16  # one width: one compile
        out = []
        for i in range(0, len(prompts), self.batch_size):
            chunk = list(prompts[i:i + self.batch_size])
            real = len(chunk)
            chunk += [chunk[0]] * (self.batch_size - real)
            ids = np.full((self.batch_size, width), self.pad, np.int32)
            mask = np.zeros((self.batch_size, width), bool)
            for j, p in enumerate(chunk):
                ids[j, :len(p)], mask[j, :len(p)] = p, True
            out.append(np.asarray(_mean_states(graphdef, state, ids, mask))[:real])
        return np.concatenate(out)


@functools.partial(jax.jit, static_argnames=("graphdef",))
def _mean_states(graphdef, state, ids, mask):
    model = nnx.merge(graphdef, state)
    positions = jnp.maximum(jnp.cumsum(mask, -1) - 1, 0).astype(jnp.int32)
    h, _ = model.hidden_states(ids, positions=positions, attention_mask=mask)
    weights = mask.astype(jnp.float32)[..., None]
    return (h.astype(jnp.float32) * weights).sum(1) / weights.sum(1)
