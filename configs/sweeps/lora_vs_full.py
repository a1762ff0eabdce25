"""LoRA vs full fine-tuning on Banking77 (30 rows per intent, head): time, memory and quality, each method at
its usual learning rate range, 3 seeds; the mission's claim to check is "LoRA cuts training time by 70% and
memory by 50% with comparable quality".

    ftjax sweep --config=configs/sweeps/lora_vs_full.py --workdir=runs/sweeps/lora_vs_full
"""

from ftjax.sweep.config import preset


def get_config(arg=None):
    return preset("configs/sweeps/lora_vs_full.py", arg, default=dict(
        base="configs/banking77.py:few", space="peft.method=lora|full train.learning_rate=5e-5|1e-3 train.seed=0|1|2"))
