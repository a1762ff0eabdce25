"""ftjax select-base --candidates=A,B,C --config=configs/NAME.py[:VARIANT] --workdir=DIR [--config.KEY=VALUE ...]
                    [--few_shot=K] [--probe_steps=N] [--metric=NAME] [--split=validation]

Scores every candidate base model (a local Hugging Face folder, hub id or .gguf file) on the config's
validation split: zero-shot, with K training examples before each prompt (--few_shot), or after a short
training run of N steps with the config's method (--probe_steps; needed for head tasks). Writes
DIR/select_base.md and DIR/select_base.json: the candidates ranked by the metric (default: the config's
objective), with parameters, generation tokens/s, peak memory and seconds beside it; each candidate's own
results are in DIR/candidates/NN/.
"""

from __future__ import annotations

import sys

from absl import flags
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "experiment config file (configs/*.py[:variant])", lock_config=True)
flags.DEFINE_list("candidates", None, "base models to compare: folders, hub ids or .gguf files", required=True)
flags.DEFINE_string("workdir", None, "results folder", required=True)
flags.DEFINE_integer("few_shot", 0, "training examples before each prompt (0: zero-shot)")
flags.DEFINE_integer("probe_steps", 0, "train each candidate this many steps first (0: no training)")
flags.DEFINE_string("metric", "", "eval metric to rank by (default: the config's objective metric)")
flags.DEFINE_enum("split", "validation", ["validation", "test"], "split to score on")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments: {' '.join(argv[1:])}")
    if FLAGS.config is None:
        raise ValueError("give --config=configs/NAME.py[:VARIANT], the task to choose a base model for")
    if FLAGS.few_shot < 0 or FLAGS.probe_steps < 0:
        raise ValueError("--few_shot and --probe_steps must be >= 0")
    from pathlib import Path

    from ftjax.io import write_json
    from ftjax.metrics.suite import LOWER_IS_BETTER
    from ftjax.models.heads import head_type
    from ftjax.objective import objective_block
    from ftjax.sweep.base import compare, score_candidate

    if head_type(FLAGS.config) != "lm" and not FLAGS.probe_steps:
        raise ValueError("a head has nothing to predict before training: give --probe_steps=N, or a config that "
                         "generates (e.g. configs/banking77.py:generate)")
    goal = objective_block(FLAGS.config)
    metric = FLAGS.metric or goal.metric
    direction = ("minimize" if metric in LOWER_IS_BETTER else "maximize") if FLAGS.metric else goal.direction
    out = Path(FLAGS.workdir)
    config_args = [a for a in sys.argv[2:] if a.startswith("--config")]
    if len(FLAGS.candidates) == 1:  # one candidate: measure it here (the comparison runs one process each)
        result = score_candidate(FLAGS.config, config_args, FLAGS.candidates[0], metric, FLAGS.split,
                                 FLAGS.few_shot, FLAGS.probe_steps, out)
        write_json(out / "result.json", result)
        print(f"{result['candidate']}: {metric}={result['value']:.2f}; wrote {out / 'result.json'}")
        return
    child = [*config_args, f"--metric={metric}", f"--split={FLAGS.split}", f"--few_shot={FLAGS.few_shot}",
             f"--probe_steps={FLAGS.probe_steps}"]
    compare(FLAGS.candidates, child, out, metric, direction)
    print((out / "select_base.md").read_text(), end="")
    print(f"wrote {out / 'select_base.md'}, {out / 'select_base.json'}")
