"""Which layers LoRA adapts, on Banking77 (30 rows per intent, head): attention projections only vs every
linear layer, 3 seeds each.

    ftjax sweep --config=configs/sweeps/lora_targets.py --workdir=runs/sweeps/lora_targets
"""

from ftjax.sweep.config import preset


def get_config(arg=None):
    return preset("configs/sweeps/lora_targets.py", arg, default=dict(
        base="configs/banking77.py:few", space="peft.targets=q_proj,k_proj,v_proj,o_proj|all-linear train.seed=0|1|2"))
