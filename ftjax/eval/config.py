"""The `eval` block of an experiment config, read by `ftjax eval` and the trainer's validation hook.

    max_new_tokens, batch_size   generation per prompt
    num_beams, length_penalty, no_repeat_ngram_size   beam search when num_beams > 1 (1 = greedy)
    rerank       "" (the best beam) or "slots": of the num_beams finished hypotheses of a data-to-text row,
                 the one with the fewest slot errors against its meaning representation (ties: beam order), as
                 the E2E systems with a slot aligner rerank their n-best lists
    constrain    "", "labels" or "rank": with "labels", a generated classification label that is none of
                 data.labels is replaced by the label the model finds likeliest after the prompt (all labels
                 teacher-forced), so every prediction is a label; with "rank", nothing is generated and every
                 prediction is that likeliest label (rank classification)
    metrics      task metrics generated on the validation split during training (val_<name>, usable by
                 early stopping), e.g. "rouge_l,exact_match" or "accuracy"; "" = loss metrics only
    normalize    text normalisation before exact match / token F1
    bootstrap    resamples for the 95% intervals (0 = none)
"""

from __future__ import annotations

import ml_collections

from ftjax.config import at_least
from ftjax.metrics.suite import parse_metrics
from ftjax.metrics.text import SQUAD, normalizer

RERANK = ("", "slots")  # "" = the best beam
CONSTRAIN = ("", "labels", "rank")  # "" = any tokens


def default_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(max_new_tokens=16, batch_size=16, metrics="", normalize=SQUAD,
                                          bootstrap=1000, num_beams=1, length_penalty=1.0, no_repeat_ngram_size=0,
                                          rerank="", constrain=""))


def check(block: ml_collections.ConfigDict) -> None:
    """One-line errors for a bad `eval` block: sizes, metric names, normalisation, reranking and constraints."""
    at_least(block, "eval", 1, "max_new_tokens", "batch_size", "num_beams")
    at_least(block, "eval", 0, "bootstrap", "no_repeat_ngram_size")
    rerank = block.get("rerank", "")
    if rerank not in RERANK:
        raise ValueError(f"eval.rerank={rerank!r}: choose from {', '.join(map(repr, RERANK))}")
    if rerank and block.num_beams < 2:
        raise ValueError(f"eval.rerank={rerank} picks among beam hypotheses: set eval.num_beams >= 2")
    constrain = block.get("constrain", "")
    if constrain not in CONSTRAIN:
        raise ValueError(f"eval.constrain={constrain!r}: choose from {', '.join(map(repr, CONSTRAIN))}")
    try:
        parse_metrics(block.metrics)
        normalizer(block.normalize)
    except ValueError as e:
        raise ValueError(f"eval: {e}") from None


def check_decoding(block: ml_collections.ConfigDict, task: str, head: str, labels: list[str] | None) -> None:
    """One-line errors for decoding options that do not fit the rows (`task`, from ftjax.eval.items) or the run's
    head: checked before a model is loaded."""
    if head != "lm":  # a head picks a label or value; nothing is generated
        return
    if block.get("rerank", "") == "slots" and task != "data_to_text":
        raise ValueError(f"eval.rerank=slots reranks data-to-text outputs (mr,ref rows); got {task} rows")
    constrain = block.get("constrain", "")
    if constrain:
        if task != "classification":
            raise ValueError(f"eval.constrain={constrain} keeps predictions to the label set (text,label rows); "
                             f"got {task} rows")
        if not labels:
            raise ValueError(f"eval.constrain={constrain} needs the label set: set data.labels (comma-separated)")


def eval_settings(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """config.eval with the keys a workdir written before they existed lacks filled from the defaults."""
    return ml_collections.ConfigDict({**default_config().to_dict(), **config.get("eval", {})})
