"""ftjax data curate|split|stats --input=SPEC [flags]

SPEC is a .jsonl/.json/.csv/.parquet path, hf:NAME[:config][@split] or tfds:NAME@split; --columns maps our
field names to the source's (prompt=mr,completion=ref). Formats: prompt_completion, chat, classification,
data_to_text (auto-detected from the fields by default).

  curate  --output=OUT.jsonl [--report=R.json]   exact + near-duplicate removal, quality filters, PII masking
  split   --output_dir=DIR                       train/validation/test JSONL, stratified, with a leakage check
  split   --check=A.jsonl,B.jsonl[,...]          only the leakage check, between existing split files
  stats   --tokenizer=MODEL [--max_length=N]     token-length percentiles, labels, tokens per epoch
"""

from __future__ import annotations

import json
from pathlib import Path

from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_string("input", None, "rows: a .jsonl/.json/.csv/.parquet path, hf:NAME[:config][@split], tfds:NAME@split")
flags.DEFINE_string("columns", "", "field mapping ours=theirs,... (e.g. text=utterance,label=intent)")
flags.DEFINE_enum("format", "auto", ["auto", "prompt_completion", "chat", "classification", "data_to_text",
                                     "regression"], "example format (auto: from each row's fields)")
flags.DEFINE_string("output", None, "curate: the kept rows (JSONL); stats: write the report JSON (+ .md) here")
flags.DEFINE_string("report", None, "report JSON path; a Markdown page is written beside it (.md)")
flags.DEFINE_integer("seed", 0, "split: shuffling seed")
flags.DEFINE_float("near_threshold", 0.8, "Jaccard similarity of character n-grams at which rows are near "
                   "duplicates (0 = exact duplicates only)")
flags.DEFINE_integer("ngram", 5, "character n-gram size for near-duplicate detection")
flags.DEFINE_bool("scrub_pii", False, "curate: mask emails, phone and card numbers in the output")
flags.DEFINE_integer("min_target_chars", 1, "curate: drop rows whose target is shorter")
flags.DEFINE_integer("min_input_chars", 1, "curate: drop rows whose input is shorter")
flags.DEFINE_integer("max_chars", 0, "curate: drop rows whose input + target is longer (0 = no limit)")
flags.DEFINE_integer("max_char_run", 20, "curate: drop rows with a character repeated this often in a row (0 = off)")
flags.DEFINE_float("min_letter_ratio", 0.5, "curate: drop rows with fewer letters among non-space characters")
flags.DEFINE_string("fractions", "0.8,0.1,0.1", "split: train,validation[,test] fractions")
flags.DEFINE_string("output_dir", None, "split: folder for train/validation/test.jsonl and split_report.json")
flags.DEFINE_enum("stratify", "auto", ["auto", "yes", "no"], "split: by label (auto: when rows have labels)")
flags.DEFINE_bool("fail_on_leakage", False, "split: exit non-zero (writing no splits) if inputs overlap splits")
flags.DEFINE_list("check", [], "split: only check leakage between these existing split files")
flags.DEFINE_string("tokenizer", None, "stats: model folder, hub id or .gguf whose tokenizer counts tokens")
flags.DEFINE_integer("max_length", 512, "stats: training sequence length")
flags.DEFINE_string("labels", None, "stats: JSON list of label names (e.g. banking77/categories.json)")

SUBCOMMANDS = ("curate", "split", "stats")


def main(argv: list[str]) -> None:
    if len(argv) != 2 or argv[1] not in SUBCOMMANDS:
        got = " ".join(argv[1:]) or "nothing"
        raise ValueError(f"usage: ftjax data {{{'|'.join(SUBCOMMANDS)}}} [flags] (got: {got})")
    {"curate": _curate, "split": _split, "stats": _stats}[argv[1]]()


def _rows(spec: str | None) -> list[dict]:
    from ftjax.data.sources import load_rows, parse_columns

    if not spec:
        raise ValueError("--input is required")
    rows = load_rows(spec, parse_columns(FLAGS.columns) if FLAGS.columns else None)
    if not rows:
        raise ValueError(f"{spec}: no rows")
    return rows


