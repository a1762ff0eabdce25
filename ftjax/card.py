"""The model card every export writes (README.md in the Hugging Face Hub's format, through huggingface_hub's
`ModelCard`): YAML metadata (base model, library, license, datasets, tags, evaluation results) and a body with
the evaluation figures and their intervals, the objective and whether it was met, how it was trained and on
what hardware, intended use and limits, and the bias audit when the run has one.

Everything comes from the run's own files (config.json, summary.json, eval/<split>.json, audit/*.md); what a run
does not have is said, never made up.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from ftjax.io import write_text

_LIBRARY = {"peft": "peft", "merged": "transformers", "adapter": "ftjax", "gguf": "gguf"}


def write_card(out_dir: str | os.PathLike, export_format: str, base_model: str, workdir: str | None = None,
               adapter: str | None = None, license: str = "other") -> Path:
    """Write OUT/README.md for an export of `workdir` (or of `adapter` on `base_model`)."""
    return write_text(Path(out_dir) / "README.md", model_card(export_format, base_model, workdir, adapter, license))


def model_card(export_format: str, base_model: str, workdir: str | None = None, adapter: str | None = None,
               license: str = "other") -> str:
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    run = _run_files(workdir) if workdir else {}
    config, summary, evals = run.get("config", {}), run.get("summary", {}), run.get("evals", {})
    method = config.get("peft", {}).get("method", "adapter" if adapter else "")
    head = config.get("head", {}).get("type", "lm")
    task_type = "text-classification" if head == "classification" else "text-generation"
    results = [EvalResult(task_type=task_type, dataset_type="csv", dataset_name=str(report.get("data", split)),
                          dataset_split=split, metric_type=name, metric_value=round(float(m["value"]), 4))
               for split, report in evals.items() for name, m in report.get("metrics", {}).items()]
    train = config.get("data", {}).get("train")
    hub_data = str(train)[3:].split(":")[0] if str(train or "").startswith("hf:") else None  # hf:NAME[:split]
    data = ModelCardData(base_model=base_model if _hub_id(base_model) else None, library_name=_LIBRARY[
        export_format], license=license, datasets=[hub_data] if hub_data else None,
        tags=["ftjax", *([method] if method else [])], pipeline_tag=task_type,
        model_name=Path(workdir).name if workdir else None, eval_results=results or None)
    title = Path(workdir).name if workdir else f"{Path(adapter).name if adapter else 'model'}"
    body = [f"# {title}", "",
            f"Fine-tuned from `{base_model}` with ftjax ({method or 'base model'}), exported as `{export_format}`."]
    body += _evaluation(evals) + _objective(summary, evals) + _training(config, summary, adapter) + _use(config)
    body += _audit(run.get("audits", {}))
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(body) + "\n"))


def _hub_id(name: str) -> bool:
    """Whether `name` reads as a Hub repository id (ORG/NAME) rather than a local folder or file."""
    return (re.fullmatch(r"[\w-][\w.-]*/[\w.-]+", name) is not None and not Path(name).exists()
            and not name.endswith(".gguf"))


def _run_files(workdir: str) -> dict[str, Any]:
    root = Path(workdir)
    read = lambda p: json.loads(p.read_text()) if p.is_file() else {}
    evals = {p.stem: read(p) for p in sorted((root / "eval").glob("*.json")) if p.stem in ("test", "validation",
                                                                                        "train")}
    audits = {p.name: p.read_text() for p in sorted((root / "audit").glob("*.md"))}
    return {"config": read(root / "config.json"), "summary": read(root / "summary.json"), "evals": evals,
            "audits": audits}


def _evaluation(evals: dict) -> list[str]:
    lines = ["", "## Evaluation", ""]
    if not evals:
        return lines + ["Not evaluated: run `ftjax eval --workdir=RUN` on a held-out test set before using it."]
    for split, report in evals.items():
        rows = report.get("rows", "?")
        lines += [f"`{split}` split, {report.get('data', '')} ({rows} rows; 95% bootstrap intervals):", "",
                  "| metric | value | interval |", "|---|---:|---|"]
        for name, m in report.get("metrics", {}).items():
            ci = f"[{m['low']:.4f}, {m['high']:.4f}]" if "low" in m else ""
            lines.append(f"| {name} | {m['value']:.4f} | {ci} |")
        lines.append("")
    return lines


def _objective(summary: dict, evals: dict) -> list[str]:
    """The objective as judged on the test split when it was evaluated there, else on validation by training."""
    from ftjax.objective import describe

    judged = [r["objective"] for r in (evals.get("test", {}), summary) if r.get("objective")]
    if not judged:
        return ["", "## Objective", "", "No objective was set for this run."]
    return ["", "## Objective", "", describe(judged[0]) + "."]


def _training(config: dict, summary: dict, adapter: str | None) -> list[str]:
    if not config:
        return ["", "## Training", "", f"Adapter `{adapter}`; no training run was given, so no training record."]
    peft, train, model = config.get("peft", {}), config.get("train", {}), config.get("model", {})
    lines = ["", "## Training", "",
             f"- method: {peft.get('method')} (rank {peft.get('rank')}, alpha {peft.get('alpha')}, targets "
             f"{peft.get('targets') or 'default'})",
             f"- base dtype {model.get('dtype')}, quantised base {model.get('quantize', 'none')}",
             f"- steps {summary.get('steps', '?')} of {train.get('steps')}, batch {train.get('batch_size')}, "
             f"learning rate {train.get('learning_rate')} ({train.get('schedule')}), seed {train.get('seed')}",
             f"- data: {summary.get('train_examples', '?')} training and {summary.get('validation_examples', '?')} "
             f"validation examples from `{config.get('data', {}).get('train')}`"]
    if summary:
        lines.append(f"- {summary.get('seconds', 0) / 60:.1f} minutes, peak memory "
                     f"{summary.get('peak_memory_gb', 0):.1f} GiB ({summary.get('memory', '')})")
    hardware = summary.get("hardware")
    if hardware:
        lines.append(f"- hardware: {hardware}")
    return lines


def _use(config: dict) -> list[str]:
    data = config.get("data", {})
    return ["", "## Intended use and limits", "",
            f"Made for the task its training data describes (`{data.get('train', 'unknown')}`, format "
            f"{data.get('format', 'unknown')}); outside it, expect the base model's behaviour or worse. Scores above "
            "hold for data like the evaluation split only: check it on your own held-out data, and review its "
            "outputs by hand (`ftjax review`) before relying on them."]


def _audit(audits: dict) -> list[str]:
    if not audits:
        return ["", "## Bias audit", "", "No bias audit was run for this model."]
    lines = ["", "## Bias audit", ""]
    for name, text in audits.items():  # plots stay in the audit folder: their links would break on the Hub
        kept = [line for line in text.strip().splitlines() if not line.startswith("![")]
        lines += [f"From `audit/{name}`:", "", "\n".join(kept).strip(), ""]
    return lines
