"""Generation constrained to a label set: the trie holds exactly its sequences, constrained greedy decoding equals
a step-by-step argmax over the allowed tokens (recomputed without a cache), keeps to the set, and leaves outputs
that are already in it alone; `eval.constrain=labels` generates only labels."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import sft_config

import ftjax.models as M
from ftjax.eval.config import check
from ftjax.eval.runner import evaluate_split, label_trie
from ftjax.models.generate import Sampling, generate
from ftjax.models.tokenizer import load_tokenizer
from ftjax.models.trie import token_trie

PROMPTS = [[5, 17, 33, 8, 99, 4, 61], [7, 3], [12, 40, 41, 42, 9], [60, 61]]
EOS = 2


def paths(trie, node=0, prefix=()):
    """Every token sequence the trie spells from `node` to a leaf."""
    kids = {int(t): int(n) for t, n in zip(trie.tokens[node], trie.next[node]) if n != node}
    if not kids:
        return [prefix]
    return [p for t, n in kids.items() for p in paths(trie, n, prefix + (t,))]


def test_trie_spells_exactly_its_sequences():
    seqs = [[5, 9, EOS], [5, 9, 7, EOS], [5, 7, EOS], [8, EOS], [9, 9, 9, 9, EOS]]
    trie = token_trie(seqs)
    assert sorted(paths(trie)) == sorted(map(tuple, seqs)) and trie.depth == 5
    for bad in ([], [[5, EOS], []], [[5, EOS], [5, EOS]]):
        with pytest.raises(ValueError):
            token_trie(bad)


def reference_constrained(model, prompt, seqs):
    """Greedy over the allowed next tokens, the whole sequence recomputed at every step (no cache, no padding)."""
    out: list[int] = []
    while True:
        allowed = {s[len(out)] for s in seqs if len(s) > len(out) and list(s[:len(out)]) == out}
        if not allowed:
            return out
        logits = np.asarray(model(np.asarray([prompt + out], np.int32)))[0, -1]
        tok = max(allowed, key=lambda t: logits[t])
        if tok == EOS:
            return out
        out.append(tok)


@pytest.mark.parametrize("family", ["llama", "gemma3_text"])
def test_constrained_greedy_equals_reference_and_keeps_to_the_set(family, hf_folder):
    model = M.from_pretrained(hf_folder(family)[1])
    free = generate(model, PROMPTS, Sampling(max_new_tokens=4))
    # labels the free run would not produce, sharing prefixes, of different lengths
    seqs = [[11, 12, EOS], [11, 13, 14, EOS], [20, EOS], [free[1][0] + 1, 30, EOS]]
    trie = token_trie(seqs)
    ours = generate(model, PROMPTS, Sampling(max_new_tokens=trie.depth, stop_token_ids=(EOS,)), allowed=trie)
    assert ours == [reference_constrained(model, p, seqs) for p in PROMPTS]
    assert all(o + [EOS] in seqs for o in ours)
    # outputs already in the set are left alone: constrain to the free outputs themselves (+ another label),
    # each ended by a stop token that none of them contains
    stop = next(t for t in range(3, 131) if all(t not in f[:3] for f in free))
    seqs = {tuple(f[:3]) + (stop,) for f in free} | {(11, 12, stop)}
    trie = token_trie([list(s) for s in seqs])
    constrained = generate(model, PROMPTS, Sampling(max_new_tokens=4, stop_token_ids=(stop,)), allowed=trie)
    assert constrained == [f[:3] for f in free]


def test_eval_constrain_labels_generates_only_labels(tiny_model_dir, tmp_path):
    model, tok = M.from_pretrained(tiny_model_dir), load_tokenizer(tiny_model_dir)
    labels = ["w5 w6", "w5 w7 w8", "w9", "w10 w11"]
    rows = [{"text": f"w{20 + i} w{30 + i}", "label": labels[i % 4]} for i in range(10)]
    config = sft_config(**{"data.labels": ",".join(labels), "eval.constrain": "labels"})
    report, preds = evaluate_split(model, tok, rows, config, metrics=["accuracy"], n_resamples=0, progress=False)
    assert all(p["prediction"] in labels for p in preds)
    assert report["settings"]["decoding"] == "greedy, constrained to the 4 labels"
    assert report["settings"]["max_new_tokens"] == 4  # the longest label's 3 tokens and EOS
    _, free = evaluate_split(model, tok, rows, sft_config(**{"data.labels": ",".join(labels)}), metrics=["accuracy"],
                             n_resamples=0, progress=False)
    assert any(p["prediction"] not in labels for p in free)  # a random model left alone does not
    with pytest.raises(ValueError, match="tokenize alike"):
        label_trie(tok, ["w5", " w5"], "classification")
    with pytest.raises(ValueError, match="text,label rows"):
        evaluate_split(model, tok, [{"prompt": "w3", "completion": "w4"}], config, progress=False)


@pytest.mark.parametrize("bad, message", [(dict(constrain="label"), "choose from"),
                                          (dict(constrain="labels", num_beams=4), "num_beams=1")])
def test_bad_constrain_settings_are_one_line_errors(bad, message):
    config = sft_config(**{f"eval.{k}": v for k, v in bad.items()})
    with pytest.raises(ValueError, match=message):
        check(config.eval)
