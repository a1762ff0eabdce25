"""ftjax sweep --config=configs/sweeps/NAME.py[:VARIANT] --workdir=DIR [--config.KEY=VALUE ...] [--max_trials=N]
[--retry_failed]

Runs the sweep's trials (each an `ftjax train` workdir under DIR/trials/) until its study has none left, then
writes DIR/results.csv, DIR/results.md, DIR/plots/*.png and DIR/best_config.py. Rerunning the command resumes
the study: finished trials are kept, a trial cut short resumes from its checkpoint. Several workers (hosts,
SLURM array tasks) given the same --workdir on a shared disk, or the same --config.storage RDB URL, split the
trials between them (launch/README.md). --max_trials=0 only rewrites the report. A trial that ended in an error
stays failed on a rerun; --retry_failed queues each such trial once more, in a fresh workdir (after the cause
is fixed).
"""

from __future__ import annotations

from absl import flags
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "sweep config file (configs/sweeps/*.py[:variant])",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "sweep folder: study.db, trials/, logs/, results, plots", required=True)
flags.DEFINE_integer("max_trials", None, "run at most this many trials in this worker (0: report only)")
flags.DEFINE_bool("retry_failed", False, "queue the trials that ended in an error again, once each, first")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments: {' '.join(argv[1:])}")
    if FLAGS.config is None:
        raise ValueError("give --config=configs/sweeps/NAME.py")
    if FLAGS.max_trials is not None and FLAGS.max_trials < 0:
        raise ValueError(f"--max_trials={FLAGS.max_trials}: must be >= 0")
    import json
    from pathlib import Path

    from ftjax.sweep.report import write_report
    from ftjax.sweep.study import sweep

    folder = Path(FLAGS.workdir)
    study, metric, direction = sweep(FLAGS.config, folder, FLAGS.max_trials, FLAGS.retry_failed)
    paths = write_report(study, FLAGS.config, folder, metric, direction)
    print((folder / "results.md").read_text(), end="")
    if (folder / "best.json").is_file():
        top = json.loads((folder / "best.json").read_text())
        print(f"best: {metric}={top['mean']:.4g} with " + ", ".join(f"{k}={v}" for k, v in top["setting"].items()))
    print(f"wrote {', '.join(str(p) for p in paths)}")
