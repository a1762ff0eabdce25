"""The E2E challenge's metrics equal what its official scoring script (e2e-metrics measure_scores.py, with its
Python mteval port, `-p`) printed for this fixture: five meaning representations of our own with 1-3
references each, and one system output per MR.

    ./measure_scores.py -p refs.txt sys.txt
    BLEU: 0.5579  NIST: 5.4689  METEOR: 0.4598  ROUGE_L: 0.7856  CIDEr: 3.6671
"""

from __future__ import annotations

import pytest

from ftjax.metrics import e2e
from ftjax.metrics.bootstrap import with_ci
from ftjax.metrics.suite import default_metrics, metric_report, statistics

REFERENCES = [
    ["The Golden Palace is a cheap Chinese restaurant in the city centre.",
     "In the city centre there is a low-priced Chinese place called The Golden Palace."],
    ["Blue Spice is a coffee shop near Avalon that is not family-friendly.",
     "Near Avalon, the adult-only coffee shop Blue Spice serves customers.",
     "Blue Spice coffee shop, located near Avalon, does not welcome children."],
    ["The Wrestlers is a highly rated pub by the riverside serving English food.",
     "Serving English food, The Wrestlers is a riverside pub with a 5 out of 5 rating."],
    ["Zizzi is an expensive Italian restaurant near The Bakers with an average customer rating.",
     "Near The Bakers you will find Zizzi, an Italian restaurant with high prices and average ratings."],
    ["Cotto is a family friendly fast food place in riverside.",
     "Cotto serves fast food in the riverside area and is kid friendly.",
     "For families, Cotto by the river offers fast food."],
]
OUTPUTS = [
    "The Golden Palace is a cheap Chinese restaurant in the city centre.",
    "Blue Spice is a coffee shop near Avalon. It is not family-friendly.",
    "The Wrestlers is a pub by the riverside that serves English food and has a high rating.",
    "Zizzi is an Italian restaurant near The Bakers. It is expensive.",
    "Cotto is a fast food restaurant in the riverside area that is family friendly.",
]
OFFICIAL = {"e2e_bleu": 55.79, "nist": 5.4689, "meteor": 45.98, "e2e_rouge_l": 78.56, "cider": 3.6671}


def test_bleu_and_nist_equal_the_official_script():
    assert e2e.e2e_bleu(OUTPUTS, REFERENCES).value == pytest.approx(OFFICIAL["e2e_bleu"], abs=0.005)
    assert e2e.nist(OUTPUTS, REFERENCES).value == pytest.approx(OFFICIAL["nist"], abs=5e-5)
    # case does not matter, as in mteval-v13a without -c
    assert e2e.nist([o.upper() for o in OUTPUTS], REFERENCES).value == pytest.approx(OFFICIAL["nist"], abs=5e-5)


def test_a_perfect_output_scores_the_maximum():
    refs = [["the eagle is a pub"], ["zizzi serves wine"]]
    outs = ["the eagle is a pub", "zizzi serves wine"]
    assert e2e.e2e_bleu(outs, refs).value == pytest.approx(100.0)
    # NIST of an exact match: the information of every reference n-gram, over the system n-gram count
    assert e2e.nist(outs, refs).value > e2e.nist(["the eagle", "zizzi"], refs).value


@pytest.mark.skipif(e2e.available() is not None, reason=str(e2e.available()))
def test_meteor_rouge_l_and_cider_equal_the_official_script():
    rows = [{"prediction": o, "references": r} for o, r in zip(OUTPUTS, REFERENCES)]
    names = ["e2e_bleu", "nist", "meteor", "e2e_rouge_l", "cider"]
    stats = statistics(rows, names)
    for name in names:
        assert stats[name].value == pytest.approx(OFFICIAL[name], abs=0.005 if name != "nist" else 5e-5), name
    report = metric_report(stats, n_resamples=200)["metrics"]
    assert "low" not in report["meteor"]  # the Java aggregate is not resampled
    assert report["cider"]["low"] <= OFFICIAL["cider"] <= report["cider"]["high"]
    assert with_ci(stats["nist"], 200)["low"] <= OFFICIAL["nist"]


def test_data_to_text_defaults_hold_the_five_metrics_and_the_slot_error_rate():
    names = default_metrics("data_to_text")
    assert {"e2e_bleu", "nist", "slot_error_rate"} <= set(names)
    assert set(e2e.COCO) <= set(names) or e2e.available() is not None
