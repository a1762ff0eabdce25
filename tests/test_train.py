"""The trainer on a tiny model: learning, exact resume, accumulation equivalence, early stopping, bad input."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import ftjax.models as M
from conftest import killed_at_step, run_ftjax, sft_config, write_rows
from ftjax.train import loop
from ftjax.data.pipeline import Batches
from ftjax.hardware import host_cpu
from ftjax.loss import target_positions
from ftjax.peft.apply import apply_peft, trainable_filter
from ftjax.train.state import TrainState
from ftjax.train.step import make_train_step
from ftjax.workdir import read_metrics

@pytest.fixture(scope="module")
def setup(tiny_model_dir, tmp_path_factory):
    """A tiny llama with a tokenizer, and a learnable task: the completion is a fixed function of the prompt."""
    root = tmp_path_factory.mktemp("train")
    rng = np.random.RandomState(0)

    def rows(n):
        out = []
        for _ in range(n):
            a = rng.randint(10, 100)
            words = " ".join(f"w{a + i}" for i in range(rng.randint(1, 6)))  # unequal lengths
            out.append({"prompt": f"w3 {words}", "completion": f" w{a % 7 + 1} w5"})
        return out

    return {"model": str(tiny_model_dir), "train": write_rows(root / "train.jsonl", rows(48)),
            "validation": write_rows(root / "val.jsonl", rows(12))}


def run(setup, workdir, **overrides):
    config = sft_config(**{"model.path": setup["model"], "data.train": setup["train"],
                           "data.validation": setup["validation"], **overrides})
    return loop.main(config, workdir)


def losses(workdir) -> dict[int, float]:
    return {m["step"]: m["loss"] for m in read_metrics(workdir)}


def test_loss_decreases_and_workdir_is_complete(setup, tmp_path):
    # the tiny model's random head (std 0.02) caps its logits, so the head trains too (peft.unfreeze)
    summary = run(setup, tmp_path, **{"train.steps": 30, "train.learning_rate": 3e-2, "train.eval_every": 10,
                                      "peft.unfreeze": "lm_head"})
    metrics = read_metrics(tmp_path)
    first, last = np.mean([m["loss"] for m in metrics[:3]]), np.mean([m["loss"] for m in metrics[-3:]])
    assert last < 0.7 * first
    evals = [m["val_loss"] for m in metrics if "val_loss" in m]
    assert len(evals) == 3 and evals[-1] < evals[0]
    assert summary["parameters"]["trainable_params"] < summary["parameters"]["base_params"] / 2
    assert summary["hardware"].endswith(f"(1 process) on {host_cpu()}")  # timings compare within one host
    assert json.loads((tmp_path / "config.json").read_text())["train"]["steps"] == 30
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert (tmp_path / "checkpoints").is_dir() and (tmp_path / "summary.json").is_file()


def test_prompt_tuning_trains_on_unpacked_rows_and_refuses_packed_ones(setup, tmp_path):
    with pytest.raises(ValueError, match="set data.pack=False"):
        run(setup, tmp_path / "packed", **{"peft.method": "prompt", "data.pack": True})
    summary = run(setup, tmp_path / "w", **{"peft.method": "prompt", "peft.num_virtual_tokens": 4,
                                            "data.pack": False, "train.steps": 20, "train.learning_rate": 0.3})
    assert summary["parameters"]["trainable_params"] == 4 * 40  # the virtual tokens alone (hidden size 40)
    metrics = read_metrics(tmp_path / "w")
    assert np.mean([m["loss"] for m in metrics[-3:]]) < np.mean([m["loss"] for m in metrics[:3]])


@pytest.mark.long
def test_killed_run_resumes_with_identical_losses(setup, tmp_path, monkeypatch):
    overrides = {"train.steps": 10, "checkpoint.every": 4, "train.eval_every": 5, "peft.dropout": 0.1}
    run(setup, tmp_path / "straight", **overrides)

    undo = killed_at_step(monkeypatch, 7)
    with pytest.raises(KeyboardInterrupt):
        run(setup, tmp_path / "resumed", **overrides)
    undo()
    assert max(losses(tmp_path / "resumed")) == 6
    run(setup, tmp_path / "resumed", **overrides)  # same command again: resumes from step 5's checkpoint
    straight, resumed = losses(tmp_path / "straight"), losses(tmp_path / "resumed")
    assert sorted(resumed) == list(range(1, 11))
    np.testing.assert_allclose([resumed[s] for s in range(1, 11)], [straight[s] for s in range(1, 11)], rtol=1e-6)


def test_corrupt_latest_checkpoint_falls_back(setup, tmp_path, caplog):
    run(setup, tmp_path, **{"train.steps": 8, "checkpoint.every": 4, "train.eval_every": 100})
    for f in (tmp_path / "checkpoints" / "8" / "trainable").rglob("*"):
        if f.is_file():
            f.write_bytes(b"garbage")
    summary = run(setup, tmp_path, **{"train.steps": 10, "checkpoint.every": 4, "train.eval_every": 100})
    assert "step 8 is unreadable" in caplog.text
    assert summary["steps"] == 10 and sorted(losses(tmp_path)) == list(range(1, 11))


def test_grad_accumulation_equals_one_big_batch(setup):
    """2 micro-batches of 2 == 1 batch of 4, with unequal target counts (SGD so updates are linear in grads)."""
    from ftjax.data.encode import encode_all
    from ftjax.data.sources import load_rows
    from ftjax.models.tokenizer import load_tokenizer

    tok = load_tokenizer(setup["model"])
    examples = encode_all(load_rows(setup["train"])[:4], tok, "auto", 32)
    assert len({sum(e["loss_mask"]) + len(e["input_ids"]) for e in examples}) > 1
    big = next(Batches(examples, batch_size=4, seq_len=32, seed=0, shuffle=False))

    def one_step(accum):
        model = M.from_pretrained(setup["model"])
        apply_peft(model, {"method": "lora", "rank": 4, "alpha": 8.0, "init": "gaussian"}, nnx.Rngs(0))
        graphdef, trainable, rng, rest = nnx.split(model, trainable_filter({"method": "lora"}), nnx.RngState, ...)
        trainable = jax.tree.map(lambda x: x + 0.05, trainable)  # B != 0 so that every factor gets a gradient
        tx = optax.sgd(1.0)
        batch = {k: big[k].reshape(accum, 4 // accum, *big[k].shape[1:]) for k in big}
        batch["index"], batch["valid"] = target_positions(batch.pop("loss_mask"))
        step = jax.jit(make_train_step(graphdef, tx, chunk=8))
        new, metrics = step(TrainState(trainable, tx.init(trainable), rng, rest), batch)
        return new.trainable, metrics

    one, m1 = one_step(1)
    two, m2 = one_step(2)
    assert float(m1["target_tokens"]) == float(m2["target_tokens"])
    np.testing.assert_allclose(float(m1["loss"]), float(m2["loss"]), rtol=1e-6)
    for a, b in zip(jax.tree.leaves(one), jax.tree.leaves(two)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)


def test_early_stopping_stops_at_the_right_step(setup, tmp_path):
    # lr 0: validation loss never improves, so patience 2 stops at the third evaluation (step 12)
    summary = run(setup, tmp_path, **{"train.steps": 40, "train.learning_rate": 0.0, "train.eval_every": 4,
                                      "train.early_stopping.patience": 2})
    assert summary["stopped_early"] and summary["steps"] == 12 and summary["best_step"] == 4
    assert max(losses(tmp_path)) == 12


def ftjax_train(*args):
    return run_ftjax("train", *args, check=False)


@pytest.mark.parametrize("args, message", [
    (["--config.train.stepz=3"], "unknown config key 'stepz'; did you mean \"steps\"?"),
    pytest.param(["--config.train.steps=abc"], "invalid literal for int()", marks=pytest.mark.long),
    pytest.param(["--config.train.schedule=sawtooth"], "unknown train.schedule 'sawtooth'", marks=pytest.mark.long),
    pytest.param(["--config.peft.method=magic"], "peft.method='magic'", marks=pytest.mark.long),
])
def test_bad_config_is_one_line_and_writes_nothing(setup, tmp_path, args, message):
    workdir = tmp_path / "w"
    proc = ftjax_train("--config=configs/sft.py:tiny", f"--workdir={workdir}", f"--config.model.path={setup['model']}",
                       f"--config.data.train={setup['train']}", f"--config.data.validation={setup['validation']}",
                       *args)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("ftjax train: error:") and message in last, last
    assert not (workdir / "checkpoints").exists()


@pytest.mark.long
def test_bad_row_names_file_and_line(setup, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "w1", "completion": " w2"}\n{"prompt": "w1"}\n')
    workdir = tmp_path / "w"
    proc = ftjax_train("--config=configs/sft.py:tiny", f"--workdir={workdir}", f"--config.model.path={setup['model']}",
                       f"--config.data.train={bad}", "--config.data.validation=")
    assert proc.returncode != 0 and f"{bad}:2" in proc.stderr.strip().splitlines()[-1]
    assert not workdir.exists()


@pytest.mark.long
def test_export_from_workdir_loads_in_hf_peft(setup, tmp_path):
    """A trained run's best checkpoint, exported with `ftjax export --workdir`, gives the same logits in PEFT."""
    import torch
    import transformers
    from peft import PeftModel

    from ftjax.train.restore import load_run

    run(setup, tmp_path / "run", **{"train.steps": 4, "train.eval_every": 2, "train.learning_rate": 0.05})
    run_ftjax("export", f"--workdir={tmp_path / 'run'}", "--format=peft", f"--out={tmp_path / 'peft'}")
    card = (tmp_path / "peft" / "README.md").read_text()  # the model card quotes the run
    assert card.startswith("---\n") and "library_name: peft" in card and "steps 4 of 4" in card
    model, _, _, step = load_run(tmp_path / "run", "best")
    ids = np.asarray([[5, 9, 31, 7, 22]], np.int32)
    ours = np.asarray(model(jnp.asarray(ids)))
    hf = transformers.AutoModelForCausalLM.from_pretrained(setup["model"])
    peft_model = PeftModel.from_pretrained(hf, tmp_path / "peft").eval()
    with torch.no_grad():
        theirs = peft_model(torch.tensor(ids, dtype=torch.long)).logits.numpy()
    assert np.abs(ours - theirs).max() <= 1e-4
    assert np.abs(ours - np.asarray(M.from_pretrained(setup["model"])(jnp.asarray(ids)))).max() > 1e-4


