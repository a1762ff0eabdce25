"""The base model on the same prompts as the fine-tuned one, and the gain with a paired significance test."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import ml_collections
from flax import nnx

from ftjax.eval.compare import paired_metrics
from ftjax.eval.items import EvalItem
from ftjax.eval.runner import evaluate_split, write_results


@contextlib.contextmanager
def base_model(model: nnx.Module, path: str, dtype: Any) -> Iterator[nnx.Module]:
    """The model before fine-tuning: its adapters switched off, or the base reloaded from `path` when training
    changed base weights (full fine-tuning, or an adapter with peft.unfreeze)."""
    from ftjax.models import from_pretrained
    from ftjax.peft.state import use_adapter

    specs = getattr(model, "adapter_specs", ())
    if specs and not any(s.unfrozen for s in specs):
        with use_adapter(model, None):
            yield model
    else:
        yield from_pretrained(path, dtype=dtype)


def add_baseline(report: dict, predictions: Sequence[dict], model: nnx.Module, tokenizer: Any,
                 rows: Sequence[dict], config: ml_collections.ConfigDict, out_dir: str | Path, split: str,
                 meta: dict, shots: Sequence[EvalItem] = ()) -> dict:
    """Evaluate the base model on `rows` (with `shots` before each prompt), write `<split>_baseline.json` (with
    `meta`) into `out_dir`, and return `report` (the fine-tuned model's) with its `baseline` block and the
    `gain` per metric: a paired bootstrap interval and approximate-randomization p-value, or the plain difference
    when eval.bootstrap is 0."""
    with base_model(model, config.model.path, jnp.dtype(config.model.dtype)) as base:
        base_report, base_predictions = evaluate_split(base, tokenizer, rows, config, shots=shots)
    base_report |= meta | {"baseline": True, "few_shot_sources": [s for shot in shots for s in shot.sources]}
    write_results(out_dir, f"{split}_baseline", base_report, base_predictions)
    n = config.eval.bootstrap
    names = list(report["metrics"])
    classes = report.get("classification", {}).get("labels")
    report["baseline"] = {"result": f"{split}_baseline.json", "few_shot": len(shots),
                          "metrics": base_report["metrics"]}
    report["gain"] = (paired_metrics(base_predictions, predictions, names, config.eval.normalize, classes, n) if n
                      else {k: {"a": base_report["metrics"][k]["value"],
                                "delta": report["metrics"][k]["value"] - base_report["metrics"][k]["value"]}
                            for k in names})
    return report
