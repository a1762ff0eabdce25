"""The hook points a model family declares, so that PEFT and the trainer never reach into its internals.

A family's LM class sets `layout = Layout(...)`: where its decoder stack, blocks and attention layers are, which
linear layers make keys/values and end the feed-forward, and how its checkpoints store linear weights. Its
modules hold slots that start empty and that PEFT or a task may fill:

    backbone.prompt    a module with prepend(x, positions, valid, segment_ids, cache) and strip(h): virtual
                       input tokens in front of every sequence (prompt and prefix tuning)
    attention.prefix   a module (k, v, mask) -> (k, v, mask) adding learned keys/values (prefix tuning)
    model.heads        an nnx.Dict of task heads reading final hidden states (heads.py: classification)

Every linear layer is a `layers.Linear`, which adapters wrap in place.
"""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class Layout:
    backbone: str  # the LM attribute holding the decoder stack (transformers' names: model, transformer)
    blocks: str  # the backbone's list of blocks (layers, h)
    attention: str  # a block's attention module (self_attn, attn)
    key_value: tuple[str, ...]  # linear layers under a block whose outputs are keys and values
    feedforward_out: tuple[str, ...]  # the feed-forward's output projection under a block
    head: str = "lm_head"  # the untied output head on the LM
    hf_kernels_in_out: bool = False  # checkpoints store linear weights [in, out] (GPT-2's Conv1D), not [out, in]

    def attention_path(self, layer: int) -> str:
        """Dotted module path of block `layer`'s attention, from the LM."""
        return f"{self.backbone}.{self.blocks}.{layer}.{self.attention}"


def is_output_head(path: tuple[Any, ...], shape: tuple[int, ...], cfg: Any, head: str = "lm_head") -> bool:
    """Whether the parameter at `path` is the output head: the LM head's, or the embedding when it is tied."""
    keys = [str(k) for k in path]
    return keys[0] == head or (cfg.tie_embeddings and keys[-1] == "embedding" and shape[0] == cfg.vocab_size)
