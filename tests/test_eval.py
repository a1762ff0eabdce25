"""Evaluation end to end on a tiny model: train (with a generated validation metric for early stopping), run
`ftjax eval` with the baseline, check its generations equal `ftjax generate`, and the runner's pieces."""

from __future__ import annotations

import json

import numpy as np
import pytest
import sacrebleu
from conftest import run_ftjax as ftjax
from conftest import sft_config, write_rows

import ftjax.models as M
from ftjax.data.sources import load_rows
from ftjax.eval.items import encode_items, eval_items, pick_shots, prompt_row, with_shots
from ftjax.eval.baseline import base_model
from ftjax.eval.runner import evaluate_split, write_results
from ftjax.workdir import read_metrics
from ftjax.models.tokenizer import encode_prompt, load_tokenizer





def learnable_rows(rng, n):
    out = []
    for _ in range(n):
        a = rng.randint(10, 100)
        words = " ".join(f"w{a + i}" for i in range(rng.randint(1, 6)))
        out.append({"prompt": f"w3 {words}", "completion": f" w{a % 7 + 1} w5"})
    return out


@pytest.mark.long
def test_train_then_eval_against_baseline(tiny_model_dir, tmp_path):
    """Train (logging a generated validation metric and early-stopping on it), then `ftjax eval --baseline` on
    a test file: metrics with intervals, and the gain over the base model with a paired test."""
    from ftjax.eval.runner import validation_metrics
    from ftjax.train.loop import main as train

    model = str(tiny_model_dir)
    rng = np.random.RandomState(0)
    train_file = write_rows(tmp_path / "train.jsonl", learnable_rows(rng, 48))
    val_file = write_rows(tmp_path / "val.jsonl", learnable_rows(rng, 12))
    config = sft_config(**{"model.path": model, "data.train": train_file, "data.validation": val_file,
                           "train.steps": 20, "train.learning_rate": 3e-2, "train.eval_every": 10,
                           "peft.unfreeze": "lm_head", "eval.metrics": "rouge_l,exact_match",
                           "train.early_stopping.metric": "val_rouge_l", "train.early_stopping.mode": "max"})
    wd = tmp_path / "run"
    summary = train(config, wd, task_metrics=validation_metrics)
    evals = [m for m in read_metrics(wd) if "val_loss" in m]
    assert [m["step"] for m in evals] == [10, 20]
    assert all(0 <= m["val_rouge_l"] <= 100 and "val_exact_match" in m for m in evals)
    assert summary["metric"] == "val_rouge_l" and summary["best"] == max(m["val_rouge_l"] for m in evals)

    # the validation file as the test set: eval's perplexity must equal the trainer's at the same step
    out = tmp_path / "eval"
    ftjax("eval", f"--workdir={wd}", "--checkpoint=last", f"--config.data.test={val_file}", "--baseline",
          f"--out={out}")
    report = json.loads((out / "test.json").read_text())
    assert report["step"] == 20 and report["split"] == "test" and report["items"] == 12
    assert report["config"]["data"]["test"] == val_file and report["timing"]["total_s"] > 0
    for name in ("exact_match", "token_f1", "rouge_1", "rouge_2", "rouge_l", "bleu", "chrf", "perplexity"):
        m = report["metrics"][name]
        assert m["low"] <= m["value"] <= m["high"], name
    assert report["metrics"]["perplexity"]["value"] == pytest.approx(evals[-1]["val_perplexity"], rel=1e-4)
    assert report["metrics"]["rouge_l"]["value"] == pytest.approx(evals[-1]["val_rouge_l"])
    gain = report["gain"]
    assert gain["perplexity"]["delta"] < 0 and gain["perplexity"]["p_value"] < 0.05  # fine-tuning helped
    assert gain["token_f1"]["delta"] > 0
    assert report["baseline"]["metrics"]["perplexity"]["value"] == gain["perplexity"]["a"]
    preds = [json.loads(line) for line in (out / "test_predictions.jsonl").read_text().splitlines()]
    assert len(preds) == 12 and {"prediction", "references", "nll", "tokens", "scores"} <= set(preds[0])
    assert (out / "test_baseline.json").is_file() and (out / "test_baseline_predictions.jsonl").is_file()


@pytest.fixture(scope="module")
def base(tiny_model_dir):
    folder = tiny_model_dir
    return str(folder), M.from_pretrained(folder), load_tokenizer(folder)


def test_eval_generation_equals_ftjax_generate(base, tmp_path):
    folder, model, tok = base
    rows = learnable_rows(np.random.RandomState(2), 10)
    rows += [{"messages": [{"role": "user", "content": f"w{i} w9"}, {"role": "assistant", "content": "w5"}]}
             for i in (11, 12)]
    config = sft_config()  # eval.batch_size 4, eval.max_new_tokens 8
    _, preds = evaluate_split(model, tok, load_rows(write_rows(tmp_path / "rows.jsonl", rows)), config, metrics=[],
                              n_resamples=0, progress=False)
    prompts = write_rows(tmp_path / "prompts.jsonl", [{k: p[k] for k in ("prompt", "messages") if k in p}
                                                      for p in preds])
    gen = tmp_path / "generated.jsonl"
    ftjax("generate", f"--model={folder}", f"--prompts={prompts}", f"--output={gen}", "--batch_size=4",
          "--max_new_tokens=8")
    assert [json.loads(line)["completion"] for line in gen.read_text().splitlines()] == \
        [p["prediction"] for p in preds]
    assert preds[-1]["messages"] == [{"role": "user", "content": "w12 w9"}]


