"""Tasks, mixtures and transfer on the tiny llama: rates as configured, one head per task with its gradient
reaching only that head and the shared adapter, per-task metrics on each task's own rows, a killed multi-task run
resuming as if uninterrupted, `ftjax eval --task`, and `model.init_from` loading exactly the saved weights."""

from __future__ import annotations

import json

import jax
import ml_collections
import numpy as np
import optax
import pytest
from flax import nnx

import ftjax.models as M
from conftest import killed_at_step, run_ftjax, set_keys, sft_config, write_rows
from ftjax import tasks
from ftjax.train import loop

LABELS = ["alpha", "beta", "gamma"]


def classification_rows(rng, n):
    """The label is which keyword (w10, w11, w12) the text holds, among filler words."""
    rows = []
    for _ in range(n):
        k = rng.randint(3)
        noise = [f"w{rng.randint(20, 60)}" for _ in range(rng.randint(0, 3))]
        rows.append({"text": " ".join(["w3", f"w{10 + k}", *noise]), "label": LABELS[k]})
    return rows


def generation_rows(rng, n):
    """Copy the prompt's second word: a completion the LM head learns quickly."""
    rows = []
    for _ in range(n):
        a, b = rng.randint(61, 120, size=2)
        rows.append({"prompt": f"w4 w{a} w{b}", "completion": f" w{a}"})
    return rows


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("tasks")
    rng = np.random.RandomState(0)
    return {"cls_train": write_rows(root / "cls_train.jsonl", classification_rows(rng, 64)),
            "cls_val": write_rows(root / "cls_val.jsonl", classification_rows(rng, 12)),
            "gen_train": write_rows(root / "gen_train.jsonl", generation_rows(rng, 32)),
            "gen_val": write_rows(root / "gen_val.jsonl", generation_rows(rng, 8))}


def mixture_config(model_dir, data, **overrides) -> ml_collections.ConfigDict:
    """configs/sft.py:tiny turned into two tasks: `intent` (classification head, packed) and `copy` (LM head)."""
    config = sft_config(**{"model.path": str(model_dir)})
    config.unlock()
    del config["data"], config["head"]
    intent, copy = (ml_collections.ConfigDict(dict(data=default_data(), head=default_head(), eval={}, rate=1.0))
                    for _ in range(2))
    intent.data.update(train=data["cls_train"], validation=data["cls_val"], format="classification",
                       labels=",".join(LABELS), max_length=32, pack=True)
    intent.head.update(type="classification")
    copy.data.update(train=data["gen_train"], validation=data["gen_val"], max_length=32)
    config.tasks = ml_collections.ConfigDict({"intent": intent, "copy": copy})
    config.mixture = tasks.mixture_config()
    config.train.update(steps=24, learning_rate=3e-2, eval_every=12)
    config.checkpoint.update(every=12)
    return set_keys(config, overrides)


def default_data():
    from ftjax.data import config

    return config.default_config()


def default_head():
    from ftjax.models import heads

    return heads.default_config()


def arrays(state) -> dict[str, np.ndarray]:
    """{dotted path: array} of an nnx state."""
    return {".".join(map(str, p)): np.asarray(v.get_value()) for p, v in nnx.to_flat_state(state)}


def metrics_of(workdir) -> list[dict]:
    return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("rates,temperature,fixed,want", [
    ("proportional", 1.0, None, [0.75, 0.25]),
    ("temperature", 2.0, None, [np.sqrt(3) / (np.sqrt(3) + 1), 1 / (np.sqrt(3) + 1)]),
    ("fixed", 1.0, (1.0, 4.0), [0.2, 0.8]),
])
def test_mixture_rates_match_the_config_over_many_steps(rates, temperature, fixed, want):
    config = ml_collections.ConfigDict(dict(
        tasks={"a": {"rate": fixed[0] if fixed else 1.0}, "b": {"rate": fixed[1] if fixed else 1.0}},
        mixture=dict(rates=rates, temperature=temperature)))
    got = tasks.mixture_rates(config, {"a": 300, "b": 100})
    np.testing.assert_allclose(list(got.values()), want, rtol=1e-9)
    draws = [tasks.task_for_step(got, seed=0, step=s) for s in range(1, 4001)]
    share = draws.count("a") / len(draws)
    assert abs(share - want[0]) < 4 * np.sqrt(want[0] * (1 - want[0]) / len(draws))  # within 4 sigma
    assert draws == [tasks.task_for_step(got, seed=0, step=s) for s in range(1, 4001)]  # same draws on resume


