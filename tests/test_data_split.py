"""Splits (stratified, grouped, reproducible), the leakage check between splits, and token statistics."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from conftest import run_ftjax, save_tiny_tokenizer
from ftjax.data.split import leakage, parse_fractions, split_rows
from ftjax.data.stats import token_stats

WORDS = "card transfer refund account pin phone cash exchange rate limit fee statement top up arrive".split()


def labelled_rows(n=300, seed=0):
    """Distinct texts over three labels of unequal size (60%, 30%, 10%)."""
    import random

    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "a" if i % 10 < 6 else "b" if i % 10 < 9 else "c"
        rows.append({"text": f"{i} " + " ".join(rng.choice(WORDS) for _ in range(6)), "label": label,
                     "_source": "d.jsonl", "_line": i + 1})
    return rows


def test_split_is_stratified_and_reproducible():
    rows = labelled_rows()
    splits = split_rows(rows, (0.8, 0.1, 0.1), seed=3)
    assert {k: len(v) for k, v in splits.items()} == {"train": 240, "validation": 30, "test": 30}
    for name, part in splits.items():
        share = Counter(r["label"] for r in part)
        assert share == Counter({"a": 0.6 * len(part), "b": 0.3 * len(part), "c": 0.1 * len(part)}), name
    again = split_rows(rows, (0.8, 0.1, 0.1), seed=3)
    assert all([r["_line"] for r in again[k]] == [r["_line"] for r in splits[k]] for k in splits)
    other = split_rows(rows, (0.8, 0.1, 0.1), seed=4)
    assert [r["_line"] for r in other["test"]] != [r["_line"] for r in splits["test"]]
    assert sorted(r["_line"] for v in splits.values() for r in v) == list(range(1, 301))


def test_same_input_stays_in_one_split():
    rows = [{"prompt": f"mr {i // 4}", "completion": f"reference {i}", "_line": i} for i in range(80)]
    splits = split_rows(rows, (0.5, 0.5), seed=0)
    assert set(splits) == {"train", "validation"}
    inputs = [{r["prompt"] for r in part} for part in splits.values()]
    assert not inputs[0] & inputs[1]
    assert leakage(splits)["train/validation"] == {"exact": 0, "near": 0, "examples": []}


def test_leakage_check_finds_exact_and_near_duplicates():
    train = [{"text": "where is my new card", "label": "a", "_source": "train.jsonl", "_line": 1},
             {"text": "how do I change my pin number at the cash machine", "label": "b", "_source": "train.jsonl",
              "_line": 2},
             {"text": "is there a fee for transfers", "label": "c", "_source": "train.jsonl", "_line": 3}]
    test = [{"text": "Where is my NEW card?", "label": "a", "_source": "test.jsonl", "_line": 1},
            {"text": "how do I change my pin number at the cash machines", "label": "b", "_source": "test.jsonl",
             "_line": 2},
            {"text": "what is the exchange rate today", "label": "c", "_source": "test.jsonl", "_line": 3}]
    found = leakage({"train": train, "test": test}, threshold=0.8)["train/test"]
    assert (found["exact"], found["near"]) == (1, 1)
    assert [(e["where"], e["other"]) for e in found["examples"]] == [("test.jsonl:1", "train.jsonl:1"),
                                                                     ("test.jsonl:2", "train.jsonl:2")]
    assert leakage({"train": train, "test": test}, threshold=0)["train/test"]["near"] == 0


def test_split_command_and_failing_leakage_check(tmp_path):
    src = tmp_path / "rows.jsonl"
    src.write_text("".join(json.dumps({"utterance": r["text"], "intent": r["label"]}) + "\n"
                           for r in labelled_rows(100)))
    out = tmp_path / "splits"
    run_ftjax("data", "split", f"--input={src}", "--columns=text=utterance,label=intent", f"--output_dir={out}",
              "--seed=1", "--fail_on_leakage")
    sizes = {p.stem: len(p.read_text().splitlines()) for p in out.glob("*.jsonl")}
    assert sizes == {"train": 80, "validation": 10, "test": 10}
    report = json.loads((out / "split_report.json").read_text())
    assert report["stratified"] is True and report["labels"]["test"] == {"a": 6, "b": 3, "c": 1}
    leaky = tmp_path / "leaky_test.jsonl"
    leaky.write_text((out / "train.jsonl").read_text().splitlines()[0] + "\n")
    proc = run_ftjax("data", "split", f"--check={out / 'train.jsonl'},{leaky}", "--fail_on_leakage",
                     f"--report={tmp_path / 'leak.json'}", check=False)
    assert proc.returncode != 0 and "train/leaky_test 1 same-input" in proc.stderr
    assert json.loads((tmp_path / "leak.json").read_text())["leakage"]["train/leaky_test"]["exact"] == 1


def test_fractions_are_validated():
    assert parse_fractions("0.9,0.1") == (0.9, 0.1)
    for bad in ("0.5,0.6", "1", "a,b", "0.5,0.5,0,0"):
        with pytest.raises(ValueError, match="--fractions"):
            parse_fractions(bad)


def test_token_stats(tmp_path):
    tok = save_tiny_tokenizer(tmp_path)
    rows = [{"text": "w1 w2 w3", "label": "w9"}, {"text": "w1", "label": "w8"},
            {"text": " ".join(["w5"] * 20), "label": "w9"}]
    s = token_stats(rows, tok, "auto", max_length=8)
    assert s["tokens"]["max"] == 22 and s["tokens"]["min"] == 3  # text + label + EOS, before truncation
    assert s["target_tokens"]["p50"] == 2 and s["truncated_rows"] == 1
    assert s["labels"] == {"w9": 2, "w8": 1}
    assert s["per_epoch"] == {"tokens": 5 + 3 + 8, "target_tokens": 6, "padded_tokens": 24,
                              "padding_fraction": round(1 - 16 / 24, 4), "packed_sequences_at_least": 2}
    src = tmp_path / "rows.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "labels.json").write_text(json.dumps(["w8", "w9"]))
    proc = run_ftjax("data", "stats", f"--input={src}", f"--tokenizer={tmp_path}", "--max_length=8",
                     f"--labels={tmp_path / 'labels.json'}", f"--output={tmp_path / 's.json'}")
    assert "1 longer than max_length=8" in proc.stdout
    assert json.loads((tmp_path / "s.json").read_text())["per_epoch"] == s["per_epoch"]
