"""ftjax augment --config=configs/augment.py[:variant] --input=SEEDS --output=OUT.jsonl [--config.KEY=VALUE ...]

Generates synthetic rows from the seed rows (model paraphrases and new examples, rule-based noise and swaps),
validates them (ftjax/augment/validate.py) and writes the survivors to OUT.jsonl, each with its origin
(`source: synthetic`, method, generator, prompt_id, seed, origin). Work files go to OUT.jsonl.work/: the
candidates (append-only; rerunning the same command after a kill continues with the next batch), the removed
rows with the filter and reason (removed.jsonl) and report.json / report.md (counts per filter, generation time).
"""

from __future__ import annotations

from pathlib import Path

from absl import flags
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "augmentation config (configs/augment.py[:variant])",
                                lock_config=True)
flags.DEFINE_string("input", None, "seed rows: JSONL/CSV/Parquet, hf: or tfds: source", required=True)
flags.DEFINE_string("output", None, "JSONL file for the validated synthetic rows", required=True)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments: {' '.join(argv[1:])}")
    if FLAGS.config is None:
        raise ValueError("--config is required, e.g. --config=configs/augment.py")
    from ftjax.augment import pipeline

    c = FLAGS.config
    out = Path(FLAGS.output)
    if out.suffix != ".jsonl":
        raise ValueError(f"--output={out}: write the synthetic rows to a .jsonl file")
    if out.resolve() == Path(FLAGS.input).resolve():
        raise ValueError("--output must not be the --input file")
    report = pipeline.augment(c, FLAGS.input, out)
    print(pipeline.summary(report))
    print(f"wrote {report['kept']} rows to {out}; removed rows and the report in {out}.work/")
