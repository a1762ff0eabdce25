"""The demo task's scores (experiments/demo): exact match of the whole route `QUEUE | PLAN`, of each field, and
of the test rows phrased like the training templates and unlike them."""

from __future__ import annotations

import sys
from typing import Any

from flax import nnx
from tqdm import tqdm

from ftjax.models.generate import Sampling, generate
from ftjax.models.tokenizer import encode_prompt, stop_token_ids


def route_scores(model: nnx.Module, tokenizer: Any, rows: list[dict], batch_size: int = 16) -> tuple[dict, list[str]]:
    """Greedy completions of the test prompts; exact match of the whole route and of each field."""
    sampling = Sampling(max_new_tokens=16, stop_token_ids=stop_token_ids(tokenizer, model.config.eos_ids))
    prompts = [encode_prompt(tokenizer, r["prompt"]) for r in rows]
    out: list[str] = []
    for i in tqdm(range(0, len(prompts), batch_size), desc="generate", unit="batch", file=sys.stderr):
        out += tokenizer.batch_decode(generate(model, prompts[i:i + batch_size], sampling), skip_special_tokens=True)
    preds = [p.strip().split("\n")[0] for p in out]
    refs = [r["completion"].strip() for r in rows]
    field = lambda s, i: s.split("|")[i].strip() if s.count("|") == 1 else None
    n = len(rows)
    scores = {"exact_match": sum(p == r for p, r in zip(preds, refs)) / n,
              "queue_accuracy": sum(field(p, 0) == field(r, 0) for p, r in zip(preds, refs)) / n,
              "plan_accuracy": sum(field(p, 1) == field(r, 1) for p, r in zip(preds, refs)) / n}
    for kind in ("seen", "unseen"):  # template phrasings seen in training, and those held out
        hits = [p == r for p, r, row in zip(preds, refs, rows) if row.get("phrasing") == kind]
        if hits:
            scores[f"exact_match_{kind}_phrasing"] = sum(hits) / len(hits)
    return scores, preds
