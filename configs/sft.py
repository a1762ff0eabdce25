"""Supervised fine-tuning with LoRA: Gemma 3 270M on the embedded Northwind Mobile routing set (make demo).

    ftjax train --config=configs/sft.py --workdir=runs/sft
    ftjax train --config=configs/sft.py --workdir=runs/sft --config.peft.rank=16 --config.train.steps=200

Variants (`configs/sft.py:VARIANT`): `tiny` is the shape the tests use (tiny model folder given with
--config.model.path, 8 steps). Expected result of the default: see README "Demo" (test exact match from
~0% before fine-tuning to the figure recorded there).
"""

import ml_collections

from ftjax import sharding
from ftjax.data import config as data
from ftjax.eval import config as evaluation
from ftjax.models import config as model, heads
from ftjax.peft import config as peft
from ftjax.train import config as train

DEMO_MODEL = "models/gemma-3-270m-q4_k_m.gguf"
DEMO_DATA = "experiments/demo/data"


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.model = model.default_config()
    c.model.update(path=DEMO_MODEL, dtype="bfloat16")
    c.data = data.default_config()
    c.data.update(train=f"{DEMO_DATA}/train.jsonl", validation=f"{DEMO_DATA}/validation.jsonl",
                  test=f"{DEMO_DATA}/test.jsonl", max_length=64)
    c.head = heads.default_config()
    c.peft = peft.default_config()
    c.peft.update(method="lora", rank=8, alpha=16.0, targets="all-linear")
    c.train = train.default_config()
    c.checkpoint = train.checkpoint_config()
    c.mesh = sharding.default_config()
    c.eval = evaluation.default_config()
    if arg == "tiny":
        c.model.update(path="", dtype="float32")
        c.data.update(max_length=32)
        c.peft.update(rank=4, alpha=8.0)
        c.train.update(steps=8, epochs=0, batch_size=4, learning_rate=1e-2, warmup_steps=0, eval_every=4,
                       eval_batch_size=4, schedule="constant")
        c.checkpoint.update(every=4, keep=3, async_save=False)
        c.mesh.update(shape=(1, 1, 1))
        c.eval.update(max_new_tokens=8, batch_size=4, bootstrap=200)
    elif arg:
        raise ValueError(f"unknown configs/sft.py variant {arg!r}; choose from: tiny")
    c.lock()
    return c
