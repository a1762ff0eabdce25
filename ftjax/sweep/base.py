"""Choosing the base model (`ftjax select-base`): every candidate scored on the task's validation split,
zero- or few-shot (K training examples before each prompt) and optionally after a short LoRA probe run, then
ranked by quality with its costs beside it: parameters, generation tokens/s, peak memory, seconds.

Each candidate is measured in its own process (`score_candidate`), so that its peak memory is its own and a
candidate that fails to load is reported rather than ending the comparison.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import ml_collections

from ftjax.config import set_dotted
from ftjax.io import write_json, write_text


def score_candidate(config: ml_collections.ConfigDict, config_args: list[str], candidate: str, metric: str,
                    split: str, few_shot: int, probe_steps: int, out: Path) -> dict[str, Any]:
    """One candidate: its `metric` (with the 95% interval) on `split`, zero/few-shot, or after `probe_steps`
    of training with the config's method when probe_steps > 0 (then on the probe run's best checkpoint).
    `config_args`: the --config=FILE and --config.KEY=VALUE flags the config came from (for the probe run)."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from ftjax.data.config import label_set, rows_of
    from ftjax.eval.items import pick_shots
    from ftjax.eval.runner import evaluate_split
    from ftjax.memory import peak_memory
    from ftjax.models import from_pretrained
    from ftjax.models.tokenizer import load_tokenizer

    t0 = time.perf_counter()
    set_dotted(config, "model.path", candidate)
    rows = rows_of(config.data, split)
    if not rows:
        raise ValueError(f"the config has no {split} rows to score the candidates on")
    if probe_steps:
        from ftjax.train.restore import load_run

        probe = out / "probe"
        proc = subprocess.run([sys.executable, "-m", "ftjax", "train", *config_args, f"--workdir={probe}",
                               f"--config.model.path={candidate}", f"--config.train.steps={probe_steps}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if proc.returncode != 0:
            lines = [line for line in proc.stderr.splitlines() if line.strip()]
            raise ValueError(f"the probe run failed: {lines[-1] if lines else proc.returncode}")
        model, tokenizer, config, _ = load_run(probe)
    else:
        model = from_pretrained(candidate, dtype=getattr(jnp, config.model.dtype))
        tokenizer = load_tokenizer(candidate)
    shots = pick_shots(rows_of(config.data, "train"), few_shot, config.data.format, label_set(config.data)) \
        if few_shot else []
    report, _ = evaluate_split(model, tokenizer, rows, config, shots=shots)
    found = report["metrics"].get(metric)
    if found is None:
        raise ValueError(f"eval reports no {metric!r} for this task; choose from {', '.join(report['metrics'])}")
    memory, _ = peak_memory()
    params = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
    return {"candidate": candidate, "value": found["value"], "low": found.get("low"), "high": found.get("high"),
            "parameters": int(params), "tokens_per_s": report["timing"]["tokens_per_s"],
            "peak_memory_gb": memory / 2 ** 30, "seconds": time.perf_counter() - t0, "few_shot": few_shot,
            "probe_steps": probe_steps}


def rank(results: list[dict], direction: str) -> list[dict]:
    """Best first by quality; equal quality: fewer parameters first. Failed candidates last."""
    sign = -1 if direction == "maximize" else 1
    return sorted(results, key=lambda r: (r.get("value") is None,
                                          sign * r["value"] if r.get("value") is not None else 0,
                                          r.get("parameters") or math.inf))


def table(results: list[dict], metric: str) -> str:
    lines = [f"| rank | candidate | {metric} [95% CI] | parameters | tokens/s | peak memory GB | seconds |",
             "|---|---|---|---|---|---|---|"]
    for i, r in enumerate(results, 1):
        if r.get("value") is None:
            lines.append(f"| - | {r['candidate']} | failed: {r.get('error', '')} | | | | |")
            continue
        ci = f" [{r['low']:.1f}, {r['high']:.1f}]" if r.get("low") is not None else ""
        lines.append(f"| {i} | {r['candidate']} | {r['value']:.2f}{ci} | {r['parameters']:,} | "
                     f"{r['tokens_per_s']:.1f} | {r['peak_memory_gb']:.2f} | {r['seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def compare(candidates: list[str], child_args: list[str], out: Path, metric: str, direction: str) -> list[dict]:
    """Score each candidate in its own `ftjax select-base` process; write and return the ranking."""
    results = []
    for i, candidate in enumerate(candidates):
        folder = out / "candidates" / f"{i:02d}"
        proc = subprocess.run([sys.executable, "-m", "ftjax", "select-base", f"--candidates={candidate}",
                               f"--workdir={folder}", *child_args], capture_output=True, text=True)
        result_file = folder / "result.json"
        if proc.returncode == 0 and result_file.is_file():
            results.append(json.loads(result_file.read_text()))
        else:
            lines = [line for line in proc.stderr.splitlines() if line.strip()]
            error = lines[-1].removeprefix("ftjax select-base: error: ") if lines else "failed"
            results.append({"candidate": candidate, "value": None, "error": error})
        print(f"{candidate}: " + (f"{metric}={results[-1]['value']:.2f}" if results[-1]["value"] is not None
                                  else results[-1]["error"]), flush=True)
    ranked = rank(results, direction)
    write_json(out / "select_base.json", {"metric": metric, "direction": direction, "ranking": ranked})
    write_text(out / "select_base.md", table(ranked, metric))
    return ranked