@pytest.mark.long
def test_merged_export_of_a_bfloat16_run_merges_into_full_precision(setup, tmp_path):
    """A run on a bfloat16 base exports (--format=merged) into the float32 base weights: the merged folder equals
    PEFT's base + adapter in float32 within 1e-4, not within bfloat16 rounding."""
    import torch
    import transformers
    from peft import PeftModel

    run(setup, tmp_path / "run", **{"train.steps": 3, "train.eval_every": 3, "train.learning_rate": 0.05,
                                    "model.dtype": "bfloat16"})
    for fmt in ("peft", "merged"):
        run_ftjax("export", f"--workdir={tmp_path / 'run'}", f"--format={fmt}", f"--out={tmp_path / fmt}")
    ids = torch.tensor([[5, 9, 31, 7, 22]], dtype=torch.long)
    with torch.no_grad():
        merged = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "merged").eval()(ids).logits
        base = transformers.AutoModelForCausalLM.from_pretrained(setup["model"])
        adapted = PeftModel.from_pretrained(base, tmp_path / "peft").eval()(ids).logits
    assert merged.dtype == torch.float32
    assert (merged - adapted).abs().max().item() <= 1e-4


@pytest.mark.parametrize("policy", [pytest.param("full", marks=pytest.mark.long), "dots"])
def test_rematerialised_step_equals_plain_step(setup, policy):
    """model.remat recomputes block activations in the backward pass; the gradients must not change."""
    from ftjax.data.encode import encode_all
    from ftjax.data.sources import load_rows
    from ftjax.models.tokenizer import load_tokenizer

    examples = encode_all(load_rows(setup["train"])[:4], load_tokenizer(setup["model"]), "auto", 32)
    big = next(Batches(examples, batch_size=4, seq_len=32, seed=0, shuffle=False))
    batch = {k: v[None] for k, v in big.items()}
    batch["index"], batch["valid"] = target_positions(batch.pop("loss_mask"))

    def one_step(remat):
        model = M.from_pretrained(setup["model"])
        model.set_remat(remat)
        apply_peft(model, {"method": "lora", "rank": 4, "init": "gaussian"}, nnx.Rngs(0))
        graphdef, trainable, rng, rest = nnx.split(model, trainable_filter({"method": "lora"}), nnx.RngState, ...)
        tx = optax.sgd(1.0)
        return jax.jit(make_train_step(graphdef, tx, chunk=8))(TrainState(trainable, tx.init(trainable), rng, rest),
                                                               batch)

    plain, remat = one_step("none"), one_step(policy)
    np.testing.assert_allclose(float(plain[1]["loss"]), float(remat[1]["loss"]), rtol=1e-6)
    for a, b in zip(jax.tree.leaves(plain[0].trainable), jax.tree.leaves(remat[0].trainable)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)