def test_registered_tasks_and_bad_names():
    assert {"banking77", "banking77_generate", "e2e_nlg"} <= set(tasks.registered())
    # the decoding the experiments chose: generated intents kept to the label set, E2E beams reranked by slots
    assert tasks.block("banking77_generate", source=False).eval.constrain == "labels"
    assert tasks.block("e2e_nlg", source=False).eval.rerank == "slots"
    with pytest.raises(ValueError, match="unknown task 'nope'; registered: .*banking77"):
        tasks.get("nope")
    with pytest.raises(ValueError, match="lower-case"):
        tasks.register(tasks.Task("Bad-Name", "", {}))


def test_each_head_trains_only_itself_and_the_shared_adapter(tiny_model_dir):
    from ftjax.loss import target_positions
    from ftjax.models.heads import add_head
    from ftjax.peft.apply import apply_peft, trainable_filter
    from ftjax.train.state import TrainState
    from ftjax.train.step import make_train_step

    model = M.from_pretrained(tiny_model_dir)
    apply_peft(model, {"method": "lora", "rank": 2, "init": "gaussian"}, nnx.Rngs(0))
    add_head(model, LABELS, 0, "first")
    add_head(model, ["x", "y"], 1, "second")
    graphdef, trainable, rng, frozen = nnx.split(model, trainable_filter({"method": "lora"}), nnx.RngState, ...)
    ids = np.asarray([[1, 20, 30, 40]], np.int32)
    mask = np.ones_like(ids, bool)
    loss_mask = np.zeros_like(mask)
    loss_mask[0, 2] = True
    targets = np.zeros_like(ids)
    targets[0, 2] = 1
    batch = {"inputs": ids[None], "targets": targets[None], "attention_mask": mask[None],
             "positions": np.arange(4, dtype=np.int32)[None, None], "segment_ids": np.ones_like(ids)[None]}
    batch["index"], batch["valid"] = target_positions(loss_mask[None])
    tx = optax.sgd(0.1)  # no momentum or decay: a parameter without gradient stays put
    for head, other in (("first", "second"), ("second", "first"), ("lm", None)):
        step = jax.jit(make_train_step(graphdef, tx, chunk=8, head=head))
        new, _ = step(TrainState(trainable, tx.init(trainable), rng, frozen), batch)
        changed = {".".join(map(str, p)) for (p, a), (_, b) in zip(nnx.to_flat_state(trainable),
                                                                    nnx.to_flat_state(new.trainable))
                   if not np.allclose(np.asarray(a.get_value()), np.asarray(b.get_value()))}
        heads_changed = {p for p in changed if p.startswith("heads.")}
        assert heads_changed == ({f"heads.{head}.kernel"} if other else set())
        assert any("lora_b" in p for p in changed)  # the shared adapter learns from every task


@pytest.fixture(scope="module")
def mixed(tiny_model_dir, data, tmp_path_factory):
    wd = tmp_path_factory.mktemp("mixed") / "run"
    config = mixture_config(tiny_model_dir, data, **{
        "train.early_stopping.metric": "1.0*intent/val_accuracy+-0.1*copy/val_loss",
        "train.early_stopping.mode": "max"})
    return wd, config, loop.main(config, wd)


