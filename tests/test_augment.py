"""`ftjax augment`: model rows reproducible by seed and resumed after a kill as if uninterrupted; rule-based noise
and swaps; each validation filter removes exactly the rows planted for it, and no kept row is (nearly) a test
row; origin fields survive the data review round trip and reach the trainer as loss weights."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from conftest import ROOT, run_ftjax, set_keys, sft_config, write_rows
from ftjax.augment import pipeline, rules
from ftjax.augment.validate import Checks, validate
from ftjax.config import load_config_file
from ftjax.data.quality import Filters

SEEDS = [{"text": f"w3 w{10 + i} w{40 + i % 5} w{70 + i}", "label": f"l{i % 3}"} for i in range(9)]


def tiny_config(model_dir, **overrides):
    c = load_config_file(ROOT / "configs" / "augment.py", "tiny")
    c.model.path = str(model_dir)
    c.validate.min_letter_ratio = 0.0  # the tiny vocabulary's words are w1, w2, ...
    return set_keys(c, overrides)


def read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def seeds(tmp_path):
    return write_rows(tmp_path / "seeds.jsonl", SEEDS)


def test_model_rows_repeat_by_seed_and_resume_after_a_kill(tiny_model_dir, seeds, tmp_path, monkeypatch):
    from ftjax.augment import generate

    c = tiny_config(tiny_model_dir, **{"validate.filters": "format"})
    straight = pipeline.augment(c, seeds, tmp_path / "a.jsonl")
    assert straight["candidates"] == 9 + 3 * 2  # a paraphrase per seed, 2 new rows for each of 3 labels
    rows = read(tmp_path / "a.jsonl")
    assert {r["method"] for r in rows} == {"paraphrase", "new"}
    assert all(r["source"] == "synthetic" and r["generator"] == str(tiny_model_dir) and r["prompt_id"] for r in rows)
    assert [r["label"] for r in rows if r["method"] == "paraphrase"] == [s["label"] for s in SEEDS]
    assert rows[0]["origin"] == "seeds.jsonl:1"

    real, calls = generate.Candidates.write, {"n": 0}

    def dies(self, batch, batch_rows):
        calls["n"] += 1
        if calls["n"] == 3:  # the third batch dies half-written
            with self.path.open("a") as f:
                f.write(json.dumps(dict(batch_rows[0], _batch=batch))[:20])
            raise KeyboardInterrupt("simulated kill")
        real(self, batch, batch_rows)

    monkeypatch.setattr(generate.Candidates, "write", dies)
    with pytest.raises(KeyboardInterrupt):
        pipeline.augment(c, seeds, tmp_path / "b.jsonl")
    assert not (tmp_path / "b.jsonl").exists()  # nothing written before validation
    monkeypatch.setattr(generate.Candidates, "write", real)
    pipeline.augment(c, seeds, tmp_path / "b.jsonl")
    assert read(tmp_path / "b.jsonl") == rows
    batches = [json.loads(line)["_batch"] for line in (tmp_path / "b.jsonl.work" / "candidates.jsonl").open()]
    assert sorted(batches) == sorted(json.loads(line)["_batch"]
                                     for line in (tmp_path / "a.jsonl.work" / "candidates.jsonl").open())

    other = pipeline.augment(tiny_config(tiny_model_dir, **{"validate.filters": "format", "sampling.seed": 1}),
                             seeds, tmp_path / "c.jsonl")
    assert other["candidates"] == 15 and [r["text"] for r in read(tmp_path / "c.jsonl")] != [r["text"] for r in rows]
    with pytest.raises(ValueError, match="another config or input"):
        pipeline.augment(tiny_config(tiny_model_dir, **{"sampling.seed": 1}), seeds, tmp_path / "a.jsonl")


def test_rules_are_seeded_noise_and_swaps_from_the_lists(tmp_path):
    rng = lambda: np.random.default_rng(7)
    text = "My Visa card payment in London is pending"
    assert rules.noise(text, ["typos"], 0.2, rng()) == rules.noise(text, ["typos"], 0.2, rng()) != text
    assert rules.noise(text, ["casing"], 0.0, rng()) in (text.lower(), text.upper(), "m" + text[1:])
    assert rules.noise(text, ["punctuation"], 0.0, rng()).rstrip("?!.") == text
    (tmp_path / "syn.json").write_text(json.dumps({"pending": ["on hold"]}))
    (tmp_path / "ent.json").write_text(json.dumps([["London", "Paris"], ["Visa", "Mastercard"]]))
    table = rules.load_swaps(str(tmp_path / "syn.json"), str(tmp_path / "ent.json"))
    assert table["london"] == ["Paris"] and table["pending"] == ["on hold"]
    swapped = {rules.swap(text, table, np.random.default_rng(s)) for s in range(20)}
    assert swapped == {text.replace("Visa", "Mastercard"), text.replace("London", "Paris"),
                       text.replace("pending", "on hold")}
    (tmp_path / "bad.json").write_text('{"a": [1],\n "b": }')
    with pytest.raises(ValueError, match="bad.json:2: not valid JSON"):
        rules.load_swaps(str(tmp_path / "bad.json"))
    with pytest.raises(ValueError, match="unknown noise kind"):
        rules.noise(text, ["emoji"], 0.1, rng())


def test_each_filter_removes_exactly_its_planted_rows():
    pytest.importorskip("sklearn")
    from ftjax.augment.validate import tfidf_label_probability

    real = [{"text": t, "label": lab, "_source": "real.csv", "_line": i + 2} for i, (t, lab) in enumerate(
        [(f"my card {w} has not arrived yet", "card_arrival") for w in ("still", "really", "new", "debit")] +
        [(f"how do i {w} my pin number", "change_pin") for w in ("change", "reset", "update", "set")])]
    test = [{"text": "where is the card i ordered last week", "label": "card_arrival"}]
    synthetic = [
        {"text": "when will my new card finally get here", "label": "card_arrival"},  # good
        {"text": "i want to pick a different pin code", "label": "change_pin"},  # good
        {"text": "", "label": "card_arrival"},  # format: no text
        {"text": "a reply about cards", "label": "refund"},  # format: unknown label
        {"text": "!!!! #### $$$$ 1234", "label": "change_pin"},  # quality: not text
        {"text": "Where is the card I ordered last week?", "label": "card_arrival"},  # test leak (exact)
        {"text": "where is the card i ordered last weeks", "label": "card_arrival"},  # test leak (near)
        {"text": "my card really has not arrived yet!", "label": "card_arrival"},  # existing (exact)
        {"text": "when will my new card finally get here?", "label": "card_arrival"},  # duplicate of row 1
        {"text": "how do i change my pin number please", "label": "card_arrival"},  # label: says change_pin
    ]
    checks = Checks(labels=("card_arrival", "change_pin"), quality=Filters(), min_words=2, near_threshold=0.8,
                    label_threshold=0.5)
    kept, removed, report = validate(synthetic, "classification", checks, existing=real, test=test,
                                     label_probability=tfidf_label_probability(real))
    assert kept == synthetic[:2]
    assert [(r["removed_by"], synthetic.index(dict((k, v) for k, v in r.items() if k not in ("removed_by", "why"))))
            for r in removed] == [("format", 2), ("format", 3), ("quality", 4), ("test_leak", 5), ("test_leak", 6),
                                  ("existing", 7), ("duplicate", 8), ("label", 9)]
    assert report == {"format": 2, "quality": 1, "test_leak": 2, "existing": 1, "duplicate": 1, "label": 1}
    assert "real.csv:3" in removed[5]["why"]  # names the real row it repeats


def test_the_command_keeps_no_test_row_and_reports_every_filter(tiny_model_dir, tmp_path):
    from ftjax.data.dedup import NearDuplicateIndex
    from ftjax.data.quality import normalize

    seeds = write_rows(tmp_path / "seeds.jsonl", SEEDS)
    test = write_rows(tmp_path / "test.jsonl", SEEDS[:4])  # rule rows of these seeds nearly equal them
    out = tmp_path / "syn.jsonl"
    run_ftjax("augment", "--config=configs/augment.py:tiny", f"--input={seeds}", f"--output={out}",
              f"--config.model.path={tiny_model_dir}", "--config.augment.methods=rules,paraphrase",
              f"--config.data.test={test}", "--config.validate.min_letter_ratio=0", "--config.rules.noise=casing")
    report = json.loads((tmp_path / "syn.jsonl.work" / "report.json").read_text())
    assert report["removed"]["test_leak"] >= 4 and report["candidates"] == 18
    index = NearDuplicateIndex(0.8)
    for i, sig in enumerate(index.signatures([(normalize(r["text"]),) for r in SEEDS[:4]])):
        index.add(i, sig)
    kept = read(out)
    assert all(index.match(sig) is None for sig in index.signatures([(normalize(r["text"]),) for r in kept]))
    removed = read(tmp_path / "syn.jsonl.work" / "removed.jsonl")
    assert len(kept) + len(removed) == 18 and all(r["why"] for r in removed)
    bad = run_ftjax("augment", "--config=configs/augment.py:tiny", f"--input={seeds}", f"--output={out}",
                    "--config.augment.methods=poetry", check=False)
    assert bad.returncode == 2 and "augment.methods='poetry'" in bad.stderr and len(bad.stderr.splitlines()) == 1


def test_origin_survives_the_review_round_trip_and_weights_the_loss(tiny_model_dir, tmp_path):
    from ftjax.data.config import row_weights
    from ftjax.models.tokenizer import load_tokenizer
    from ftjax.review.data_sheet import apply_decisions, export_rows, load_data_key, read_decisions
    from ftjax.data.pipeline import Batches
    from ftjax.train.batches import load_split, step_batch

    synthetic = [dict(s, source="synthetic", method="rules", generator="rules", prompt_id="rules:casing", seed=i,
                      origin=f"seeds.jsonl:{i + 1}") for i, s in enumerate(SEEDS[:5])]
    path = write_rows(tmp_path / "syn.jsonl", synthetic)
    key = export_rows(path, tmp_path / "review", sample=3, seed=0)
    sheet = list(csv.DictReader((tmp_path / "review" / "sheet.csv").open()))
    for row, decision in zip(sheet, ("keep", "fix", "drop")):
        row.update(decision=decision, fixed_input="w3 w99" if decision == "fix" else "")
    with (tmp_path / "done.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, sheet[0].keys())
        w.writeheader()
        w.writerows(sheet)
    rows, counts = apply_decisions(load_data_key(tmp_path / "review" / "key.json"),
                                   read_decisions([tmp_path / "done.csv"], key))
    assert counts == {"keep": 1, "fix": 1, "drop": 1, "unreviewed": 2} and len(rows) == 4
    fixed = next(r for r in rows if r.get("review") == "fix")
    assert fixed["text"] == "w3 w99" and fixed["review_original"]["text"] != "w3 w99"
    assert all(r["source"] == "synthetic" and r["origin"].startswith("seeds.jsonl:") for r in rows)
    sheet[0]["decision"] = "maybe"
    with (tmp_path / "bad.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, sheet[0].keys())
        w.writeheader()
        w.writerows(sheet)
    with pytest.raises(ValueError, match="bad.csv:2: column decision"):
        read_decisions([tmp_path / "bad.csv"], key)

    train = write_rows(tmp_path / "train.jsonl", [{"prompt": s["text"], "completion": " w5"} for s in SEEDS] +
                       [{"prompt": r["text"], "completion": " w5", **{k: r[k] for k in ("source", "origin")}}
                        for r in rows])
    config = sft_config(**{"model.path": str(tiny_model_dir), "data.train": train, "data.synthetic_weight": 0.25,
                           })
    assert row_weights([{"source": "synthetic", "weight": 2}, {"weight": "0.5"}], config.data) == [0.5, 0.5]
    with pytest.raises(ValueError, match="field 'weight'"):
        row_weights([{"weight": -1, "_source": "t.jsonl", "_line": 3}], config.data)
    _, examples = load_split("train", config, load_tokenizer(tiny_model_dir))
    batch = step_batch(Batches(examples, batch_size=13, seq_len=config.data.max_length, seed=0, shuffle=False,
                               num_epochs=1), 1)
    weights = batch["weight"][batch["valid"]]
    # every target token (the completion and EOS: 2 per row) of the 4 synthetic rows at 0.25, of the 9 real at 1
    assert (weights == 0.25).sum() == 2 * 4 and (weights == 1).sum() == 2 * 9 and len(weights) == 26


def test_weighted_loss_is_the_weighted_mean_of_token_losses():
    import jax
    import jax.numpy as jnp

    from ftjax.loss import target_loss_sums, token_nll_hits

    rng = np.random.default_rng(0)
    w_head = jnp.asarray(rng.normal(size=(8, 11)), jnp.float32)
    head = lambda h: h @ w_head
    hidden = jnp.asarray(rng.normal(size=(2, 5, 8)), jnp.float32)
    targets = jnp.asarray(rng.integers(0, 11, (2, 5)), jnp.int32)
    index = jnp.asarray([0, 3, 4, 6, 9, 0], jnp.int32)
    valid = jnp.asarray([1, 1, 1, 1, 1, 0], bool)
    weights = jnp.asarray([1.0, 0.5, 0.0, 2.0, 1.0, 1.0], jnp.float32)
    nll, _ = token_nll_hits(head(hidden.reshape(10, 8)[index]), targets.reshape(-1)[index], 0.0)
    for fused in (False, True):
        total, count, _ = jax.jit(lambda h: target_loss_sums(head, h, targets, index, valid, chunk=4, fused=fused,
                                                             weights=weights))(hidden)
        np.testing.assert_allclose(total, float(jnp.sum(nll * weights * valid)), rtol=1e-5)
        assert float(count) == 4.5
