"""`ftjax augment` end to end: check the config, read the seeds, make rows (rules, then the model's), validate,
write the survivors, the removed rows and the report. Nothing is written to the output until every row is
validated; the work folder keeps what generation cost, so a rerun after a kill loses at most one batch.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import ml_collections
import numpy as np

from ftjax.augment import generate as gen
from ftjax.augment import rules
from ftjax.augment.validate import FIELDS, FILTERS, Checks, head_label_probability, tfidf_label_probability, validate
from ftjax.data.formats import map_texts
from ftjax.data.groups import Lexicon, load_lexicon
from ftjax.data.quality import Filters
from ftjax.io import check_writable, write_json, write_jsonl, write_text

METHODS = ("paraphrase", "new", "rules", "counterfactual")


def _split(text: str) -> list[str]:
    return [s.strip() for s in str(text).split(",") if s.strip()]


def check(c: ml_collections.ConfigDict) -> None:
    """One-line errors for a bad config, before anything is read or loaded."""
    if c.data.format not in FIELDS:
        raise ValueError(f"data.format={c.data.format!r}: augment takes {' or '.join(FIELDS)} rows")
    methods = _split(c.augment.methods)
    if not methods or set(methods) - set(METHODS):
        raise ValueError(f"augment.methods={c.augment.methods!r}: choose from {', '.join(METHODS)}")
    filters = _split(c.validate.filters)
    if set(filters) - set(FILTERS):
        raise ValueError(f"validate.filters: unknown {sorted(set(filters) - set(FILTERS))}; have: {', '.join(FILTERS)}")
    if c.validate.label not in ("tfidf", "model", "none"):
        raise ValueError(f"validate.label={c.validate.label!r}: choose tfidf, model or none")
    if c.validate.label == "model" and not c.validate.label_workdir:
        raise ValueError("validate.label=model needs validate.label_workdir=RUN (a run with a classification head)")
    for block, keys in (("augment", ("per_seed", "new", "shots")), ("rules", ("per_seed",)),
                        ("sampling", ("max_new_tokens", "batch_size"))):
        for key in keys:
            value = c[block][key]
            if not isinstance(value, int) or value < (1 if key in ("max_new_tokens", "batch_size", "shots") else 0):
                raise ValueError(f"{block}.{key}={value!r}: must be a whole number >= "
                                 f"{1 if key in ('max_new_tokens', 'batch_size', 'shots') else 0}")
    if not 0 < c.validate.near_threshold <= 1:
        raise ValueError(f"validate.near_threshold={c.validate.near_threshold}: a similarity in (0, 1]")
    if "rules" in methods:
        rules.noise("check", _split(c.rules.noise), c.rules.rate, np.random.default_rng(0))
    if "counterfactual" in methods:
        _counterfactual_attributes(c)
    if {"paraphrase", "new"} & set(methods):
        gen.check_templates(dict(c.augment.templates))
        if not c.model.path and not c.model.workdir:
            raise ValueError("model rows need model.path (a model) or model.workdir (a fine-tuned run)")


def read_seeds(c: ml_collections.ConfigDict, spec: str) -> list[dict]:
    from ftjax.data.formats import check_row
    from ftjax.data.sources import load_rows, parse_columns

    seeds = load_rows(spec, parse_columns(c.data.columns))
    if not seeds:
        raise ValueError(f"{spec}: no seed rows")
    for row in seeds:
        check_row(row, c.data.format)  # file:line of a malformed row
    return seeds


def rule_rows(seeds: list[dict], c: ml_collections.ConfigDict) -> list[dict]:
    """rules.per_seed rows per seed: the listed noise, then one swap from the synonym/entity lists."""
    text_field = FIELDS[c.data.format][0]
    kinds = _split(c.rules.noise)
    table = rules.load_swaps(c.rules.synonyms, c.rules.entities)
    lists = hashlib.sha256(json.dumps(table, sort_keys=True).encode()).hexdigest()[:8]
    pid = f"rules:{'+'.join(kinds) or 'none'}@{c.rules.rate}" + (f"+swap:{lists}" if table else "")
    out = []
    for i, row in enumerate(seeds):
        for j in range(c.rules.per_seed):
            seed = c.sampling.seed * 1_000_003 + i * 101 + j
            rng = np.random.default_rng(seed)
            text = rules.swap(row[text_field], table, rng)
            text = rules.noise(text, kinds, c.rules.rate, rng) if kinds else text
            kept = {k: v for k, v in row.items() if k in FIELDS[c.data.format]}
            out.append({**kept, text_field: text, "source": "synthetic", "method": "rules", "generator": "rules",
                        "prompt_id": pid, "seed": seed, "origin": gen.origin(row)})
    return out


def _counterfactual_attributes(c: ml_collections.ConfigDict) -> tuple[Lexicon, list[str]]:
    lexicon = load_lexicon(c.rules.groups)
    names = _split(c.rules.attributes) or [n for n, a in lexicon.attributes.items() if a.counterfactual]
    for name in names:
        if not lexicon.attribute(name).counterfactual:
            raise ValueError(f"rules.attributes: {name!r} has no aligned term lists (counterfactual: false) "
                             f"in {lexicon.source}")
    return lexicon, names


def counterfactual_rows(seeds: list[dict], c: ml_collections.ConfigDict) -> list[dict]:
    """Counterfactual data augmentation: every seed whose input mentions one group of an attribute
    (rules.attributes of the rules.groups lexicon), once in each other group, its group terms swapped in every
    text field (ftjax.data.groups)."""
    lexicon, names = _counterfactual_attributes(c)
    fmt, fields = c.data.format, FIELDS[c.data.format]
    out = []
    for row in seeds:
        kept = {k: v for k, v in row.items() if k in fields}
        for name in names:
            g = lexicon.group_of(row[fields[0]], name)
            for h in lexicon.attribute(name).groups if "+" not in g and g else ():
                if h != g:
                    swapped = map_texts(kept, fmt, lambda t, g=g, h=h: lexicon.swap(t, name, g, h))
                    out.append({**swapped, "source": "synthetic", "method": "counterfactual",
                                "generator": "counterfactual", "prompt_id": f"counterfactual:{name}:{g}->{h}",
                                "seed": 0, "origin": gen.origin(row)})
    return out


def load_generator(c: ml_collections.ConfigDict) -> gen.Generator:
    import jax.numpy as jnp

    if c.model.workdir:
        from ftjax.train.restore import load_run

        model, tokenizer, _, step = load_run(c.model.workdir)
        name = f"{c.model.workdir}@{step}"
    else:
        from ftjax.models import from_pretrained
        from ftjax.models.tokenizer import load_tokenizer

        tokenizer = load_tokenizer(c.model.path)
        model = from_pretrained(c.model.path, dtype=getattr(jnp, c.model.dtype))
        name = str(c.model.path)
    s = c.sampling
    return gen.Generator(model, tokenizer, name, c.model.chat, s.max_new_tokens, s.temperature, s.top_p, s.top_k,
                         s.one_line)


def _fingerprint(c: ml_collections.ConfigDict, spec: str) -> dict:
    from ftjax.io import file_sha256

    made = {k: c[k].to_dict() for k in ("model", "data", "augment", "sampling")}
    return {"config": made, "input": spec, "input_sha256": file_sha256(spec) if Path(spec).is_file() else None}


def model_rows(seeds: list[dict], c: ml_collections.ConfigDict, work: Path) -> tuple[list[dict], float]:
    """The model's rows (resuming from the work folder's candidates) and the generation seconds of all runs."""
    methods = _split(c.augment.methods)
    fmt, templates = c.data.format, dict(c.augment.templates)
    requests = gen.plan(seeds, fmt, templates, methods, c.augment.per_seed, c.augment.new, c.augment.shots,
                        c.sampling.seed)
    candidates = gen.Candidates(work / "candidates.jsonl")
    timing_path = work / "timing.json"
    seconds = json.loads(timing_path.read_text())["seconds"] if timing_path.exists() else 0.0
    generator = None

    def run(reqs: list[gen.Request], stage: int) -> list[dict]:
        nonlocal generator, seconds
        first = stage * 1_000_000
        missing = any(first + b // c.sampling.batch_size not in candidates.done
                      for b in range(0, len(reqs), c.sampling.batch_size))
        if missing and generator is None:
            generator = load_generator(c)  # only when something is left to generate
        start = time.perf_counter()
        rows = gen.run_requests(generator, reqs, fmt, c.sampling.batch_size, c.sampling.seed, candidates, stage)
        seconds += time.perf_counter() - start
        write_json(timing_path, {"seconds": seconds})
        return rows

    rows = run(requests, 0)
    if fmt == "prompt_completion" and "new" in methods:  # new prompts still need their completions
        fresh = [r for r in rows if r["method"] == "new"]
        rows = [r for r in rows if r["method"] != "new"] + run(gen.target_requests(fresh, templates), 1)
    return [{k: v for k, v in r.items() if k != "_batch"} for r in rows], seconds


def label_probability(c: ml_collections.ConfigDict, seeds: list[dict]):
    if c.data.format != "classification" or c.validate.label == "none":
        return None
    if c.validate.label == "tfidf":
        return tfidf_label_probability(seeds)
    from ftjax.monitor.model_view import ModelView
    from ftjax.train.restore import load_run

    model, tokenizer, config, _ = load_run(c.validate.label_workdir)
    return head_label_probability(ModelView(model, tokenizer, config))


def augment(c: ml_collections.ConfigDict, spec: str, out: Path) -> dict:
    """Make, validate and write the synthetic rows; returns the report."""
    from ftjax.data.sources import load_rows, parse_columns, strip_trace

    check(c)
    check_writable(out)
    seeds = read_seeds(c, spec)
    test = [r for s in _split(c.data.test) for r in load_rows(s, parse_columns(c.data.columns))]
    work = Path(f"{out}.work")
    work.mkdir(parents=True, exist_ok=True)
    made = _fingerprint(c, spec)
    plan_path = work / "plan.json"
    if plan_path.exists() and json.loads(plan_path.read_text()) != made:
        raise ValueError(f"{work} holds rows generated with another config or input; use another --output, or "
                         "remove that folder to start over")
    write_json(plan_path, made)
    methods = _split(c.augment.methods)
    rows, seconds = model_rows(seeds, c, work) if {"paraphrase", "new"} & set(methods) else ([], 0.0)
    if "rules" in methods:
        rows += rule_rows(seeds, c)
    if "counterfactual" in methods:
        rows += counterfactual_rows(seeds, c)
    v = c.validate
    labels = tuple(sorted({str(r["label"]) for r in seeds})) if c.data.format == "classification" else ()
    checks = Checks(labels=labels, quality=Filters(max_char_run=v.max_char_run, min_letter_ratio=v.min_letter_ratio),
                    min_words=v.min_words, max_words=v.max_words, near_threshold=v.near_threshold,
                    label_threshold=v.label_threshold, enabled=tuple(_split(v.filters)))
    kept, removed, counts = validate(rows, c.data.format, checks, existing=seeds, test=test,
                                     label_probability=label_probability(c, seeds))
    generated = len([r for r in rows if r["method"] in ("paraphrase", "new")])
    report = {"seeds": len(seeds), "candidates": len(rows), "kept": len(kept), "removed": counts,
              "by_method": {m: sum(r["method"] == m for r in kept) for m in METHODS},
              "test_rows_checked": len(test), "generation_seconds": round(seconds, 1),
              "seconds_per_generated_row": round(seconds / generated, 3) if generated else None,
              "examples": {name: [{"row": _show(r, c.data.format), "why": r["why"]}
                                  for r in removed if r["removed_by"] == name][:5] for name in counts}}
    write_jsonl(work / "removed.jsonl", removed)
    write_json(work / "report.json", report)
    write_text(work / "report.md", summary(report) + "\n")
    write_jsonl(out, [strip_trace(r) for r in kept])
    return report


def _show(row: dict, fmt: str) -> str:
    text, target = (row.get(f, "") for f in FIELDS[fmt])
    return f"{text} -> {target}"


def summary(report: dict) -> str:
    lines = [f"seeds {report['seeds']}, candidates {report['candidates']}, kept {report['kept']} "
             f"({', '.join(f'{m} {n}' for m, n in report['by_method'].items())}); "
             f"generation {report['generation_seconds']} s",
             "| filter | removed | e.g. |", "|---|---:|---|"]
    for name, n in report["removed"].items():
        eg = report["examples"][name][0] if report["examples"][name] else None
        lines.append(f"| {name} | {n} | {(eg['row'] + ' (' + eg['why'] + ')') if eg else ''} |".replace("\n", " "))
    if not report["test_rows_checked"]:
        lines.append("no data.test given: test-set leakage was not checked")
    return "\n".join(lines)
