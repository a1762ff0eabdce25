"""Data size and quality on Banking77 (head): 7, 13, 26 and 65 rows per intent (about 500, 1k, 2k and 5k
rows) and the full set (about 9k), clean and with 20% or 40% of the labels replaced at random, 3 seeds each.
The mission's claim to check: a small curated set beats a large noisy one.

    ftjax sweep --config=configs/sweeps/data_size.py --workdir=runs/sweeps/data_size
    ftjax sweep --config=configs/sweeps/data_size.py:cpu --workdir=runs/sweeps/data_size_cpu

Every trial trains 4 epochs over its rows (train.steps=0), so a smaller set takes fewer steps. Variant `cpu`:
the same 60 steps for every arm (equal compute), one seed: 10 clean rows per intent, and 30 per intent clean
and with 40% of the labels wrong; variant `cpu_seeds`: the same arms at seeds 1 and 2 (over the three, 69.0 +- 1.5,
42.6 +- 12.8 and 76.8 +- 0.7 validation accuracy). Results: experiments/sweeps/README.md.
"""

from ftjax.sweep.config import preset

BASE = "configs/banking77.py"
CPU_ARMS = "data.per_label,data.label_noise=10,0|30,0.4|30,0"
CPU = "train.steps=60 train.eval_every=30 checkpoint.every=30"


def get_config(arg=None):
    return preset("configs/sweeps/data_size.py", arg, default=dict(
        base=BASE, space="data.per_label=7|13|26|65|0 data.label_noise=0|0.2|0.4 train.seed=0|1|2",
        overrides="train.steps=0 train.epochs=4"),
        cpu=dict(base=f"{BASE}:few", space=CPU_ARMS, overrides=CPU),
        cpu_seeds=dict(base=f"{BASE}:few", space=f"{CPU_ARMS} train.seed=1|2", overrides=CPU))
