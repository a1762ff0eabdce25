"""The evaluation runner: batched KV-cache generation and teacher-forced scoring over a split, metrics with
bootstrap intervals, and the result files.

    report, predictions = evaluate_split(model, tokenizer, rows, config)   # config: data.* and eval.*
    write_results("runs/x/eval", "test", report, predictions)   # test.json, test_predictions.jsonl

`ftjax eval` and the trainer's validation hook (`validation_metrics`, when `eval.metrics` is set) run the
same code, so a `val_rouge_l` in metrics.jsonl is the `rouge_l` that `ftjax eval` reports on that split.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import ml_collections
import numpy as np
from flax import nnx
from tqdm import tqdm

from ftjax.data.config import label_set
from ftjax.data.encode import encode, target_token_ids
from ftjax.eval.config import check, check_decoding, eval_settings
from ftjax.eval.ensemble import Ensemble
from ftjax.eval.items import EvalItem, encode_items, eval_items
from ftjax.eval.scoring import label_nll, sequence_nll
from ftjax.io import write_json, write_jsonl
from ftjax.metrics.classification import OTHER, class_list
from ftjax.metrics.slots import fewest_slot_errors
from ftjax.metrics.suite import default_metrics, metric_report, parse_metrics, statistics
from ftjax.metrics.text import normalizer
from ftjax.models.beam import Beam, beam_candidates
from ftjax.models.generate import Sampling, generate
from ftjax.models.heads import RegressionHead, classify, head_name, head_type
from ftjax.models.tokenizer import padding_id, stop_token_ids

PER_EXAMPLE = ("exact_match", "token_f1", "rouge_1", "rouge_2", "rouge_l")  # mean metrics: a score per row


def generate_texts(model: nnx.Module, tokenizer: Any, prompts: Sequence[Sequence[int]], max_new_tokens: int,
                   batch_size: int, progress: bool = True, beam: Beam | None = None,
                   rerank: Callable[[int, list[str]], int] | None = None) -> tuple[list[str], int]:
    """Greedy (or, given `beam` with num_beams > 1, beam-search) completions in input order and batches of
    `batch_size`, decoded as `ftjax generate` decodes them (same order and batches give the same padded
    shapes, hence the same tokens); and the token count. With beam search, `rerank(i, texts)` picks prompt i's
    output from its n-best texts (best beam first) by index."""
    stops = stop_token_ids(tokenizer, model.config.eos_ids)
    if beam is not None and beam.num_beams > 1:
        beam = dataclasses.replace(beam, max_new_tokens=max_new_tokens, stop_token_ids=stops)
        decode = lambda batch, pad: beam_candidates(model, batch, beam, pad)
    else:
        sampling = Sampling(max_new_tokens, stop_token_ids=stops)
        decode = lambda batch, pad: [[(toks, 0.0)] for toks in generate(model, batch, sampling, pad)]
    pick = rerank or (lambda i, texts: 0)
    pad = padding_id(tokenizer)
    texts, tokens = [], 0
    for start in tqdm(range(0, len(prompts), batch_size), desc="generate", unit="batch", file=sys.stderr,
                      leave=False, disable=not progress or len(prompts) <= batch_size):
        for i, hypotheses in enumerate(decode(prompts[start:start + batch_size], pad), start):
            options = tokenizer.batch_decode([toks for toks, _ in hypotheses], skip_special_tokens=True)
            chosen = pick(i, options)
            texts.append(options[chosen])
            tokens += len(hypotheses[chosen][0])
    return texts, tokens


def classify_texts(model: nnx.Module | Ensemble, tokenizer: Any, prompts: Sequence[Sequence[int]],
                   max_length: int, batch_size: int, head: str = "classification") -> tuple[list[str], int]:
    """Task head `head`'s label (or a regression head's value) for each prompt (cut as training cuts it), and no
    generated tokens; an ensemble's label is the one with the highest mean probability over its members."""
    pad = padding_id(tokenizer)
    prompts = [p[: max_length - 1] for p in prompts]
    if isinstance(model, Ensemble):
        scores = model.outputs(prompts, batch_size, pad)
        regression, labels = model.regression, model.labels
    else:
        scores = classify(model, prompts, batch_size, pad, head)
        regression, labels = isinstance(model.heads[head], RegressionHead), model.heads[head].labels
    if regression:  # the one output is the value
        return [repr(float(v)) for v in scores[:, 0]], 0
    return [labels[i] for i in scores.argmax(-1)], 0


