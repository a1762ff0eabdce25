"""Supervised fine-tuning with LoRA: Gemma 3 270M on the embedded Northwind Mobile routing set (make demo).

    ftjax train --config=configs/sft.py --workdir=runs/sft
    ftjax train --config=configs/sft.py --workdir=runs/sft --config.peft.rank=16 --config.train.steps=200

Variants (`configs/sft.py:VARIANT`): `tiny` is the shape the tests use (tiny model folder given with
--config.model.path, 8 steps). Expected result of the default: see README "Demo" (test exact match from
~0% before fine-tuning to the figure recorded there).
"""

import ml_collections

from ftjax.peft.config import default_config as peft_defaults

DEMO_MODEL = "models/gemma-3-270m-q4_k_m.gguf"
DEMO_DATA = "experiments/demo/data"


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.model = dict(path=DEMO_MODEL, dtype="bfloat16", remat=False)
    c.data = dict(train=f"{DEMO_DATA}/train.jsonl", validation=f"{DEMO_DATA}/validation.jsonl",
                  test=f"{DEMO_DATA}/test.jsonl", format="auto", columns="", labels="", max_length=64,
                  pack=False)
    c.peft = peft_defaults()
    c.peft.update(method="lora", rank=8, alpha=16.0, targets="all-linear")
    c.train = dict(steps=0, epochs=2, batch_size=8, grad_accum_steps=1, learning_rate=1e-3, schedule="cosine",
                   warmup_steps=8, weight_decay=0.0, max_grad_norm=1.0, eval_every=20, eval_batch_size=16,
                   log_every=1, seed=0, loss_chunk=256,
                   early_stopping=dict(metric="val_loss", mode="min", patience=0, min_delta=0.0))
    c.checkpoint = dict(every=20, keep=2, async_save=True)
    c.mesh = dict(shape=(-1, 1, 1), rules="fsdp")
    # eval.metrics: task metrics generated on the validation split every eval_every steps (val_<name>, usable
    # by early stopping), e.g. "rouge_l,exact_match" or "accuracy"; "" = loss metrics only
    c.eval = dict(max_new_tokens=16, batch_size=16, metrics="", normalize="lower,punct,articles,whitespace",
                  bootstrap=1000)
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
