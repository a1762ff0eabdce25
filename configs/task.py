"""Any registered task, or a mixture of them, by name (ftjax/tasks.py): Gemma 3 270M, LoRA r=8 on every linear
layer, one backbone and one adapter, a head per classification task.

    ftjax train --config=configs/task.py:banking77 --workdir=runs/b77
    ftjax train --config=configs/task.py:banking77+e2e_nlg --workdir=runs/mt \\
        --config.mixture.rates=temperature --config.tasks.banking77.data.per_label=30
    ftjax eval --workdir=runs/mt --task=banking77 --config.data.test=PATH/test.csv

Registered: banking77 (classification head), banking77_generate (the label generated), e2e_nlg (data-to-text).
One name gives a single-task run (its data/head blocks at the top); NAME+NAME a `tasks` block and a `mixture`
block (rates proportional | temperature | fixed). No result is claimed for these defaults: the tuned,
measured configs are configs/banking77.py, configs/e2e_nlg.py and configs/multitask_banking_e2e.py.
"""

import ml_collections

from ftjax import sharding, tasks
from ftjax.eval import config as evaluation
from ftjax.models import config as model
from ftjax.peft import config as peft
from ftjax.train import config as train

MODEL = "models/gemma-3-270m-q4_k_m.gguf"


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    if not arg:
        raise ValueError("name the task(s): configs/task.py:NAME[+NAME...]; registered: "
                         + ", ".join(tasks.registered()))
    names = arg.split("+")
    c = ml_collections.ConfigDict()
    c.model = model.default_config()
    c.model.update(path=MODEL, dtype="bfloat16")
    c.peft = peft.default_config()
    c.peft.update(method="lora", rank=8, alpha=16.0, targets="all-linear")
    c.train = train.default_config()
    c.train.update(steps=300, batch_size=16, learning_rate=1e-3, warmup_steps=20, eval_every=100, eval_batch_size=64)
    c.checkpoint = train.checkpoint_config()
    c.checkpoint.update(every=100)
    c.mesh = sharding.default_config()
    c.eval = evaluation.default_config()
    if len(names) == 1:
        task = tasks.block(names[0])
        c.data, c.head = task.data, task.head
        c.eval.update(**task.eval)
    else:
        c.tasks = tasks.blocks(*names)
        c.mixture = tasks.mixture_config()
    c.lock()
    return c
