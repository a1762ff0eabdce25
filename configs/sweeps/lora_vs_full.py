"""LoRA vs full fine-tuning on Banking77 (30 rows per intent, head): time, memory and quality, each method at
its own learning rates, 3 seeds; the mission's claim to check is "LoRA cuts training time by 70% and memory by
50% with comparable quality".

    ftjax sweep --config=configs/sweeps/lora_vs_full.py --workdir=runs/sweeps/lora_vs_full
    ftjax sweep --config=configs/sweeps/lora_vs_full.py:cpu --workdir=runs/sweeps/lora_vs_full_cpu

Both methods keep float32 weights (full fine-tuning's updates of ~1e-5 vanish in bfloat16 weights, and LoRA is
held to the same base so that the time and memory differences are the method's). Variant `cpu`: 10 rows per
intent, 60 steps, seed 0: LoRA at 1e-3 and full at 5e-5 and 2e-4; variant `cpu_seeds`: the same arms at seeds 1
and 2 (over the three, 69.5 +- 1.5, 68.9 +- 1.6 and 75.5 +- 2.3). Results: experiments/sweeps/README.md.
"""

from ftjax.sweep.config import preset

BASE = "configs/banking77.py:few"
METHODS = "peft.method,train.learning_rate=lora,1e-3|lora,3e-4|full,5e-5|full,2e-4"
CPU = "data.per_label=10 train.steps=60 train.eval_every=30 checkpoint.every=30 model.dtype=float32"
CPU_ARMS = "peft.method,train.learning_rate=lora,1e-3|full,5e-5|full,2e-4"


def get_config(arg=None):
    return preset("configs/sweeps/lora_vs_full.py", arg,
                  default=dict(base=BASE, space=f"{METHODS} train.seed=0|1|2", overrides="model.dtype=float32"),
                  cpu=dict(base=BASE, space=CPU_ARMS, overrides=CPU),
                  cpu_seeds=dict(base=BASE, space=f"{CPU_ARMS} train.seed=1|2", overrides=CPU))
