"""Slot error rate: each E2E attribute's facts found, missed, contradicted or added, on hand-checked outputs."""

from __future__ import annotations

import pytest

from ftjax.metrics import metric_report, statistics
from ftjax.metrics.slots import fewest_slot_errors, parse_mr, slot_errors

MR = ("name[The Eagle], eatType[coffee shop], food[French], priceRange[moderate], customer rating[3 out of 5], "
      "area[riverside], familyFriendly[yes], near[Burger King]")

# (mr, output, (missing, wrong, added, slots)), counted by hand
CASES = [
    (MR, "The Eagle is a family friendly coffee shop serving French food at moderate prices, rated 3 out of 5, "
         "by the riverside near Burger King.", (0, 0, 0, 8)),
    (MR, "The Eagle is a coffee shop near Burger King. It is not family friendly and serves Italian food.",
     (3, 2, 0, 8)),  # price, rating and area missing; family-friendliness and food contradicted
    ("name[Alimentum], area[city centre]", "Alimentum is a cheap pub in the city centre.", (0, 0, 2, 2)),
    ("name[X1], priceRange[moderate]", "X1 costs £20-25.", (0, 0, 0, 2)),  # the same price, said in pounds
    ("name[X1], priceRange[cheap]", "X1 is expensive.", (0, 1, 0, 2)),
    ("name[Loch Fyne], familyFriendly[no]", "Loch Fyne is not kid friendly.", (0, 0, 0, 2)),
    ("name[Loch Fyne], familyFriendly[no]", "Loch Fyne is kid friendly.", (0, 1, 0, 2)),
    ("name[Zizzi], customer rating[high]", "Zizzi has a high customer rating.", (0, 0, 0, 2)),
    # an N out of 5 rating in words, without the space, or without the scale; "rated one of the best" is none
    ("name[Zizzi], customer rating[3 out of 5]", "Zizzi is rated three out of five.", (0, 0, 0, 2)),
    ("name[Zizzi], customer rating[1 out of 5]", "Zizzi's customer rating is 1 of 5, or 1 out of5.", (0, 0, 0, 2)),
    ("name[Zizzi], customer rating[5 out of 5]", "Zizzi has a customer rating of 5.", (0, 0, 0, 2)),
    ("name[Zizzi], customer rating[5 out of 5]", "Zizzi is rated 3 out of five.", (0, 1, 0, 2)),
    ("name[Zizzi], customer rating[5 out of 5]", "Zizzi is rated one of the best.", (1, 0, 0, 2)),
    ("name[Zizzi], customer rating[high]", "The restaurant has a high customer rating.", (1, 0, 1, 2)),
    ("name[Zizzi], near[The Sorrento]", "xname is near xnear.", (0, 0, 0, 2)),  # delexicalised output
    # the MR's own value denied: a contradiction, alone or beside the plain mention
    ("name[X1], eatType[coffee shop]", "X1 is a coffee shop. It is not a coffee shop.", (0, 1, 0, 2)),
    ("name[X1], food[Chinese]", "X1 doesn't serve Chinese food.", (0, 1, 0, 2)),
    ("name[X1], eatType[coffee shop]", "X1 is a coffee shop, not a pub.", (0, 0, 0, 2)),  # another value denied
    ("name[X1], area[riverside]", "X1 is not far from the river.", (0, 0, 0, 2)),
]


@pytest.mark.parametrize("mr, text, counts", CASES)
def test_slot_errors_by_hand(mr, text, counts):
    assert slot_errors(mr, text) == counts


def test_corpus_rate_and_interval():
    rows = [{"prompt": mr, "prediction": text, "references": [""]} for mr, text, _ in CASES]
    report = metric_report(statistics(rows, ["slot_error_rate"]), n_resamples=200)["metrics"]["slot_error_rate"]
    errors = sum(sum(c[:3]) for *_, c in CASES)
    slots = sum(c[3] for *_, c in CASES)
    assert report["value"] == pytest.approx(100 * errors / slots)
    assert report["low"] <= report["value"] <= report["high"]


def test_parse_mr_rejects_text():
    assert parse_mr("name[A], area[riverside]") == {"name": "A", "area": "riverside"}
    with pytest.raises(ValueError, match="not an E2E meaning representation"):
        parse_mr("just a sentence")


def test_fewest_slot_errors_picks_the_most_faithful_candidate_ties_in_order():
    mr = "name[X1], eatType[pub], area[riverside]"
    candidates = ["X1 is a pub.", "X1 is a coffee shop by the riverside.", "X1 is a pub by the riverside.",
                  "By the riverside, X1 is a pub."]
    assert [sum(slot_errors(mr, c)[:3]) for c in candidates] == [1, 1, 0, 0]
    assert fewest_slot_errors(mr, candidates) == 2  # the first of the two faithful ones
    assert fewest_slot_errors(mr, candidates[:2]) == 0  # a tie keeps the beam's order