@pytest.mark.long
def test_a_mixed_run_logs_and_evaluates_each_task_on_its_own_rows(mixed, tiny_model_dir, data):
    wd, config, summary = mixed
    rows = metrics_of(wd)
    rates = tasks.mixture_rates(config, {"intent": 64, "copy": 32})
    assert summary["tasks"]["intent"]["train_examples"] == 64 and summary["tasks"]["copy"]["validation_examples"] == 8
    assert summary["tasks"]["intent"]["rate"] == pytest.approx(2 / 3)
    for r in rows:  # each step's loss is logged under the task the mixture drew for it, and only that one
        task = tasks.task_for_step(rates, config.train.seed, r["step"])
        assert f"{task}/loss" in r and r[f"{task}/loss"] == r["loss"]
        assert not any(k.endswith("/loss") and not k.startswith(task) for k in r if "val" not in k)
    evals = [r for r in rows if "intent/val_accuracy" in r]
    assert [r["step"] for r in evals] == [12, 24]
    last = evals[-1]
    assert last["val_loss"] == pytest.approx((last["intent/val_loss"] + last["copy/val_loss"]) / 2)
    assert last[summary["metric"]] == pytest.approx(last["intent/val_accuracy"] - 0.1 * last["copy/val_loss"])
    assert "copy/val_accuracy" not in last and last["intent/val_accuracy"] >= 0.75  # chance is 1/3
    # the trainer's accuracy is the one `ftjax eval --task=intent` reports on the same 12 validation rows
    out = wd / "eval_intent"
    run_ftjax("eval", f"--workdir={wd}", "--task=intent", "--split=validation", "--checkpoint=24", f"--out={out}")
    report = json.loads((out / "validation.json").read_text())
    assert report["rows"] == 12 and report["settings"]["decoding"] == "classification head"
    assert report["metrics"]["accuracy"]["value"] == pytest.approx(last["intent/val_accuracy"])
    bad = run_ftjax("eval", f"--workdir={wd}", "--split=validation", check=False)
    assert bad.returncode != 0 and "--task=" in bad.stderr.strip().splitlines()[-1]


def test_a_killed_mixed_run_resumes_as_if_uninterrupted(mixed, tiny_model_dir, data, tmp_path, monkeypatch):
    wd, config, _ = mixed
    undo = killed_at_step(monkeypatch, 17)
    with pytest.raises(KeyboardInterrupt):
        loop.main(config, tmp_path / "resumed")
    undo()
    loop.main(config, tmp_path / "resumed")  # resumes from step 12's checkpoint
    straight = {r["step"]: r["loss"] for r in metrics_of(wd)}
    resumed = {r["step"]: r["loss"] for r in metrics_of(tmp_path / "resumed")}
    assert sorted(resumed) == list(range(1, 25))
    np.testing.assert_allclose([resumed[s] for s in range(1, 25)], [straight[s] for s in range(1, 25)], rtol=1e-6)


@pytest.mark.long
def test_transfer_loads_exactly_the_saved_weights_and_freezes_by_pattern(mixed, tiny_model_dir, data, tmp_path):
    from ftjax.train.restore import load_run
    from ftjax.train.setup import setup

    source_wd, _, _ = mixed
    source, _, _, _ = load_run(source_wd, "last")
    saved = arrays(nnx.state(source, nnx.Param))
    # continue on the classification task alone, under a new name: the adapter transfers, the head is new
    config = mixture_config(tiny_model_dir, data, **{"model.init_from": f"{source_wd}:last"})
    config.unlock()
    config.tasks = ml_collections.ConfigDict({"intent2": config.tasks.intent})
    run = setup(config, total_steps=4)
    got = arrays(run.state.trainable)
    lora = [k for k in saved if "lora_" in k]
    assert lora and all(np.array_equal(got[k], saved[k]) for k in lora)
    assert run.transfer["fresh"] == ["heads.intent2.kernel"]
    assert run.transfer["unused"] == ["heads.intent.kernel"]  # `copy` generates: no head of its own
    # same task name: the head transfers too; peft.freeze keeps it as loaded through training
    frozen = mixture_config(tiny_model_dir, data, **{"model.init_from": str(source_wd), "peft.freeze": r"^heads\.",
                                                      "train.steps": 4})
    loop.main(frozen, tmp_path / "frozen")
    trained, _, _, _ = load_run(tmp_path / "frozen", "last")
    best, _, _, _ = load_run(source_wd, "best")
    np.testing.assert_array_equal(np.asarray(trained.heads["intent"].kernel[...]),
                                  np.asarray(best.heads["intent"].kernel[...]))
    bad = mixture_config(tiny_model_dir, data, **{"model.init_from": str(tmp_path / "nowhere")})
    with pytest.raises(FileNotFoundError):
        setup(bad, total_steps=4)


