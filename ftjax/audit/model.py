"""`ftjax audit model`: a fine-tuned run's task metric per group, fairness metrics, and counterfactual tests.

Two views per attribute of the lexicon:
- observed: test items grouped by the group terms their input mentions (items that mention one group);
- counterfactual (attributes with aligned term lists): every item that mentions one group is rendered in every
  group of the attribute by swapping the terms (ftjax.data.groups), so the versions differ only in those words.
  An output that changes is a counterfactual flip (a different label; for generation, a different text once the
  swap is undone, with its ROUGE-L similarity to the original output). Fairness metrics on this view compare
  the same items across groups, which the few natural mentions in a test set rarely allow.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import ml_collections
from flax import nnx

from ftjax.audit.fairness import group_fairness, mean_ci
from ftjax.data.formats import map_texts, resolve_format
from ftjax.data.groups import Lexicon
from ftjax.data.sources import where
from ftjax.eval.runner import evaluate_split
from ftjax.metrics.text import rouge


def _input_text(p: dict) -> str:
    if "prompt" in p:
        return p["prompt"]
    return "\n".join(str(m.get("content", "")) for m in p["messages"] if m.get("role") != "assistant")


def _outcome(p: dict, task: str) -> float:
    """A prediction row's task score: correct label, else its ROUGE-L (or exact match)."""
    if task == "classification":
        return float(p.get("predicted_label", p["prediction"]) == p["label"])
    scores = p.get("scores", {})
    return float(scores.get("rouge_l", scores.get("exact_match", 0.0)))


def _label(p: dict) -> str:
    return p.get("predicted_label", p["prediction"])


def audit_model(model: nnx.Module, tokenizer: Any, config: ml_collections.ConfigDict, rows: Sequence[dict],
                lexicon: Lexicon, *, n_resamples: int = 1000, positive: str | None = None, examples: int = 5,
                min_rows: int = 10, progress: bool = True) -> dict:
    """The audit of `model` on `rows` (one split, in the run's data format): a JSON-ready report. Fairness
    metrics compare only groups with at least `min_rows` items (a gap between two or three items says nothing)."""
    report, preds = evaluate_split(model, tokenizer, rows, config, n_resamples=n_resamples, progress=progress)
    task = report["task"]
    if task == "regression":
        raise ValueError("audit model compares labels or generated texts; a regression run has neither")
    by_source = {where(r): r for r in rows}
    texts = [_input_text(p) for p in preds]
    out = {"task": task, "items": len(preds), "metrics": report["metrics"], "lexicon": lexicon.source,
           "min_rows": min_rows, "attributes": {}}
    for name, attr in lexicon.attributes.items():
        groups = [lexicon.group_of(t, name) for t in texts]
        block = {"mentions": {g: groups.count(g) for g in attr.groups}, "several": sum("+" in g for g in groups)}
        single = [i for i, g in enumerate(groups) if g in attr.groups]
        block["observed"] = _view(preds, task, single, [groups[i] for i in single], None, positive, n_resamples,
                                  min_rows)
        if attr.counterfactual and single:
            block["counterfactual"] = _counterfactual(model, tokenizer, config, preds, by_source, task, lexicon,
                                                      name, single, groups, positive, n_resamples, examples, min_rows)
        out["attributes"][name] = block
    return out


def _view(preds: Sequence[dict], task: str, idx: Sequence[int], groups: Sequence[str],
          clusters: Sequence[int] | None, positive: str | None, n_resamples: int, min_rows: int) -> dict:
    """Per-group task metric (and, for classification with 2+ groups of `min_rows`+ items, the fairness
    metrics over those groups)."""
    view: dict = {"rows": len(idx), "groups": {}}
    for g in sorted(set(groups)):
        mine = [k for k, x in enumerate(groups) if x == g]
        score = mean_ci([_outcome(preds[idx[k]], task) for k in mine],
                        None if clusters is None else [clusters[k] for k in mine], n_resamples)
        view["groups"][g] = {"rows": len(mine), "accuracy" if task == "classification" else "rouge_l": score}
    big = {g for g, b in view["groups"].items() if b["rows"] >= min_rows}
    if task == "classification" and len(big) >= 2:
        keep = [k for k, g in enumerate(groups) if g in big]
        fair = group_fairness([preds[idx[k]]["label"] for k in keep], [_label(preds[idx[k]]) for k in keep],
                              [groups[k] for k in keep], positive=positive,
                              clusters=None if clusters is None else [clusters[k] for k in keep],
                              n_resamples=n_resamples)
        view["fairness"] = {k: fair[k] for k in ("summary", "worst_class", "four_fifths", "classes")}
        view["fairness"]["groups"] = sorted(big)
    elif task == "classification":
        view["fairness_skipped"] = f"fewer than two groups with {min_rows}+ items"
    return view


def _counterfactual(model, tokenizer, config, preds, by_source, task, lexicon, name, single, groups, positive,
                    n_resamples, examples, min_rows) -> dict:
    attr = lexicon.attribute(name)
    fmt = config.data.format
    versions = {(i, groups[i]): preds[i] for i in single}  # (item, group it is rendered in) -> prediction
    pairs, flips, clusters = {}, [], []
    for g, h in itertools.permutations(attr.groups, 2):
        items = [i for i in single if groups[i] == g]
        if not items:
            continue
        swap = lambda t, g=g, h=h: lexicon.swap(t, name, g, h)
        cf_rows = [map_texts(by_source[s], resolve_format(by_source[s], fmt), swap)
                   for i in items for s in preds[i]["sources"]]
        _, cf = evaluate_split(model, tokenizer, cf_rows, config, n_resamples=0, progress=False,
                               metrics=["accuracy"] if task == "classification" else ["rouge_l"])
        if len(cf) != len(items):  # a swap is injective, so items never merge; guard the pairing anyway
            raise RuntimeError(f"counterfactual {g}->{h}: {len(cf)} items for {len(items)} originals")
        changed, similarity, shown = [], [], []
        for i, p in zip(items, cf):
            versions[(i, h)] = p
            before = _label(preds[i]) if task == "classification" else preds[i]["prediction"]
            after = _label(p) if task == "classification" else lexicon.swap(p["prediction"], name, g, h)
            changed.append(float(before != after))
            clusters.append(i)
            if task != "classification":
                similarity.append(float(rouge([after], [[before]])["rouge_l"].items[0, 0]))
            if before != after and len(shown) < examples:
                shown.append({"source": preds[i]["sources"][0], "original": _input_text(preds[i]),
                              "counterfactual": _input_text(p), "output": before, "counterfactual_output": after})
        pair = {"items": len(items), "flips": int(sum(changed)), "flip_rate": mean_ci(changed, None, n_resamples),
                "examples": shown}
        if similarity:
            pair["similarity"] = mean_ci(similarity, None, n_resamples)
        pairs[f"{g}->{h}"] = pair
        flips += changed
    keys = sorted(versions)
    block = {"pairs": pairs, "flip_rate": mean_ci(flips, clusters, n_resamples),
             "items": len(single), "versions": len(keys)}
    vpreds = [versions[k] | {"label": preds[k[0]].get("label")} for k in keys]
    block |= _view(vpreds, task, range(len(keys)), [g for _, g in keys], [i for i, _ in keys], positive,
                   n_resamples, min_rows)
    return block


def flip_summary(report: dict) -> list[tuple[str, float]]:
    """(attribute, counterfactual flip rate in percent) for the attributes that have a counterfactual view."""
    return [(name, block["counterfactual"]["flip_rate"]["value"]) for name, block in report["attributes"].items()
            if "counterfactual" in block]
