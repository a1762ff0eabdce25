"""The model card every export writes: Hub-format YAML metadata that huggingface_hub parses back, and a body
with the run's own figures (intervals, objective verdict, training record, audit), never invented ones."""

from __future__ import annotations

import json

from huggingface_hub import ModelCard

from ftjax.card import model_card, write_card


def _workdir(tmp_path, audit: bool):
    run = tmp_path / "b77-lora"
    (run / "eval").mkdir(parents=True)
    config = {"peft": {"method": "lora", "rank": 8, "alpha": 16.0, "targets": ""}, "head": {"type": "classification"},
              "model": {"dtype": "bfloat16", "quantize": "none"}, "data": {"train": "data/train.csv", "format": "auto"},
              "train": {"steps": 300, "batch_size": 16, "learning_rate": 3e-4, "schedule": "cosine", "seed": 0}}
    (run / "config.json").write_text(json.dumps(config))
    (run / "summary.json").write_text(json.dumps({"steps": 280, "train_examples": 2310, "validation_examples": 770,
                                                  "seconds": 1800.0, "peak_memory_gb": 4.4, "memory": "RSS",
                                                  "hardware": "1 x cpu (1 process)"}))
    objective = {"metric": "accuracy", "split": "test", "direction": "maximize", "target": 0.9, "value": 0.856,
                 "low": 0.83, "high": 0.88, "met": False}
    (run / "eval" / "test.json").write_text(json.dumps({"data": "test.csv", "rows": 770, "objective": objective,
                                                        "metrics": {"accuracy": {"value": 0.856, "low": 0.83,
                                                                                 "high": 0.88}}}))
    if audit:
        (run / "audit").mkdir()
        (run / "audit" / "report.md").write_text("No disparity found across the lexicon's groups.")
    return run


def test_card_metadata_parses_and_body_quotes_the_run(tmp_path):
    run = _workdir(tmp_path, audit=True)
    card = ModelCard(model_card("peft", "google/gemma-3-270m", str(run)))
    assert card.data.base_model == "google/gemma-3-270m" and card.data.library_name == "peft"
    assert card.data.pipeline_tag == "text-classification" and "lora" in card.data.tags
    [result] = card.data.eval_results
    assert (result.metric_type, result.metric_value, result.dataset_split) == ("accuracy", 0.856, "test")
    text = card.text
    assert "| accuracy | 0.8560 | [0.8300, 0.8800] |" in text and "770 rows" in text
    assert "objective accuracy >= 0.9 on test: 0.856 [0.83, 0.88]: not met" in text
    assert "steps 280 of 300" in text and "1 x cpu" in text and "No disparity found" in text


def test_card_says_what_a_run_lacks(tmp_path):
    run = _workdir(tmp_path, audit=False)
    (run / "eval" / "test.json").unlink()
    path = write_card(tmp_path / "out", "gguf", str(tmp_path / "local-base"), str(run))
    card = ModelCard.load(path)
    assert card.data.base_model is None  # a local folder is not a Hub id
    assert "Not evaluated" in card.text and "No bias audit was run" in card.text
    assert "No objective was set" in card.text
    bare = ModelCard(model_card("adapter", "google/gemma-3-270m", adapter="runs/a"))
    assert "no training run was given" in bare.text
