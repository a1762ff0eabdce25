"""Fine-tuning method ablation on Banking77 (30 rows per intent, head): LoRA, DoRA, (IA)3, prompt and prefix
tuning and full fine-tuning, each at three learning rates (methods want different ones), 3 seeds each; the
table puts quality beside trainable parameters, peak memory, tokens/s and minutes.

    ftjax sweep --config=configs/sweeps/peft_method.py --workdir=runs/sweeps/peft_method
"""

from ftjax.sweep.config import preset


def get_config(arg=None):
    return preset("configs/sweeps/peft_method.py", arg, default=dict(
        base="configs/banking77.py:few",
        space="peft.method=lora|dora|ia3|prompt|prefix|full train.learning_rate=1e-4|1e-3|1e-2 train.seed=0|1|2"))
