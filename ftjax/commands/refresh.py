"""ftjax refresh --name=NAME --new_data=FILE --old_test=FILE --out=DIR [--new_test=FILE] [--registry=DIR|URI]
              [--start_over] [--metric=accuracy] [--mode=max] [--margin=0.0] [--tolerance=0.0]
              [--set=KEY=VALUE,...]

Re-fine-tunes the registry's champion of NAME on its training data plus the new labelled data (continuing from
its adapter and heads; --start_over trains from the base), scores champion and candidate on --old_test and on
the new data's held-out part (--new_test, or a stratified --new_test_fraction of --new_data), and promotes the
candidate only if it beats the champion on the new data by more than --margin and loses at most --tolerance on
the old test set. The candidate is registered either way, with the decision and its numbers as tags; DIR holds
champion/, data/, candidate/ (a workdir) and decision.json. Rerunning a killed refresh resumes it.
"""

from __future__ import annotations

import json
from pathlib import Path

from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_string("registry", "registry", "registry folder (SQLite MLflow store) or MLflow tracking URI")
flags.DEFINE_string("name", None, "registered model name", required=True)
flags.DEFINE_string("new_data", None, "newly collected labelled rows (the training data's format)", required=True)
flags.DEFINE_string("old_test", None, "the fixed held-out test set both versions are scored on", required=True)
flags.DEFINE_string("new_test", None, "held-out rows of the new data (default: a split of --new_data)")
flags.DEFINE_float("new_test_fraction", 0.2, "without --new_test: the share of --new_data held out")
flags.DEFINE_string("out", None, "the refresh folder", required=True)
flags.DEFINE_bool("start_over", False, "train the candidate from the base model instead of the champion")
flags.DEFINE_string("metric", "accuracy", "the metric that decides")
flags.DEFINE_enum("mode", "max", ["max", "min"], "max: higher is better")
flags.DEFINE_float("margin", 0.0, "the candidate must beat the champion on the new data by more than this")
flags.DEFINE_float("tolerance", 0.0, "and may lose at most this on the old test set")
flags.DEFINE_list("set", [], "training config overrides KEY=VALUE (e.g. train.steps=90,train.learning_rate=5e-4)")
flags.DEFINE_integer("seed", 0, "the split of --new_data")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not 0 < FLAGS.new_test_fraction < 1:
        raise ValueError(f"--new_test_fraction={FLAGS.new_test_fraction}: must be in (0, 1)")
    from ftjax.config import set_dotted
    from ftjax.data.config import rows_of
    from ftjax.eval.runner import evaluate_split, validation_metrics, write_results
    from ftjax.registry.refresh import Rule, refresh
    from ftjax.registry.store import Registry
    from ftjax.tasks import task_configs
    from ftjax.train.loop import main as train_loop
    from ftjax.train.restore import load_run

    pairs = [s.split("=", 1) for s in FLAGS.set]
    if any(len(p) != 2 or not p[0] for p in pairs):
        raise ValueError(f"--set takes KEY=VALUE items (got {','.join(FLAGS.set)})")

    def overrides(config) -> None:
        for key, value in pairs:
            try:
                value = json.loads(value)  # 90, 5e-4, true; anything else stays text
            except ValueError:
                pass
            set_dotted(config, key, value)

    def train(config, workdir: Path) -> dict:
        hook = validation_metrics if any(t.eval.metrics for t in task_configs(config).values()) else None
        return train_loop(config, workdir, task_metrics=hook)

    def evaluate(workdir: Path, file: str) -> dict:
        model, tokenizer, config, _ = load_run(workdir)
        config.data.test = file
        report, predictions = evaluate_split(model, tokenizer, rows_of(config.data, "test"), config)
        write_results(Path(workdir) / "eval", f"refresh_{Path(file).stem}", report, predictions)
        if FLAGS.metric not in report["metrics"]:
            raise ValueError(f"--metric={FLAGS.metric}: the evaluation gives {', '.join(report['metrics'])}")
        return report["metrics"]

    rule = Rule(FLAGS.metric, FLAGS.mode, FLAGS.margin, FLAGS.tolerance)
    d = refresh(Registry(FLAGS.registry), FLAGS.name, FLAGS.out, FLAGS.new_data, FLAGS.old_test, train=train,
                evaluate=evaluate, rule=rule, new_test=FLAGS.new_test, new_test_fraction=FLAGS.new_test_fraction,
                start_over=FLAGS.start_over, overrides=overrides, seed=FLAGS.seed)
    for who in ("champion", "candidate"):
        s = d[who]
        print(f"{who:>9} v{d[who + '_version']}: {FLAGS.metric} old test {s['old_test']:.4f}, "
              f"new data {s['new_test']:.4f}")
    verdict = "PROMOTED" if d["promote"] else "not promoted"
    print(f"{verdict}: {d['reason']}; decision in {Path(FLAGS.out) / 'decision.json'} and the registry")
