"""A token trie as arrays that jitted decoding can index: generation constrained to a fixed set of token sequences
(a classifier's labels, each ending with its stop token), one gather and one scatter per step.

    trie = token_trie([[5, 9, 2], [5, 7, 2], [8, 2]])
    generate(model, prompts, Sampling(max_new_tokens=trie.depth), allowed=trie)   # every output is one of them
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class TokenTrie:
    """tokens[s]: the token ids that may follow node s (padded by repeating its first); next[s, k]: the node that
    tokens[s, k] leads to. Node 0 is the root; a finished sequence's node allows nothing new (padding only)."""

    tokens: np.ndarray  # [nodes, widest] int32
    next: np.ndarray  # [nodes, widest] int32
    depth: int  # the longest sequence: the new tokens a constrained decode needs

    def as_arrays(self) -> tuple[jax.Array, jax.Array]:
        return jnp.asarray(self.tokens), jnp.asarray(self.next)


def token_trie(sequences: Sequence[Sequence[int]]) -> TokenTrie:
    """The trie of `sequences`; a ValueError for none, an empty one, or two that are equal."""
    if not sequences or any(len(s) == 0 for s in sequences):
        raise ValueError("a token trie needs at least one sequence and no empty one")
    if len({tuple(s) for s in sequences}) < len(sequences):
        raise ValueError("two of the sequences are the same tokens, so decoding could not tell them apart")
    children: list[dict[int, int]] = [{}]
    for seq in sequences:
        node = 0
        for tok in seq:
            if tok not in children[node]:
                children[node][tok] = len(children)
                children.append({})
            node = children[node][tok]
    widest = max(map(len, children))
    tokens = np.zeros((len(children), widest), np.int32)
    nxt = np.zeros((len(children), widest), np.int32)
    for node, kids in enumerate(children):
        toks, dests = (list(kids), list(kids.values())) if kids else ([0], [node])  # a leaf: padding only
        tokens[node] = toks + [toks[0]] * (widest - len(toks))
        nxt[node] = dests + [dests[0]] * (widest - len(dests))
    return TokenTrie(tokens, nxt, max(map(len, sequences)))


def mask_to_trie(logits: jax.Array, nodes: jax.Array, tokens: jax.Array) -> jax.Array:
    """`logits` [b, v] with every token that cannot follow each row's trie node set to the float minimum."""
    allowed = tokens[nodes]  # [b, widest]
    rows = jnp.arange(logits.shape[0])[:, None]
    neg = jnp.full_like(logits, jnp.finfo(logits.dtype).min)
    return neg.at[rows, allowed].set(logits[rows, allowed])


def follow(nodes: jax.Array, chosen: jax.Array, tokens: jax.Array, nxt: jax.Array) -> jax.Array:
    """Each row's node after emitting `chosen` [b] (an allowed token of its node)."""
    k = jnp.argmax(tokens[nodes] == chosen[:, None], -1)
    return nxt[nodes, k]
