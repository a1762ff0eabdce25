"""The regression head: rows `text,value` (a CSV's cells), trained with the squared error through the same
packed, target-only loss; `ftjax eval` reports MSE, MAE, Pearson and Spearman; the merged export is a
transformers regression model (num_labels=1) with the same outputs."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from conftest import run_ftjax, sft_config
from ftjax.data.formats import value_of
from ftjax.train import loop


def write_csv(path, rng, n):
    """The value is 0.5 * k for the keyword w(10 + k) the text holds, among filler words; every text differs (a
    word of its own), so evaluation items are rows."""
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["sentence", "score"])
        for i in range(n):
            k = rng.randint(5)
            filler = [f"w{rng.randint(20, 60)}" for _ in range(rng.randint(3))]
            w.writerow([" ".join(["w3", f"w{10 + k}", *filler, f"w{61 + i % 60}"]), 0.5 * k])
    return str(path)


@pytest.fixture(scope="module")
def run(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("regression")
    rng = np.random.RandomState(0)
    paths = {s: write_csv(root / f"{s}.csv", rng, n) for s, n in (("train", 96), ("validation", 20), ("test", 30))}
    config = sft_config(**{"model.path": str(tiny_model_dir), "data.train": paths["train"],
                           "data.validation": paths["validation"], "data.columns": "text=sentence,value=score",
                           "data.format": "regression", "data.pack": True, "head.type": "regression",
                           "train.steps": 100, "train.batch_size": 8, "train.learning_rate": 1e-2,
                           "train.eval_every": 50, "checkpoint.every": 50, "train.early_stopping.metric": "val_mse"})
    wd = root / "run"
    return wd, loop.main(config, wd), paths


def test_the_head_learns_the_values(run):
    wd, summary, _ = run
    rows = [json.loads(line) for line in (wd / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if "val_mse" in r]
    assert [e["step"] for e in evals] == [50, 100] and "val_perplexity" not in evals[0]
    assert not any("token_accuracy" in r for r in rows)  # a squared-error loss has no accuracy
    assert summary["metric"] == "val_mse" and summary["best"] < 0.2  # the values' variance is 0.5


@pytest.mark.long
def test_eval_reports_regression_metrics(run, tmp_path):
    wd, summary, paths = run
    run_ftjax("eval", f"--workdir={wd}", f"--config.data.test={paths['test']}", f"--out={tmp_path}")
    report = json.loads((tmp_path / "test.json").read_text())
    assert report["task"] == "regression" and report["settings"]["decoding"] == "regression head"
    assert set(report["metrics"]) == {"mse", "mae", "pearson", "spearman"}
    assert report["metrics"]["pearson"]["value"] > 0.8 and report["metrics"]["mse"]["low"] >= 0
    from ftjax.data.config import rows_of
    from ftjax.eval.runner import evaluate_split
    from ftjax.train.restore import load_run

    model, tokenizer, config, _ = load_run(wd)
    val, _ = evaluate_split(model, tokenizer, rows_of(config.data, "validation"), config, n_resamples=0,
                            progress=False)
    assert val["metrics"]["mse"]["value"] == pytest.approx(summary["best"], rel=1e-4)  # the trainer's val_mse


@pytest.mark.long
def test_merged_export_is_a_transformers_regression_model(run, tmp_path):
    import torch
    import transformers

    from ftjax.models.heads import classify
    from ftjax.models.tokenizer import load_tokenizer
    from ftjax.train.restore import load_run

    wd, _, _ = run
    run_ftjax("export", f"--workdir={wd}", "--format=merged", f"--out={tmp_path}/reg")
    model, tokenizer, _, _ = load_run(wd)
    texts = ["w3 w11 w40", "w3 w14", "w3 w12 w33 w44"]
    ours = classify(model, [tokenizer(t)["input_ids"] for t in texts], 4, tokenizer.pad_token_id, head="regression")
    hf = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "reg").eval()
    assert hf.config.num_labels == 1 and hf.config.problem_type == "regression"
    with torch.no_grad():
        theirs = hf(**load_tokenizer(tmp_path / "reg")(texts, return_tensors="pt", padding=True)).logits.numpy()
    assert np.abs(ours - theirs).max() <= 1e-4


def test_a_value_that_is_not_a_number_names_its_row(tmp_path):
    assert value_of({"value": "2.5"}) == 2.5
    with pytest.raises(ValueError, match="rows.csv:3: field 'value' must be a finite number, got 'high'"):
        value_of({"value": "high", "_source": "rows.csv", "_line": 3})
