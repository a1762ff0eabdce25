"""LoRA rank ablation on Banking77 (30 rows per intent, classification head): rank 1 to 64, 3 seeds each.

    ftjax sweep --config=configs/sweeps/lora_rank.py --workdir=runs/sweeps/lora_rank
    ftjax sweep --config=configs/sweeps/lora_rank.py:cpu --workdir=runs/sweeps/lora_rank_cpu

alpha stays 16, so the update's scale alpha/r falls as r grows (the LoRA paper's setting). Variant `cpu`: 10
rows per intent, 60 steps, ranks 2|8|32 x 2 seeds, about 8 minutes a trial on a 2-core CPU. Results:
experiments/sweeps/README.md.
"""

from ftjax.sweep.config import preset

BASE = "configs/banking77.py:few"
CPU = "data.per_label=10 train.steps=60 train.eval_every=30 checkpoint.every=30"


def get_config(arg=None):
    return preset("configs/sweeps/lora_rank.py", arg,
                  default=dict(base=BASE, space="peft.rank=1|2|4|8|16|32|64 train.seed=0|1|2"),
                  cpu=dict(base=BASE, space="peft.rank=2|8|32 train.seed=0|1", overrides=CPU))
