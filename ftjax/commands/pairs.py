"""ftjax pairs --workdir=RUN --input=ROWS --output=PAIRS.jsonl [--score=slot_error|rouge_l|bleu|exact_match]
            [--k=4] [--temperature=0.8] [--top_k=40] [--max_new_tokens=64] [--checkpoint=best]

Metric-ranked preference pairs for train.preference: samples k outputs per prompt of ROWS (the run's data
format, with references) with the run's model, scores them (ftjax/eval/ranked_pairs.py) and writes the best
against the worst of each prompt, with both scores. For data-to-text, --score=slot_error prefers outputs
without missing, contradicted or invented facts.
"""

from __future__ import annotations

from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "the run whose model samples", required=True)
flags.DEFINE_string("checkpoint", "best", "best, last or a step number")
flags.DEFINE_string("input", None, "rows with prompts and references (the run's data format)", required=True)
flags.DEFINE_string("output", None, "the pairs JSONL file", required=True)
flags.DEFINE_string("score", None, "slot_error | rouge_l | bleu | exact_match (default: slot_error for "
                    "data-to-text, else rouge_l)")
flags.DEFINE_integer("k", 4, "samples per prompt")
flags.DEFINE_float("temperature", 0.8, "sampling temperature")
flags.DEFINE_integer("top_k", 40, "sample among the k most likely tokens (0 = all)")
flags.DEFINE_integer("max_new_tokens", None, "default: the run's eval.max_new_tokens")
flags.DEFINE_integer("seed", 0, "sampling seed")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments: {' '.join(argv[1:])}")
    from ftjax.data.config import label_set
    from ftjax.data.sources import load_rows, parse_columns
    from ftjax.eval.config import eval_settings
    from ftjax.eval.items import eval_items
    from ftjax.eval.ranked_pairs import SCORES, ranked_pairs
    from ftjax.io import check_writable, write_json, write_jsonl
    from ftjax.train.restore import load_run
    from ftjax.workdir import read_config

    check_writable(FLAGS.output)
    config = read_config(FLAGS.workdir)
    rows = load_rows(FLAGS.input, parse_columns(config.data.columns))
    if not rows:
        raise ValueError(f"{FLAGS.input}: no rows")
    items, task = eval_items(rows, config.data.format, label_set(config.data))
    score = FLAGS.score or ("slot_error" if task == "data_to_text" else "rouge_l")
    if score not in SCORES:
        raise ValueError(f"--score={score!r}: choose from {', '.join(SCORES)}")
    model, tokenizer, _, step = load_run(FLAGS.workdir, FLAGS.checkpoint)
    settings = eval_settings(config)
    pairs, report = ranked_pairs(model, tokenizer, items, score, FLAGS.k,
                                 FLAGS.max_new_tokens or settings.max_new_tokens, FLAGS.temperature, FLAGS.top_k,
                                 settings.batch_size, FLAGS.seed)
    write_jsonl(FLAGS.output, pairs)
    write_json(f"{FLAGS.output}.report.json", report | {"workdir": FLAGS.workdir, "step": step})
    print(f"{report['pairs']} pairs from {report['prompts']} prompts ({report['no_difference']} with no "
          f"difference in {score}); chosen {report['mean_score_chosen']}, rejected {report['mean_score_rejected']} "
          f"on average; wrote {FLAGS.output}")