def test_multi_reference_rows_group_into_one_item(base, tmp_path):
    _, model, tok = base
    rows = [{"data": {"name": "w20", "food": "w30"}, "text": "w7 w8 w9"},
            {"data": {"name": "w21"}, "text": "w9 w9"},
            {"data": {"name": "w20", "food": "w30"}, "text": "w7 w9"},
            {"data": {"name": "w22"}, "text": "w9"}, {"data": {"name": "w23"}, "text": "w8"}]
    path = write_rows(tmp_path / "e2e.jsonl", rows)
    config = sft_config(**{"data.max_length": 24})
    report, preds = evaluate_split(model, tok, load_rows(path), config, metrics=["bleu", "exact_match"],
                                   progress=False)
    assert report["items"] == 4 and report["rows"] == 5 and report["task"] == "data_to_text"
    assert preds[0]["prompt"] == "name[w20], food[w30]" and preds[0]["references"] == ["w7 w8 w9", "w7 w9"]
    assert preds[0]["sources"] == [f"{path}:1", f"{path}:3"]
    refs = [["w7 w8 w9", "w9 w9", "w9", "w8"], ["w7 w9", None, None, None]]
    expected = sacrebleu.corpus_bleu([p["prediction"] for p in preds], refs).score
    assert report["metrics"]["bleu"]["value"] == pytest.approx(expected)


def test_classification_eval_writes_confusion_matrix(base, tmp_path):
    _, model, tok = base
    rows = [{"text": f"w{10 + i} w{20 + i}", "label": ["w5", "w6", "w7"][i % 3]} for i in range(9)]
    config = sft_config(**{"data.labels": "w5,w6,w7,w8"})
    report, preds = evaluate_split(model, tok, load_rows(write_rows(tmp_path / "c.jsonl", rows)), config,
                                   metrics=["accuracy", "macro_f1"], progress=False)
    assert report["task"] == "classification" and set(report["metrics"]) == {"accuracy", "macro_f1"}
    block = report["classification"]
    assert block["labels"] == ["w5", "w6", "w7", "w8"] and np.asarray(block["confusion_matrix"]).shape == (4, 5)
    assert all(p["predicted_label"] in block["labels"] + ["(other)"] for p in preds)
    paths = write_results(tmp_path / "out", "test", report, preds)
    assert sorted(p.name for p in paths) == ["test.json", "test_confusion.png", "test_predictions.jsonl"]


def test_few_shot_prompts(base, tmp_path):
    tok = base[2]
    train = load_rows(write_rows(tmp_path / "t.jsonl", learnable_rows(np.random.RandomState(1), 10)))
    shots = pick_shots(train, 2)
    assert [s.prompt for s in shots] == [s.prompt for s in pick_shots(train, 2)]  # deterministic
    item = eval_items([{"prompt": "w3 w40", "completion": " w1"}])[0][0]
    text = f"{shots[0].prompt}{shots[0].references[0]}\n\n{shots[1].prompt}{shots[1].references[0]}\n\nw3 w40"
    assert with_shots(item, shots) == (text, None) and prompt_row(item, shots) == {"prompt": text}
    assert encode_items(tok, [item], shots) == [encode_prompt(tok, text)]
    chat = eval_items([{"messages": [{"role": "system", "content": "w9"}, {"role": "user", "content": "w1"},
                                     {"role": "assistant", "content": "w2"}]}])[0][0]
    _, turns = with_shots(chat, shots[:1])
    assert [t["role"] for t in turns] == ["system", "user", "assistant", "user"]
    with pytest.raises(ValueError, match="only 10 distinct prompts"):
        pick_shots(train, 11)


def test_base_model_switches_adapter_off_or_reloads(base):
    from ftjax.peft.apply import apply_peft
    from ftjax.peft.state import active_adapter

    folder, _, _ = base
    model = apply_peft(M.from_pretrained(folder), {"method": "lora", "rank": 2})
    with base_model(model, folder, np.float32) as plain:
        assert plain is model and active_adapter(model) is None
    assert active_adapter(model) == "default"
    unfrozen = apply_peft(M.from_pretrained(folder), {"method": "lora", "rank": 2, "unfreeze": "lm_head"})
    with base_model(unfrozen, folder, np.float32) as plain:
        assert plain is not unfrozen and not getattr(plain, "adapter_specs", ())


@pytest.mark.parametrize("args, message", [
    (["--workdir=/x", "--model=/y"], "not both"),
    (["--config.data.test=BAD", "--out=OUT"], "BAD:2: missing field 'completion'"),
    pytest.param(["--out=OUT"], "pass --config.data.test=PATH", marks=pytest.mark.long),
    pytest.param(["--config.data.test=BAD", "--out=OUT", "--config.eval.bogus=1"], "bogus", marks=pytest.mark.long),
    pytest.param(["--config.data.test=BAD", "--out=OUT", "--config.train.steps=3"], "unknown config key 'train'",
                 marks=pytest.mark.long),
])
def test_eval_bad_input_is_one_line_and_writes_nothing(base, tmp_path, args, message):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "w1", "completion": " w2"}\n{"prompt": "w1"}\n')
    args = [a.replace("BAD", str(bad)).replace("OUT", str(tmp_path / "out")) for a in args]
    proc = ftjax("eval", *([f"--model={base[0]}"] if "--workdir=/x" not in args else []), *args, check=False)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 2 and last.startswith("ftjax eval: error:") and message.replace(
        "BAD", str(bad)) in last, last
    assert not (tmp_path / "out").exists()