def likeliest_labels(model: nnx.Module, tokenizer: Any, prompts: Sequence[Sequence[int]], labels: Sequence[str],
                     batch_size: int, progress: bool = False) -> list[str]:
    """For each prompt, the label whose tokens (then EOS, as training encodes a label) the model finds likeliest
    after it: every label teacher-forced, the summed log-probability compared (rank classification)."""
    targets = [target_token_ids(tokenizer, label) for label in labels]
    picks = []
    for start in tqdm(range(0, len(prompts), batch_size), desc="rank labels", unit="batch", file=sys.stderr,
                      leave=False, disable=not progress or len(prompts) <= batch_size):
        nll = label_nll(model, prompts[start:start + batch_size], targets, padding_id(tokenizer))
        picks += [labels[i] for i in nll.argmin(1)]
    return picks


def labels_only(model: nnx.Module, tokenizer: Any, prompts: Sequence[Sequence[int]], texts: Sequence[str],
                labels: Sequence[str], normalize: Callable[[str], str], batch_size: int) -> tuple[list[str], list[int]]:
    """`texts` with each generated text that matches no label (after `normalize`, as the metrics match them)
    replaced by its prompt's likeliest label; and the replaced positions."""
    known = {normalize(label) for label in labels}
    replaced = [i for i, text in enumerate(texts) if normalize(text) not in known]
    out = list(texts)
    for i, label in zip(replaced, likeliest_labels(model, tokenizer, [prompts[i] for i in replaced], labels,
                                                   batch_size)):
        out[i] = label
    return out, replaced


def _score_items(model: nnx.Module, tokenizer: Any, items: Sequence[EvalItem], config: ml_collections.ConfigDict,
                 batch_size: int, progress: bool) -> tuple[np.ndarray, np.ndarray]:
    """Teacher-forced NLL and target tokens per item, over every (prompt, reference) row of the item."""
    labels, fmt = label_set(config.data), config.data.format
    examples = [encode(r, tokenizer, fmt, config.data.max_length, labels) for item in items for r in item.rows]
    pad = padding_id(tokenizer)
    nll, count = sequence_nll(model, examples, batch_size, pad, progress=progress)
    owner = np.repeat(np.arange(len(items)), [len(item.rows) for item in items])
    return np.bincount(owner, nll, len(items)), np.bincount(owner, count, len(items))