def test_second_epoch_does_not_recompile(setup):
    """Batch shapes come in fixed buckets (padded length, power-of-two target counts): once every bucket of an
    epoch has compiled, the next epoch and the next validation pass compile nothing."""
    from ftjax import sharding
    from ftjax.train.batches import eval_batches, load_data, step_batch, train_batches
    from ftjax.train.setup import setup as train_setup

    config = sft_config(**{"model.path": setup["model"], "data.train": setup["train"],
                           "data.validation": setup["validation"]})
    data = load_data(config)
    r = train_setup(config, total_steps=100)
    batches = train_batches(data.train, config, r.shards, data.pad_id)
    state, sizes = r.state, []
    for _ in range(2):
        for _ in range(len(data.train) // config.train.batch_size):
            batch = step_batch(batches, config.train.grad_accum_steps, r.shards)
            state, metrics = r.train_step(state, sharding.put_batch(batch, r.batch_shardings))
        for batch in eval_batches(data.validation, config, data.pad_id):
            r.eval_steps[""](state, r.place_eval(batch))
        assert np.isfinite(float(metrics["loss"]))
        sizes.append((r.train_step._cache_size(), r.eval_steps[""]._cache_size()))
    assert sizes[0] == sizes[1] and min(sizes[0]) >= 1
