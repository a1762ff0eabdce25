"""Fine-tuning method ablation on Banking77 (30 rows per intent, head): LoRA, DoRA, (IA)3, prompt and prefix
tuning and full fine-tuning, each at three learning rates (methods want different ones), 3 seeds each; the
table puts quality beside trainable parameters, peak memory, tokens/s and minutes.

    ftjax sweep --config=configs/sweeps/peft_method.py --workdir=runs/sweeps/peft_method
    ftjax sweep --config=configs/sweeps/peft_method.py:cpu --workdir=runs/sweeps/peft_method_cpu

Variant `cpu`: 10 rows per intent, 60 steps, one seed, one rate per method (DoRA at LoRA's 1e-3, (IA)3 and
prefix tuning at 1e-2, prompt tuning at 3e-2 on unpacked rows, since packed sequences cannot share its virtual
tokens); LoRA itself is the rank sweep's r=8 (same data, steps and seed). Variant `cpu_seeds`: the same methods
at seeds 1 and 2, seed 1's trials first (LoRA's are the data sweep's 770-row arm at those seeds). Results:
experiments/sweeps/README.md.
"""

from ftjax.sweep.config import preset

CPU_ARMS = ("peft.method,train.learning_rate,data.pack=dora,1e-3,true|ia3,1e-2,true|prefix,1e-2,true|"
            "prompt,3e-2,false")
CPU = "data.per_label=10 train.steps=60 train.eval_every=30 checkpoint.every=30"


def get_config(arg=None):
    return preset("configs/sweeps/peft_method.py", arg, default=dict(
        base="configs/banking77.py:few",
        space="peft.method,data.pack=lora,true|dora,true|ia3,true|prompt,false|prefix,true|full,true "
              "train.learning_rate=1e-4|1e-3|1e-2 train.seed=0|1|2"),  # prompt tuning cannot pack
        cpu=dict(base="configs/banking77.py:few", space=CPU_ARMS, overrides=CPU),
        cpu_seeds=dict(base="configs/banking77.py:few", space=f"train.seed=1|2 {CPU_ARMS}", overrides=CPU))