def evaluate_split(model: nnx.Module | Ensemble, tokenizer: Any, rows: Sequence[dict],
                   config: ml_collections.ConfigDict, *, shots: Sequence[EvalItem] = (),
                   metrics: str | Sequence[str] | None = None, n_resamples: int | None = None,
                   progress: bool = True) -> tuple[dict, list[dict]]:
    """(report, prediction rows) for `rows` of one split. `config` supplies data.format/labels/max_length and
    eval.*; `metrics` defaults to every metric of the task; `n_resamples` to eval.bootstrap (0: no intervals);
    `shots` (eval_set.pick_shots) are prepended to every prompt."""
    settings = eval_settings(config)
    t0 = time.perf_counter()
    labels = label_set(config.data)
    items, task = eval_items(rows, config.data.format, labels)
    head = head_type(config)
    check_decoding(settings, task, head, labels)
    picks: list[int] = []  # the n-best index each reranked output came from
    replaced: list[int] | None = None  # with eval.constrain=labels: the outputs that were no label
    names = default_metrics(task) if metrics is None else parse_metrics(metrics, task)
    prompts = encode_items(tokenizer, items, shots)
    if isinstance(model, Ensemble) and head not in ("classification", "regression"):
        raise ValueError("an ensemble scores classification or regression heads only")
    if head in ("classification", "regression"):  # the head predicts; nothing is generated or teacher-forced
        if task != head:
            field = "label" if head == "classification" else "value"
            raise ValueError(f"a {head}-head run evaluates {head} rows (text, {field}); got {task}")
        names = [n for n in names if n != "perplexity"]
        texts, new_tokens = classify_texts(model, tokenizer, prompts, config.data.max_length, settings.batch_size,
                                           head_name(config))
    else:
        beam = Beam(settings.num_beams, settings.max_new_tokens, settings.length_penalty,
                    settings.no_repeat_ngram_size)
        rerank = None
        if settings.rerank == "slots":
            def rerank(i: int, options: list[str]) -> int:  # a data-to-text item's prompt is its MR
                picks.append(fewest_slot_errors(items[i].prompt, options))
                return picks[-1]
        if settings.constrain == "rank":  # no generation: the likeliest label is the prediction
            texts, new_tokens = likeliest_labels(model, tokenizer, prompts, labels, settings.batch_size, progress), 0
        else:
            texts, new_tokens = generate_texts(model, tokenizer, prompts, settings.max_new_tokens,
                                               settings.batch_size, progress, beam, rerank)
        if settings.constrain == "labels":
            generated = texts
            texts, replaced = labels_only(model, tokenizer, prompts, texts, labels,
                                          normalizer(settings.normalize), settings.batch_size)
    t1 = time.perf_counter()
    predictions = []
    for i, (item, text) in enumerate(zip(items, texts)):
        row = {"id": i, **({"prompt": item.prompt} if item.messages is None else {"messages": item.messages}),
               "references": item.references, "prediction": text, "sources": item.sources}
        if replaced is not None and text != generated[i]:
            row["generated"] = generated[i]  # what the model wrote before it was replaced by a label
        predictions.append(row | ({"label": item.label} if item.label is not None else {}))
    if "perplexity" in names:
        nll, count = _score_items(model, tokenizer, items, config, settings.batch_size, progress)
        for row, s, k in zip(predictions, nll, count):
            row |= {"nll": float(s), "tokens": int(k)}
    t2 = time.perf_counter()
    classes = class_list([item.label for item in items], labels) if task == "classification" else None
    stats = statistics(predictions, names, settings.normalize, classes)
    for name in (n for n in PER_EXAMPLE if n in stats):
        for row, value in zip(predictions, stats[name].items[:, 0]):
            row.setdefault("scores", {})[name] = float(value)
    if "per_class" in stats:
        for row, (_, p) in zip(predictions, stats["per_class"].items):
            row["predicted_label"] = classes[p] if p < len(classes) else OTHER
    n_resamples = settings.bootstrap if n_resamples is None else n_resamples
    report = {"task": task, "items": len(items), "rows": len(rows)}
    report |= metric_report(stats, classes, n_resamples)
    report |= {"bootstrap": {"resamples": n_resamples, "confidence": 0.95, "method": "percentile"},
               "settings": {"max_new_tokens": settings.max_new_tokens, "batch_size": settings.batch_size,
                            "normalize": settings.normalize, "few_shot": len(shots),
                            "decoding": _decoding(settings, head, bool(picks), replaced is not None, len(labels or ())),
                            "max_length": config.data.max_length},
               **({"rerank": {"by": "slot errors", "outputs_not_the_best_beam": sum(i > 0 for i in picks)}}
                  if picks else {}),
               **({"constrain": {"to": "labels", "by": "label likelihood", "outputs_replaced": len(replaced)}}
                  if replaced is not None else {}),
               **({"ensemble": model.describe()} if isinstance(model, Ensemble) else {}),
               "timing": {"generate_s": t1 - t0, "score_s": t2 - t1, "metrics_s": time.perf_counter() - t2,
                          "generated_tokens": new_tokens, "tokens_per_s": new_tokens / max(t1 - t0, 1e-9)}}
    return report, predictions


def _decoding(settings: ml_collections.ConfigDict, head: str, reranked: bool, constrained: bool,
              n_labels: int) -> str:
    """How the predictions were made, in words, for the report."""
    if head != "lm":
        return f"{head} head"
    if settings.constrain == "rank":
        return f"rank classification: the likeliest of the {n_labels} labels"
    if settings.num_beams == 1:
        words = "greedy"
    else:
        words = (f"beam search (width {settings.num_beams}, length penalty {settings.length_penalty}, no-repeat "
                 f"n-gram {settings.no_repeat_ngram_size})" + (", reranked by slot errors" if reranked else ""))
    return words + ("; an output that is no label replaced by the likeliest label" if constrained else "")


def write_results(out_dir: str | Path, name: str, report: dict, predictions: Sequence[dict]) -> list[Path]:
    """`<name>.json`, `<name>_predictions.jsonl` (and `<name>_confusion.png` for classification), each atomic."""
    out_dir = Path(out_dir)
    paths = [write_jsonl(out_dir / f"{name}_predictions.jsonl", predictions),
             write_json(out_dir / f"{name}.json", report)]
    if "classification" in report:
        from ftjax.eval.plots import confusion_plot

        paths.append(confusion_plot(report["classification"], out_dir / f"{name}_confusion.png"))
    return paths


class ValidationMetrics:
    """The trainer's task-metrics hook: eval.metrics generated on the validation rows (no intervals), named
    val_<metric>; `check` validates the eval block before the run starts."""

    def check(self, config: ml_collections.ConfigDict) -> None:
        check(config.eval)

    def __call__(self, model: nnx.Module, tokenizer: Any, rows: Sequence[dict],
                 config: ml_collections.ConfigDict) -> dict[str, float]:
        report, _ = evaluate_split(model, tokenizer, rows, config, metrics=config.eval.metrics, n_resamples=0,
                                   progress=False)
        return {f"val_{k}": v["value"] for k, v in report["metrics"].items()}


validation_metrics = ValidationMetrics()
