"""Metrics against the reference libraries (sacrebleu, rouge-score, scikit-learn) and hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sacrebleu
from rouge_score.rouge_scorer import RougeScorer

from ftjax.metrics import (bleu, bootstrap_ci, chrf, classification_statistics, confusion_matrix, encode_labels,
                           exact_match, mean_statistic, metric_report, normalizer, paired_test, ratio_statistic,
                           rouge, statistics, token_f1)
from ftjax.metrics.classification import per_class

HYPS = ["the cat sat on the mat", "a dog barked at the postman today", "hello world", "it is raining again"]
REFS = [["the cat is on the mat", "there is a cat on the mat"], ["the dog barked at the mailman"],
        ["hello there world", "hi world", "hello world !"], ["it rains again"]]


def streams(refs):
    width = max(map(len, refs))
    return [[r[j] if j < len(r) else None for r in refs] for j in range(width)]


def test_normalizer_options():
    assert normalizer("lower,punct,articles,whitespace")("  The Cat, an  owl!  ") == "cat owl"
    assert normalizer("whitespace")("  The Cat,  ") == "The Cat,"
    assert normalizer("punct")("¿qué? «sí»") == "qué sí"  # Unicode punctuation too
    assert normalizer("none")(" A ") == " A "
    with pytest.raises(ValueError, match="unknown normalisation 'stem'"):
        normalizer("lower,stem")


def test_exact_match_and_token_f1_by_hand():
    assert exact_match(["The Cat!", "a dog"], [["cat"], ["dog", "a cat"]]).value == 100.0
    assert exact_match(["The Cat!"], [["cat"]], normalize="whitespace").value == 0.0
    # SQuAD: "the" dropped, pred {cat, sat} vs ref {cat, sat, down}: P = 1, R = 2/3, F1 = 0.8
    assert token_f1(["the cat sat"], [["cat sat down"]]).value == pytest.approx(80.0)
    # best reference counts; both empty is a match, one empty is not
    assert token_f1(["cat sat", "", ""], [["dog", "cat sat"], [""], ["x"]]).value == pytest.approx(100 * 2 / 3)
    with pytest.raises(ValueError, match="at least one reference"):
        exact_match(["x"], [[]])


def test_rouge_matches_rouge_score():
    ours = rouge(HYPS, REFS)
    scorer = RougeScorer(["rouge1", "rouge2", "rougeL"])
    for name, key in (("rouge_1", "rouge1"), ("rouge_2", "rouge2"), ("rouge_l", "rougeL")):
        expected = np.mean([scorer.score_multi(r, h)[key].fmeasure for h, r in zip(HYPS, REFS)]) * 100
        assert ours[name].value == pytest.approx(expected)
    assert rouge(["a b c"], [["a b d"]])["rouge_1"].value == pytest.approx(200 / 3)  # P = R = 2/3


def test_multi_reference_bleu_and_chrf_equal_sacrebleu():
    assert bleu(HYPS, REFS).value == pytest.approx(sacrebleu.corpus_bleu(HYPS, streams(REFS)).score, abs=1e-9)
    assert chrf(HYPS, REFS).value == pytest.approx(sacrebleu.corpus_chrf(HYPS, streams(REFS)).score, abs=1e-9)
    # corpus BLEU is not the mean of sentence BLEU: the statistic recomputes from summed counts
    assert bleu(HYPS[:2], REFS[:2]).value == pytest.approx(
        sacrebleu.corpus_bleu(HYPS[:2], streams(REFS[:2])).score)
    assert bleu(["one two three four five"], [["one two three four five"]]).value == pytest.approx(100.0)


def test_bootstrap_interval_matches_scipy_and_brackets_the_value():
    from scipy.stats import bootstrap

    values = np.random.default_rng(1).random(300) < 0.3
    stat = mean_statistic(values)
    low, high = bootstrap_ci(stat, n_resamples=2000)
    ref = bootstrap((values * 100.0,), np.mean, n_resamples=2000, method="percentile", random_state=0)
    assert low == pytest.approx(ref.confidence_interval.low, abs=1.0)
    assert high == pytest.approx(ref.confidence_interval.high, abs=1.0)
    assert low < stat.value < high
    assert bootstrap_ci(mean_statistic([1, 1, 1])) == (100.0, 100.0)
    lo, hi = bootstrap_ci(bleu(HYPS * 5, REFS * 5), n_resamples=200)
    assert lo <= bleu(HYPS * 5, REFS * 5).value <= hi


def test_perplexity_is_a_corpus_ratio():
    stat = ratio_statistic([2.0, 6.0], [1, 3], math.exp)
    assert stat.value == pytest.approx(math.exp(8 / 4))


def test_paired_test():
    rng = np.random.default_rng(0)
    a = rng.random(200) < 0.4
    same = paired_test(mean_statistic(a), mean_statistic(a), n_resamples=300)
    assert same["delta"] == 0 and same["p_value"] == 1.0
    b = a | (rng.random(200) < 0.4)  # B fixes many of A's misses
    better = paired_test(mean_statistic(a), mean_statistic(b), n_resamples=300)
    assert better["delta"] == pytest.approx(100 * (b.mean() - a.mean()))
    assert better["p_value"] < 0.01 and 0 < better["low"] < better["delta"] < better["high"]
    hyps_b = ["the cat is on the mat", "the dog barked at the mailman", "hello world", "it rains again"]
    corpus = paired_test(bleu(HYPS * 4, REFS * 4), bleu(hyps_b * 4, REFS * 4), n_resamples=300)
    assert corpus["delta"] > 0 and corpus["p_value"] < 0.05
    with pytest.raises(ValueError, match="same examples"):
        paired_test(mean_statistic(a), mean_statistic(a[:10]))


def test_classification_matches_sklearn():
    from sklearn import metrics as skm

    rng = np.random.default_rng(0)
    classes = ["billing", "card_lost", "refund", "top_up", "never_seen"]
    gold = list(rng.choice(classes[:4], 120))
    pred = [g if rng.random() < 0.6 else str(rng.choice(classes[:4] + ["something else"])) for g in gold]
    items = encode_labels(gold, pred, classes)
    stats = classification_statistics(items, len(classes))
    present = [c for c in classes if c in gold or c in pred]  # what sklearn averages over by default
    assert stats["accuracy"].value == pytest.approx(100 * skm.accuracy_score(gold, pred))
    assert stats["macro_f1"].value == pytest.approx(
        100 * skm.f1_score(gold, pred, labels=present, average="macro", zero_division=0))
    p, r, f, s = skm.precision_recall_fscore_support(gold, pred, labels=classes, zero_division=0)
    ours = per_class(confusion_matrix(items, len(classes)))
    np.testing.assert_allclose(ours["precision"], p)
    np.testing.assert_allclose(ours["recall"], r)
    np.testing.assert_allclose(ours["f1"], f)
    np.testing.assert_array_equal(ours["support"], s)
    np.testing.assert_array_equal(confusion_matrix(items, len(classes))[:, :-1],
                                  skm.confusion_matrix(gold, pred, labels=classes))


def test_classification_by_hand_and_report():
    # gold a a b b, predicted a b b (other): accuracy 2/4; a: P 1, R 1/2, F1 2/3; b: P 1/2, R 1/2, F1 1/2
    rows = [{"prediction": p, "references": [g], "label": g} for g, p in
            [("a", " A "), ("a", "b"), ("b", "b"), ("b", "zzz")]]
    report = metric_report(statistics(rows, ["accuracy", "macro_f1"], "lower,whitespace", ["a", "b"]),
                           ["a", "b"], n_resamples=100)
    assert report["metrics"]["accuracy"]["value"] == 50.0
    assert report["metrics"]["macro_f1"]["value"] == pytest.approx(100 * (2 / 3 + 1 / 2) / 2)
    block = report["classification"]
    assert block["confusion_matrix"] == [[1, 1, 0], [0, 1, 1]]
    assert block["per_class"]["a"]["recall"]["value"] == 50.0 and block["per_class"]["b"]["support"] == 2
    assert block["per_class"]["b"]["precision"]["low"] <= 50.0 <= block["per_class"]["b"]["precision"]["high"]
    with pytest.raises(ValueError, match="gold label 'c' is not in the label set"):
        encode_labels(["c"], ["a"], ["a", "b"])
