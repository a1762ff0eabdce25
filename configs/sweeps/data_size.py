"""Data size and quality on Banking77 (head): 7, 13, 26 and 65 rows per intent (about 500, 1k, 2k and 5k
rows) and the full set (about 9k), clean and with 20% or 40% of the labels replaced at random, 3 seeds each.
The mission's claim to check: a small curated set beats a large noisy one.

    ftjax sweep --config=configs/sweeps/data_size.py --workdir=runs/sweeps/data_size

Every trial trains 4 epochs over its rows (train.steps=0), so a smaller set takes fewer steps.
"""

from ftjax.sweep.config import preset


def get_config(arg=None):
    return preset("configs/sweeps/data_size.py", arg, default=dict(
        base="configs/banking77.py", space="data.per_label=7|13|26|65|0 data.label_noise=0|0.2|0.4 train.seed=0|1|2",
        overrides="train.steps=0 train.epochs=4"))
