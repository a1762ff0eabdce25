"""Learning rate x batch size on Banking77 (30 rows per intent, head), 3 seeds each.

    ftjax sweep --config=configs/sweeps/lr_batch.py --workdir=runs/sweeps/lr_batch
    ftjax sweep --config=configs/sweeps/lr_batch.py:tpe --workdir=runs/sweeps/lr_tpe   # 20 TPE trials, pruned
    ftjax sweep --config=configs/sweeps/lr_batch.py:cpu --workdir=runs/sweeps/lora_lr_cpu

Variant `tpe`: the learning rate on a log range and the batch size, 20 trials drawn by TPE, poor ones stopped
by the median rule from their validation curves. Variant `cpu`: LoRA's learning rate 3e-3, 1e-2 and 1e-3 (the
default, which the rank and data sweeps measured, last) at batch 16, 10 rows per intent, 60 steps (the rank
sweep's budget), seed 0 first, then seed 1; 7-15 minutes a trial on a 2-core CPU. Results:
experiments/sweeps/README.md.
"""

from ftjax.sweep.config import preset

BASE = "configs/banking77.py:few"
CPU = "data.per_label=10 train.steps=60 train.eval_every=30 checkpoint.every=30"


def get_config(arg=None):
    return preset("configs/sweeps/lr_batch.py", arg,
                  default=dict(base=BASE, space="train.learning_rate=1e-4|3e-4|1e-3|3e-3 train.batch_size=8|16|32 "
                                                "train.seed=0|1|2"),
                  tpe=dict(base=BASE, space="train.learning_rate=logfloat:1e-5:1e-2 train.batch_size=8|16|32",
                           sampler="tpe", trials=20, pruner="median", prune_after=45, startup_trials=4),
                  cpu=dict(base=BASE, space="train.seed=0|1 train.learning_rate=3e-3|1e-2|1e-3", overrides=CPU))
