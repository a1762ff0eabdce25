"""ftjax review export --run=RUN [--run_b=RUN_B] --out=DIR [--rubric=...] [--sample=N]
   ftjax review import --key=DIR/key.json SHEET.csv [SHEET.csv ...] [--out=DIR]
   ftjax review pairs --key=DIR/key.json SHEET.csv [SHEET.csv ...] --output=PAIRS.jsonl [--by=preference|rubric]
   ftjax review data-export --input=ROWS.jsonl --out=DIR [--sample=N]
   ftjax review data-import --key=DIR/key.json SHEET.csv [SHEET.csv ...] --output=REVIEWED.jsonl

export writes DIR/sheet.csv, DIR/sheet.html (self-contained; its form downloads a filled CSV) and DIR/key.json
(keep it from reviewers: with --run_b the sheet is blinded and shuffled, and the key unblinds it). A RUN is a
workdir (its eval/<split>.json), an eval result .json, or a *_predictions.jsonl. import checks the completed
sheets and writes review_summary.json/.md: per-criterion means with 95% intervals, Krippendorff's alpha, and
A/B win rates with a sign test.

pairs turns a completed blinded A/B review into preference pairs for train.preference (DPO, IPO, ORPO,
SimPO): per item, the majority of reviewers' preferences (or rubric totals); ties, items below --min_agreement
and identical outputs are dropped and counted (ftjax/review/pairs.py states the rule).

data-export / data-import review data rows (ftjax augment's synthetic rows): reviewers mark each sampled row
keep, fix (fixed_input / fixed_output) or drop, and data-import writes the rows back with the decisions applied
(ftjax/review/data_sheet.py).
"""

from __future__ import annotations

from pathlib import Path

from absl import flags

from ftjax.review.rubric import DEFAULT_RUBRIC

FLAGS = flags.FLAGS
flags.DEFINE_string("run", None, "export: the run (or predictions file) to review")
flags.DEFINE_string("run_b", None, "export: a second run, for a blinded A/B comparison on the same prompts")
flags.DEFINE_string("split", "test", "export: the eval split of a workdir")
flags.DEFINE_string("rubric", DEFAULT_RUBRIC, "export: criteria as name:low-high, comma-separated")
flags.DEFINE_integer("sample", 0, "export: review this many items drawn at random (0 = all)")
flags.DEFINE_integer("seed", 0, "export: seed for sampling, order and blinding")
flags.DEFINE_string("key", None, "import: the key.json written by export")
flags.DEFINE_integer("bootstrap", 1000, "import: bootstrap resamples for the intervals")
flags.DEFINE_string("out", None, "export: output folder (required); import: summary folder (default: the key's)")
flags.DEFINE_string("input", None, "data-export: the JSONL rows to review")
flags.DEFINE_string("output", None, "data-import: the JSONL file to write, decisions applied; pairs: the pairs")
flags.DEFINE_enum("by", "preference", ["preference", "rubric"], "pairs: reviewers' preferences or rubric totals")
flags.DEFINE_float("min_agreement", 0.6, "pairs: share of an item's reviewers who must agree with its winner")
flags.DEFINE_float("margin", 0.5, "pairs --by=rubric: rubric totals closer than this are a tie")


def _predictions(spec: str) -> tuple[str, list[dict]]:
    from ftjax.eval.compare import load_result
    from ftjax.io import read_jsonl

    if spec.endswith(".jsonl"):
        return Path(spec).stem.removesuffix("_predictions"), [row for _, row in read_jsonl(spec)]
    run = load_result(spec, FLAGS.split)
    return run["name"], run["predictions"]


