"""ftjax bench --config=configs/sft.py[:variant] [--config.KEY=VALUE ...] [--steps=10 --warmup=3 --out=FILE]

Builds the model, adapter, mesh and jitted step exactly as `ftjax train` does, runs `--warmup` steps (compiling),
then times `--steps` steps: step time, tokens/s, model FLOPs utilisation against the device's peak (formula and
peak table in ftjax/train/bench.py) and peak memory. Writes nothing unless --out names a JSON file.
"""

from __future__ import annotations

import json

from absl import flags
from ml_collections import config_flags

from ftjax import distributed
from ftjax.commands import start_config_command

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "experiment config file (configs/*.py[:variant])",
                                lock_config=True)
flags.DEFINE_integer("steps", 10, "timed steps")
flags.DEFINE_integer("warmup", 3, "untimed steps first (the first compiles)")
flags.DEFINE_string("out", None, "also write the figures to this JSON file")
distributed.define_flags(__name__)


def main(argv: list[str]) -> None:
    start_config_command(argv, FLAGS.config)
    import jax

    from ftjax.train import bench
    from ftjax.io import write_json

    result = bench.measure(FLAGS.config, steps=FLAGS.steps, warmup=FLAGS.warmup)
    if jax.process_index() == 0:
        print(bench.report(result))
        if FLAGS.out:
            write_json(FLAGS.out, result | {"config": json.loads(FLAGS.config.to_json())})
