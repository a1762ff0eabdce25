"""ftjax train --config=configs/sft.py[:variant] --workdir=DIR [--config.KEY=VALUE ...]

Rerunning the same command on the same workdir resumes from its newest readable checkpoint. Several hosts: run
the same command on each (launch/README.md); the job is found from --coordinator/--num_processes/--process_id,
FTJAX_COORDINATOR/FTJAX_NUM_PROCESSES/FTJAX_PROCESS_ID, SLURM or the TPU VM, and process 0 alone logs.
"""

from __future__ import annotations

from absl import flags
from ml_collections import config_flags

from ftjax import distributed
from ftjax.commands import start_config_command

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "experiment config file (configs/*.py[:variant])",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "run folder: config.json, metrics.jsonl, checkpoints, eval/", required=True)
distributed.define_flags(__name__)


def main(argv: list[str]) -> None:
    start_config_command(argv, FLAGS.config)
    import jax

    from ftjax.objective import describe
    from ftjax.tasks import task_configs
    from ftjax.train.loop import main as train

    hook = None
    if any(t.eval.metrics for t in task_configs(FLAGS.config).values()):  # imported only then (rouge, sacrebleu)
        from ftjax.eval.runner import validation_metrics as hook
    summary = train(FLAGS.config, FLAGS.workdir, task_metrics=hook)
    if jax.process_index() == 0:
        print(f"done: {summary['steps']} steps; best {summary['metric']}={summary['best']:.4f} at step "
              f"{summary['best_step']}; workdir {FLAGS.workdir}")
        if "objective" in summary:
            print(describe(summary["objective"]))
