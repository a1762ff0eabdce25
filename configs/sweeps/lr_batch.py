"""Learning rate x batch size on Banking77 (30 rows per intent, head), 3 seeds each.

    ftjax sweep --config=configs/sweeps/lr_batch.py --workdir=runs/sweeps/lr_batch
    ftjax sweep --config=configs/sweeps/lr_batch.py:tpe --workdir=runs/sweeps/lr_tpe   # 20 TPE trials, pruned

Variant `tpe`: the learning rate on a log range and the batch size, 20 trials drawn by TPE, poor ones stopped
by the median rule from their validation curves.
"""

from ftjax.sweep.config import preset

BASE = "configs/banking77.py:few"


def get_config(arg=None):
    return preset("configs/sweeps/lr_batch.py", arg,
                  default=dict(base=BASE, space="train.learning_rate=1e-4|3e-4|1e-3|3e-3 train.batch_size=8|16|32 "
                                                "train.seed=0|1|2"),
                  tpe=dict(base=BASE, space="train.learning_rate=logfloat:1e-5:1e-2 train.batch_size=8|16|32",
                           sampler="tpe", trials=20, pruner="median", prune_after=45, startup_trials=4))