def main(argv: list[str]) -> None:
    action, *rest = argv[1:] or [""]
    if action == "export":
        if rest:
            raise ValueError(f"unexpected arguments: {' '.join(rest)}")
        if not FLAGS.run or not FLAGS.out:
            raise ValueError("export needs --run=RUN and --out=DIR")
        from ftjax.review.rubric import parse_rubric
        from ftjax.review.sheet import export_sheets

        rubric = parse_rubric(FLAGS.rubric)
        name_a, rows_a = _predictions(FLAGS.run)
        name_b, rows_b = _predictions(FLAGS.run_b) if FLAGS.run_b else (None, None)
        if name_a == name_b:
            name_a, name_b = f"A:{name_a}", f"B:{name_b}"
        key = export_sheets(rows_a, FLAGS.out, rubric, rows_b, (name_a, name_b or ""), FLAGS.sample, FLAGS.seed)
        print(f"wrote {FLAGS.out}/sheet.csv and sheet.html ({len(key['items'])} items"
              f"{', blinded A/B' if key['paired'] else ''}); keep {FLAGS.out}/key.json from reviewers")
    elif action == "import":
        if not FLAGS.key or not rest:
            raise ValueError("import needs --key=DIR/key.json and one or more completed SHEET.csv files")
        from ftjax.review.results import read_sheets, summarize, write_summary
        from ftjax.review.rubric import load_key

        key = load_key(FLAGS.key)
        summary = summarize(read_sheets(rest, key), key, FLAGS.bootstrap)
        paths = write_summary(summary, FLAGS.out or Path(FLAGS.key).parent)
        print(paths[1].read_text(), end="")
        print(f"wrote {', '.join(map(str, paths))}")
    elif action == "pairs":
        if not FLAGS.key or not rest or not FLAGS.output:
            raise ValueError("pairs needs --key=DIR/key.json, --output=PAIRS.jsonl and the completed SHEET.csv files")
        from ftjax.io import check_writable, write_jsonl
        from ftjax.review.pairs import read_exported_sheet, review_pairs
        from ftjax.review.results import read_sheets
        from ftjax.review.rubric import load_key

        check_writable(FLAGS.output)
        key = load_key(FLAGS.key)
        pairs, report = review_pairs(key, read_sheets(rest, key), read_exported_sheet(Path(FLAGS.key).parent),
                                     FLAGS.by, FLAGS.min_agreement, FLAGS.margin)
        write_jsonl(FLAGS.output, pairs)
        alpha = report["krippendorff_alpha"]
        print(f"{report['pairs']} pairs from {report['items']} items (dropped: "
              f"{', '.join(f'{k} {v}' for k, v in report['dropped'].items())}); agreement alpha "
              f"{'n/a' if alpha is None else f'{alpha:.3f}'}; wrote {FLAGS.output}")
        if alpha is not None and alpha < 0.4:
            print(f"warning: reviewers agree little (alpha {alpha:.3f} < 0.4): read the pairs before training on them")
    elif action == "data-export":
        if rest or not FLAGS.input or not FLAGS.out:
            raise ValueError("data-export needs --input=ROWS.jsonl and --out=DIR (and no other arguments)")
        from ftjax.review.data_sheet import export_rows

        key = export_rows(FLAGS.input, FLAGS.out, FLAGS.sample, FLAGS.seed)
        print(f"wrote {FLAGS.out}/sheet.csv ({len(key['items'])} rows to mark keep, fix or drop) and key.json")
    elif action == "data-import":
        if not FLAGS.key or not rest or not FLAGS.output:
            raise ValueError("data-import needs --key=DIR/key.json, --output=FILE.jsonl and the completed SHEET.csv")
        from ftjax.io import check_writable, write_jsonl
        from ftjax.review.data_sheet import apply_decisions, load_data_key, read_decisions

        check_writable(FLAGS.output)
        key = load_data_key(FLAGS.key)
        rows, counts = apply_decisions(key, read_decisions(rest, key))
        write_jsonl(FLAGS.output, rows)
        reviewed = counts["keep"] + counts["fix"] + counts["drop"]
        print(f"kept {counts['keep']}, fixed {counts['fix']}, dropped {counts['drop']} of {reviewed} reviewed rows "
              f"({100 * (counts['fix'] + counts['drop']) / reviewed:.1f}% needed a fix or a drop); "
              f"{counts['unreviewed']} unreviewed rows unchanged; wrote {len(rows)} rows to {FLAGS.output}")
    else:
        raise ValueError("give an action: ftjax review export | import | pairs | data-export | data-import "
                         f"(got {action!r})")