def _curate() -> None:
    from ftjax.data.curate import CurateOptions, curate
    from ftjax.data.quality import Filters
    from ftjax.data.report import curate_markdown, write_report
    from ftjax.data.sources import strip_trace
    from ftjax.io import write_jsonl

    if not FLAGS.output:
        raise ValueError("--output=OUT.jsonl is required")
    filters = Filters(FLAGS.min_target_chars, FLAGS.min_input_chars, FLAGS.max_chars, FLAGS.max_char_run,
                      FLAGS.min_letter_ratio)
    opts = CurateOptions(FLAGS.format, FLAGS.near_threshold, FLAGS.ngram, scrub_pii=FLAGS.scrub_pii,
                         filters=filters)
    kept, report = curate(_rows(FLAGS.input), opts)
    report = {"input": FLAGS.input, "output": FLAGS.output, **report}
    write_jsonl(FLAGS.output, (strip_trace(r) for r in kept))
    out = FLAGS.report or str(Path(FLAGS.output).with_suffix(".report.json"))
    paths = write_report(out, report, curate_markdown(report, FLAGS.input))
    gone = ", ".join(f"{k} {v}" for k, v in report["removed"].items() if v) or "nothing"
    print(f"kept {report['rows_out']} of {report['rows_in']} rows -> {FLAGS.output}; removed: {gone}; "
          f"PII rows: {report['pii']['rows']}; report: {paths[0]}, {paths[1]}")


def _split() -> None:
    from ftjax.data.formats import label_counts
    from ftjax.data.report import split_markdown, write_report
    from ftjax.data.sources import strip_trace
    from ftjax.data.split import labelled, leakage, parse_fractions, split_rows
    from ftjax.io import write_jsonl

    if FLAGS.check:
        splits = {Path(p).stem: _rows(p) for p in FLAGS.check}
        meta = {"input": ", ".join(FLAGS.check), "seed": None, "stratified": None}
    else:
        if not FLAGS.output_dir:
            raise ValueError("--output_dir is required (or --check=A.jsonl,B.jsonl to check existing splits)")
        rows = _rows(FLAGS.input)
        stratify = labelled(rows, FLAGS.format) if FLAGS.stratify == "auto" else FLAGS.stratify == "yes"
        splits = split_rows(rows, parse_fractions(FLAGS.fractions), FLAGS.seed, FLAGS.format, stratify)
        meta = {"input": FLAGS.input, "seed": FLAGS.seed, "stratified": stratify}
    leaks = leakage(splits, FLAGS.format, FLAGS.near_threshold, FLAGS.ngram)
    report = {**meta, "sizes": {k: len(v) for k, v in splits.items()}, "leakage": leaks,
              "labels": {k: label_counts(v, FLAGS.format) for k, v in splits.items()}}
    base = Path(FLAGS.output_dir or ".")
    paths = write_report(FLAGS.report or base / "split_report.json", report, split_markdown(report))
    leaked = {pair: (v["exact"], v["near"]) for pair, v in leaks.items() if v["exact"] or v["near"]}
    summary = "; ".join(f"{p} {e} same-input, {n} near-duplicate rows" for p, (e, n) in leaked.items())
    if leaked and FLAGS.fail_on_leakage:
        raise ValueError(f"leakage between splits: {summary} (see {paths[1]})"
                         + ("" if FLAGS.check else "; no splits written"))
    if not FLAGS.check:
        for name, rows in splits.items():
            write_jsonl(base / f"{name}.jsonl", (strip_trace(r) for r in rows))
    sizes = ", ".join(f"{k} {len(v)}" for k, v in splits.items())
    print(f"{sizes}; leakage: {summary or 'none'}; report: {paths[0]}, {paths[1]}")


def _stats() -> None:
    from ftjax.data.report import stats_markdown, write_report
    from ftjax.data.stats import token_stats
    from ftjax.models.tokenizer import load_tokenizer

    if not FLAGS.tokenizer:
        raise ValueError("--tokenizer=MODEL (a model folder, hub id or .gguf) is required")
    label_set = None
    if FLAGS.labels:
        label_set = json.loads(Path(FLAGS.labels).read_text(encoding="utf-8"))
        if not isinstance(label_set, list) or not all(isinstance(x, str) for x in label_set):
            raise ValueError(f"{FLAGS.labels}: expected a JSON list of label names")
    stats = token_stats(_rows(FLAGS.input), load_tokenizer(FLAGS.tokenizer), FLAGS.format, FLAGS.max_length,
                        label_set)
    stats = {"input": FLAGS.input, "tokenizer": FLAGS.tokenizer, **stats}
    page = stats_markdown(stats, FLAGS.input)
    if FLAGS.output:
        write_report(FLAGS.output, stats, page)
    print("\n".join(page))
