"""Mixture-rate ablation of the multi-task run (Banking77 head + E2E NLG, one adapter): how each task's share of
the steps moves both tasks. `fixed` gives each task as many examples as its single-task run (180 / 150 of 330
steps); `proportional` follows the training rows (2,310 Banking77 vs 4,209 E2E: 35% / 65%); `temperature`
flattens that (n ** (1/2): 43% / 57%, T5's). Judged on Banking77 validation accuracy, with the E2E validation
loss beside it (sweep.also), both at each trial's best checkpoint (the mean of the two validation losses).

    ftjax sweep --config=configs/sweeps/mixture_rates.py --workdir=runs/sweeps/mixture_rates
    ftjax sweep --config=configs/sweeps/mixture_rates.py:cpu --workdir=runs/sweeps/mixture_rates_cpu

Default: 3 rates x 3 seeds at the full 330 steps (about an hour a trial on a 2-core CPU, minutes on a GPU).
Variant `cpu`: 110 steps (a third of the schedule), seeds 0|1, about 20 minutes a trial here. Trials run seed by
seed (the seed is the grid's first key), so `--max_trials=3` compares the three rates on seed 0 and a later run of
the same command adds the next seed. Variant `cpu_seed2`: the third seed in a study of its own (a study's grid
cannot grow: Optuna fixes a choice's values once a trial has used them); experiments/multitask/mixture_table.py
reports the studies together. The generated E2E metrics (BLEU, slot errors) need `ftjax eval --task=e2e_nlg` on
the trials' workdirs afterwards (mixture_table.py --eval=... adds them to the table).

    ftjax sweep --config=configs/sweeps/mixture_rates.py:cpu_seed2 --workdir=runs/sweeps/mixture_rates_cpu_seed2

Reached (`cpu` + `cpu_seed2`, 3 seeds, validation): Banking77 accuracy 78.7 +- 0.6 (fixed), 76.1 +- 1.5
(temperature), 70.9 +- 5.1 (proportional); E2E loss 1.264, 1.233, 1.218, but generated E2E BLEU 68.2 +- 2.3,
69.9 +- 3.7, 68.1 +- 1.9 and slot error rate 10.8, 9.8, 9.2, all within the seed spread
(experiments/multitask/README.md).
"""

from ftjax.sweep.config import preset

BASE = "configs/multitask_banking_e2e.py"
RATES = "mixture.rates=fixed|proportional|temperature"
CPU = "train.steps=110 train.eval_every=55 checkpoint.every=55"


def get_config(arg=None):
    return preset("configs/sweeps/mixture_rates.py", arg,
                  default=dict(base=BASE, space=f"train.seed=0|1|2 {RATES}", also="e2e_nlg/loss"),
                  cpu=dict(base=BASE, space=f"train.seed=0|1 {RATES}", overrides=CPU, also="e2e_nlg/loss"),
                  cpu_seed2=dict(base=BASE, space=f"train.seed=2 {RATES}", overrides=CPU, also="e2e_nlg/loss"))