@pytest.mark.long
def test_multitask_config_through_the_command_line(tiny_model_dir, data, tmp_path):
    """configs/multitask_banking_e2e.py:tiny with its data files given per task on the command line; `ftjax eval
    --task` scores each task's test file in its own format (Banking77 text,category; E2E mr,ref)."""
    import csv

    rng = np.random.RandomState(1)
    b77 = tmp_path / "b77.csv"
    with b77.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "category"])
        w.writerows([r["text"], r["label"]] for r in classification_rows(rng, 60))
    e2e = tmp_path / "e2e.csv"
    with e2e.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["mr", "ref"])
        for a in range(61, 77):  # 16 distinct MRs
            w.writerows([[f"name[w{a}], food[w{a + 1}]", f"w{a} w5 w{a + 1}"]] * 2)  # two references per MR
    wd = tmp_path / "run"
    run_ftjax("train", "--config=configs/multitask_banking_e2e.py:tiny", f"--workdir={wd}",
              f"--config.model.path={tiny_model_dir}", f"--config.tasks.banking77.data.train={b77}",
              f"--config.tasks.banking77.data.labels={','.join(LABELS)}", f"--config.tasks.e2e_nlg.data.train={e2e}")
    summary = json.loads((wd / "summary.json").read_text())
    assert set(summary["tasks"]) == {"banking77", "e2e_nlg"} and summary["metric"] == "val_loss"
    run_ftjax("eval", f"--workdir={wd}", "--task=banking77", f"--config.data.test={b77}", f"--out={tmp_path}/b")
    assert set(json.loads((tmp_path / "b" / "test.json").read_text())["metrics"]) == {"accuracy", "macro_f1"}
    run_ftjax("eval", f"--workdir={wd}", "--task=e2e_nlg", f"--config.data.test={e2e}", f"--out={tmp_path}/e")
    report = json.loads((tmp_path / "e" / "test.json").read_text())
    assert report["task"] == "data_to_text" and report["items"] == 16 and "slot_error_rate" in report["metrics"]
    assert report["settings"]["decoding"].startswith("beam search (width 4")  # the task's default: slot reranking
    assert report["settings"]["decoding"].endswith("reranked by slot errors") and "outputs_not_the_best_beam" in (
        report["rerank"])


@pytest.mark.long
def test_a_mixed_run_exports_one_task_at_a_time(mixed, tmp_path):
    import torch
    import transformers

    from ftjax.models.heads import classify
    from ftjax.models.tokenizer import load_tokenizer
    from ftjax.train.restore import load_run

    wd, _, _ = mixed
    bad = run_ftjax("export", f"--workdir={wd}", "--format=merged", f"--out={tmp_path}/both", check=False)
    assert bad.returncode != 0 and "--task=" in bad.stderr.strip().splitlines()[-1]
    run_ftjax("export", f"--workdir={wd}", "--task=intent", "--format=merged", f"--out={tmp_path}/intent")
    model, tokenizer, _, _ = load_run(wd)
    texts = ["w3 w11 w40", "w3 w10", "w3 w12 w33 w44"]
    ours = classify(model, [tokenizer(t)["input_ids"] for t in texts], 4, tokenizer.pad_token_id, head="intent")
    hf = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "intent").eval()
    tok = load_tokenizer(tmp_path / "intent")
    with torch.no_grad():
        theirs = hf(**tok(texts, return_tensors="pt", padding=True)).logits.numpy()
    assert hf.config.id2label == dict(enumerate(LABELS)) and np.abs(ours - theirs).max() <= 1e-4
    run_ftjax("export", f"--workdir={wd}", "--task=copy", "--format=peft", f"--out={tmp_path}/copy")
    assert json.loads((tmp_path / "copy" / "adapter_config.json").read_text())["task_type"] == "CAUSAL_LM"


@pytest.mark.parametrize("overrides,message", [
    ({"train.early_stopping.metric": "intent/val_bleu"}, "'intent/val_bleu' is not computed; choose from val_loss"),
    ({"train.early_stopping.metric": "2*intent/val_accuracy+copy/nope"}, "its term 'copy/nope' is not computed"),
    ({"train.early_stopping.metric": "2**x"}, "cannot read the term '2\\*\\*x'"),
    ({"mixture.rates": "even"}, "mixture.rates='even': choose from proportional, temperature, fixed"),
    ({"tasks.intent.data.format": "csv"}, "tasks.intent.data.format='csv'"),
    ({"tasks.copy.eval": {"beams": 2}}, "tasks.copy.eval.beams: unknown eval key"),
])
def test_bad_task_and_mixture_settings_are_one_line_errors(tiny_model_dir, data, overrides, message):
    from ftjax.train.config import check

    config = mixture_config(tiny_model_dir, data)
    config.unlock()
    with pytest.raises(ValueError, match=message):
        check(set_keys(config, overrides))
