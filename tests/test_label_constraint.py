"""`eval.constrain=labels`: a generated label that is no label is replaced by the label the model finds likeliest
(checked against log-probabilities from a plain forward pass); outputs that are labels stay as generated.
`eval.constrain=rank`: every prediction is the likeliest label (rank classification), scored with each prompt's
KV cache shared by all labels and equal to scoring each prompt + label pair on its own."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest
from conftest import forward_logits, sft_config

import ftjax.models as M
from ftjax.eval.config import check
from ftjax.eval.runner import evaluate_split, labels_only, likeliest_labels
from ftjax.eval.scoring import label_nll, length_groups, sequence_nll
from ftjax.metrics.text import normalizer
from ftjax.models.tokenizer import encode_prompt, load_tokenizer

LABELS = ["w5 w6", "w5 w7 w8", "w9", "w10 w11"]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return M.from_pretrained(tiny_model_dir), load_tokenizer(tiny_model_dir)


def reference_likeliest(model, tok, prompt, labels):
    """The label maximising log p(label tokens, EOS | prompt), each scored by its own unpadded forward pass."""
    scores = []
    for label in labels:
        target = tok(label, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        ids = np.asarray([prompt + target], np.int32)
        logp = forward_logits(model, ids).astype(np.float64)[0]
        logp = logp - np.log(np.exp(logp - logp.max(-1, keepdims=True)).sum(-1, keepdims=True)) - logp.max(-1, keepdims=True)
        scores.append(sum(logp[len(prompt) - 1 + k, t] for k, t in enumerate(target)))
    return labels[int(np.argmax(scores))]


def test_likeliest_label_equals_a_plain_forward_pass(tiny):
    model, tok = tiny
    prompts = [encode_prompt(tok, f"w{20 + i} w{40 + 3 * i} w{60 - i}") for i in range(8)]
    labels = [f"w{i} w{i + 50}" for i in range(60, 72)]  # one length, so that prompts decide the races
    picked = likeliest_labels(model, tok, prompts, labels, batch_size=8)
    assert picked == [reference_likeliest(model, tok, p, labels) for p in prompts]
    assert len(set(picked)) > 1  # the prompts matter, so the comparison is not trivially one label


@pytest.mark.parametrize("scanned", [False, True])
def test_label_nll_with_a_shared_prompt_cache_equals_scoring_each_pair(tiny_model_dir, scanned):
    from ftjax.models import scan

    model = M.from_pretrained(tiny_model_dir)
    if scanned:
        scan.stack_blocks(model)
    prompts = [[5, 9, 13], [7] * 11, [21, 4], list(range(30, 47))]  # widths that need left padding
    targets = [[3, 2], [8, 9, 10, 2], [2], [40, 41, 42, 43, 44, 2]]  # labels of 1 to 6 tokens
    examples = [{"input_ids": [*p, *t], "loss_mask": [0] * len(p) + [1] * len(t)} for p in prompts for t in targets]
    want, _ = sequence_nll(model, examples, 4, progress=False)
    got = label_nll(model, prompts, targets, rows=8)  # 2 prompts a batch: the last batch padded too
    np.testing.assert_allclose(got, want.reshape(len(prompts), len(targets)), rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError, match="at least one token"):
        label_nll(model, prompts, [[3], []])


def test_length_groups_pad_least_and_cover_every_target_once():
    def positions(lengths, groups):
        return sum(len(g) * (max(lengths[i] for i in g) - 1) for g in groups)

    rng = np.random.default_rng(0)
    for _ in range(50):
        lengths = rng.integers(1, 10, rng.integers(1, 8)).tolist()
        groups = length_groups(lengths)
        assert sorted(i for g in groups for i in g) == list(range(len(lengths))) and len(groups) <= 3
        order = sorted(range(len(lengths)), key=lambda i: lengths[i])
        cuts = [c for r in range(3) for c in itertools.combinations(range(1, len(lengths)), r)]
        fewest = min(positions(lengths, [order[a:b] for a, b in zip((0, *c), (*c, len(lengths)))]) for c in cuts)
        assert positions(lengths, groups) == fewest
    assert length_groups([2, 2, 2]) == [[0, 1, 2]]  # nothing to save: one group, one pass over the prompts
    assert length_groups([3, 17, 3], most=1) == [[0, 2, 1]]


def test_labels_stay_and_non_labels_are_replaced(tiny):
    model, tok = tiny
    prompts = [encode_prompt(tok, f"w{20 + i} w{30 + i}") for i in range(4)]
    texts = ["W9.", "w12 w13", "w5 w7 w8", "w5"]  # the first matches "w9" after normalisation
    out, replaced = labels_only(model, tok, prompts, texts, LABELS, normalizer("lower,punct,articles,whitespace"), 4)
    assert replaced == [1, 3] and out[0] == "W9." and out[2] == "w5 w7 w8"
    assert [out[1], out[3]] == likeliest_labels(model, tok, [prompts[1], prompts[3]], LABELS, 4)


def test_eval_constrain_labels_predicts_only_labels(tiny):
    model, tok = tiny
    rows = [{"text": f"w{20 + i} w{30 + i}", "label": LABELS[i % 4]} for i in range(10)]
    overrides = {"data.labels": ",".join(LABELS)}
    _, free = evaluate_split(model, tok, rows, sft_config(**overrides), metrics=["accuracy"], n_resamples=0,
                             progress=False)
    report, preds = evaluate_split(model, tok, rows, sft_config(**overrides, **{"eval.constrain": "labels"}),
                                   metrics=["accuracy"], n_resamples=0, progress=False)
    assert all(p["prediction"] in LABELS for p in preds)
    changed = [p for p in preds if "generated" in p]
    assert changed and report["constrain"]["outputs_replaced"] == len(changed)  # a random model writes non-labels
    assert [p["generated"] for p in changed] == [f["prediction"] for f in free if f["prediction"] not in LABELS]
    assert report["settings"]["decoding"] == "greedy; an output that is no label replaced by the likeliest label"


def test_eval_constrain_rank_predicts_the_likeliest_label_for_every_row(tiny):
    model, tok = tiny
    rows = [{"text": f"w{20 + i} w{30 + i}", "label": LABELS[i % 4]} for i in range(10)]
    config = sft_config(**{"data.labels": ",".join(LABELS), "eval.constrain": "rank"})
    report, preds = evaluate_split(model, tok, rows, config, metrics=["accuracy"], n_resamples=0, progress=False)
    prompts = [encode_prompt(tok, r["text"]) for r in rows]
    assert [p["prediction"] for p in preds] == [reference_likeliest(model, tok, q, LABELS) for q in prompts]
    assert report["settings"]["decoding"] == "rank classification: the likeliest of the 4 labels"
    assert report["timing"]["generated_tokens"] == 0
    assert not any("generated" in p for p in preds)


def test_constrain_errors_are_one_line(tiny):
    model, tok = tiny
    with pytest.raises(ValueError, match="choose from"):
        check(sft_config(**{"eval.constrain": "label"}).eval)
    config = sft_config(**{"eval.constrain": "labels"})
    with pytest.raises(ValueError, match="needs the label set"):
        evaluate_split(model, tok, [{"text": "w3", "label": "w4"}], config, progress=False)
    with pytest.raises(ValueError, match="text,label rows"):
        evaluate_split(model, tok, [{"prompt": "w3", "completion": "w4"}], config, progress=False)


def test_monitor_predicts_the_labels_eval_predicts(tiny):
    from ftjax.monitor.model_view import ModelView

    model, tok = tiny
    rows = [{"text": f"w{20 + i} w{30 + i}", "label": LABELS[i % 4]} for i in range(6)]
    config = sft_config(**{"data.labels": ",".join(LABELS), "eval.constrain": "labels"})
    _, preds = evaluate_split(model, tok, rows, config, metrics=["accuracy"], n_resamples=0, progress=False)
    assert ModelView(model, tok, config).predict([r["text"] for r in rows]) == [p["prediction"] for p in preds]


@pytest.mark.parametrize("setting, rows, message", [
    ("constrain=labels", [{"prompt": "w3", "completion": "w4"}], r"\(text,label rows\); got prompt_completion rows"),
    ("constrain=rank", [{"prompt": "w3", "completion": "w4"}], r"\(text,label rows\); got prompt_completion rows"),
    ("constrain=rank", [{"text": "w3", "label": "w4"}], "needs the label set"),
    ("constrain=labels", [{"text": "w3", "label": "w4"}], "needs the label set"),
    ("rerank=slots", [{"text": "w3", "label": "w4"}], r"\(mr,ref rows\); got classification rows")])
def test_eval_command_refuses_unfit_decoding_before_loading_a_model(tmp_path, setting, rows, message):
    from conftest import run_ftjax, write_rows

    rows_file = write_rows(tmp_path / "rows.jsonl", rows)
    extra = ["--config.eval.num_beams=2"] if setting.startswith("rerank") else []
    proc = run_ftjax("eval", f"--model={tmp_path / 'no-such-model'}", f"--out={tmp_path / 'out'}",
                     f"--config.data.test={rows_file}", f"--config.eval.{setting}", *extra, check=False)
    assert proc.returncode != 0 and not (tmp_path / "out").exists()
    assert re.search(message, proc.stderr.strip().splitlines()[-1])  # the rows' fault, not the missing model
