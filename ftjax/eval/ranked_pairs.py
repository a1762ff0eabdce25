"""Metric-ranked preference pairs (`ftjax pairs`): sample k outputs per prompt with a model, score each, and
pair the best with the worst. What preference tuning then pushes towards is what the score rewards.

Scores: `slot_error` (data-to-text: missing, contradicted and invented facts of the meaning representation,
ftjax.metrics.slots; fewer is better, ROUGE-L against the references breaks ties), `rouge_l`, `bleu`
(sentence BLEU) or `exact_match` against the references. A prompt whose best and worst outputs score the same
gives no pair.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
from flax import nnx
from tqdm import tqdm

from ftjax.eval.items import EvalItem, encode_items
from ftjax.metrics.slots import slot_errors
from ftjax.metrics.text import bleu, exact_match, rouge
from ftjax.models.generate import Sampling, generate
from ftjax.models.tokenizer import padding_id, stop_token_ids

SCORES = ("slot_error", "rouge_l", "bleu", "exact_match")


def score_outputs(score: str, item: EvalItem, outputs: Sequence[str]) -> np.ndarray:
    """[k, 2] (primary, tie-break) scores of one item's outputs, higher better."""
    refs = [item.references] * len(outputs)
    rl = rouge(list(outputs), refs)["rouge_l"].items[:, 0]
    if score == "slot_error":
        if item.prompt is None:
            raise ValueError("score=slot_error needs data-to-text rows (a meaning representation prompt)")
        errors = [sum(slot_errors(item.prompt, o)[:3]) for o in outputs]
        return np.stack([-np.asarray(errors, float), rl], 1)
    if score == "rouge_l":
        primary = rl
    elif score == "bleu":
        primary = np.array([float(bleu([o], [item.references]).value) for o in outputs])
    elif score == "exact_match":
        primary = exact_match(list(outputs), refs).items[:, 0]
    else:
        raise ValueError(f"unknown score {score!r}; choose from {', '.join(SCORES)}")
    return np.stack([primary, rl], 1)


def ranked_pairs(model: nnx.Module, tokenizer: Any, items: Sequence[EvalItem], score: str, k: int = 4,
                 max_new_tokens: int = 64, temperature: float = 0.8, top_k: int = 40, batch_size: int = 8,
                 seed: int = 0) -> tuple[list[dict], dict]:
    """(pair rows, report): k sampled outputs per item, the best against the worst by `score`."""
    if k < 2:
        raise ValueError(f"k={k}: ranking needs at least two samples per prompt")
    if score not in SCORES:
        raise ValueError(f"unknown score {score!r}; choose from {', '.join(SCORES)}")
    prompts = encode_items(tokenizer, items)
    pad = padding_id(tokenizer)
    stops = stop_token_ids(tokenizer, model.config.eos_ids)
    width = max(map(len, prompts))
    outputs: list[list[str]] = [[] for _ in items]
    for j in range(k):
        for b in tqdm(range(0, len(prompts), batch_size), desc=f"sample {j + 1}/{k}", unit="batch",
                      file=sys.stderr, leave=False):
            sampling = Sampling(max_new_tokens, temperature, top_k, stop_token_ids=stops,
                                seed=seed * 1_000_003 + j * 10_007 + b)
            new = generate(model, prompts[b:b + batch_size], sampling, pad, multiple=width)
            for i, text in enumerate(tokenizer.batch_decode(new, skip_special_tokens=True)):
                outputs[b + i].append(text.strip())
    pairs, same, best_scores, worst_scores = [], 0, [], []
    for item, outs in zip(items, outputs):
        s = score_outputs(score, item, outs)
        order = sorted(range(len(outs)), key=lambda i: (s[i, 0], s[i, 1]))
        best, worst = order[-1], order[0]
        if tuple(s[best]) == tuple(s[worst]) or outs[best] == outs[worst]:
            same += 1
            continue
        prompt = item.prompt if item.prompt is not None else item.messages
        pairs.append({"prompt": prompt, "chosen": outs[best], "rejected": outs[worst], "source": "ranked",
                      "metric": score, "score_chosen": float(s[best, 0]), "score_rejected": float(s[worst, 0]),
                      "samples": len(outs)})
        best_scores.append(s[best, 0])
        worst_scores.append(s[worst, 0])
    report = {"prompts": len(items), "pairs": len(pairs), "no_difference": same, "k": k, "score": score,
              "temperature": temperature, "top_k": top_k,
              "mean_score_chosen": float(np.mean(best_scores)) if pairs else None,
              "mean_score_rejected": float(np.mean(worst_scores)) if pairs else None}
    return pairs, report
