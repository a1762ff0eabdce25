"""Slot error rate of data-to-text outputs (E2E NLG): how many of the meaning representation's facts the text
leaves out or contradicts, and how many facts it adds, per slot of the MR. The hallucination measure.

An E2E MR is `name[The Eagle], eatType[coffee shop], familyFriendly[yes], ...`. Each slot's value is looked for
in the text with the surface forms people write for it (E2E's eight attributes; `name`/`near` verbatim, with
the `X`-delexicalised form too); a value of the same attribute other than the MR's counts as wrong, so does the
MR's own value under a negation ("is not a coffee shop"; another value negated, "not a pub", is no claim), and a
mention of an attribute the MR does not have counts as added. SER = (missing + wrong + added) / MR slots, as in
the E2E challenge's analyses (Dušek et al. 2020); the patterns are ours, written for this module.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from ftjax.metrics.bootstrap import Statistic, ratio_statistic


def _stars(n: int, word: str) -> tuple[str, ...]:
    """Forms of an `N out of 5` rating: "3 out of 5", "three out of five", "3/5", "3 of 5", "3-star", and
    "rating is 3" / "rated 3" without a scale."""
    number = rf"\b({n}|{word})"
    return (rf"{number} ?(out of|of|/) ?(5|five)\b", rf"{number}[- ]stars?\b",
            rf"rat(ing|ed) (is |of )?{number}\b(?! ?(out of|of|/|[.,]\d))")


SLOT = re.compile(r"\s*([^\[\],]+?)\s*\[([^\]]*)\]")
# attribute -> value -> patterns of its surface forms (searched in the lower-cased text)
FORMS: dict[str, dict[str, tuple[str, ...]]] = {
    "eatType": {"coffee shop": (r"coffee[- ]?shop", r"\bcaf[eé]\b"), "pub": (r"\bpubs?\b",),
                "restaurant": (r"restaurant",)},
    "food": {f: (rf"\b{f.lower()}\b",) for f in ("Chinese", "French", "Indian", "Italian", "Japanese")}
    | {"English": (r"\benglish\b", r"\bbritish\b"), "Fast food": (r"fast[- ]food",)},
    "priceRange": {"cheap": (r"\bcheap", r"inexpensive", r"low[- ]pric", r"affordabl", r"pric\w* (range )?(is )?low"),
                   "moderate": (r"moderate", r"average[- ]pric", r"mid[- ]range", r"pric\w* (range )?(is )?average"),
                   "high": (r"\bexpensive", r"high[- ]pric", r"\bpricey", r"high[- ]end",
                            r"pric\w* (range )?(is )?high"),
                   "less than £20": (r"(less than|under|below) (£|l)?20",),
                   "£20-25": (r"£?20 ?(-|to|and) ?£?25",),
                   "more than £30": (r"(more than|over|above) (£|l)?30",)},
    "customer rating": {"low": (r"low(ly)?[- ](customer )?rat", r"rat\w* (is |of )?(an? )?(very )?(low|poor)",
                                r"poor(ly)?[- ](customer )?rat"),
                        "average": (r"average[- ](customer )?rat", r"rat\w* (is |of )?(an? )?average"),
                        "high": (r"high(ly)?[- ](customer )?rat", r"rat\w* (is |of )?(an? )?(very )?high",
                                 r"excellent (customer )?rat"),
                        **{f"{n} out of 5": _stars(n, word) for n, word in ((1, "one"), (3, "three"), (5, "five"))}},
    "area": {"riverside": (r"river",), "city centre": (r"\bcent(re|er)\b", r"\bcentral\b", r"downtown")},
    "familyFriendly": {"yes": (r"(?<!not )(?<!n't )(family|kid|child(ren)?)[- ]friendly", r"for (the )?(whole )?famil",
                               r"welcomes? (families|children|kids)"),
                       "no": (r"(not|n't|non|isn't|no)[- ](very )?(family|kid|child(ren)?)[- ]friendly",
                              r"not (suitable|good|ideal|recommended) for (families|children|kids)",
                              r"\badults?[- ]only\b", r"no (children|kids|families)")}}


def parse_mr(mr: str) -> dict[str, str]:
    """{attribute: value} of an E2E meaning representation; a ValueError for text that is not one."""
    slots = {k.strip(): v.strip() for k, v in SLOT.findall(mr)}
    if not slots:
        raise ValueError(f"not an E2E meaning representation (attribute[value], ...): {mr[:80]!r}")
    return slots


# values of one attribute that say the same thing, so naming both is no contradiction
SAME = {("priceRange", "cheap"): "less than £20", ("priceRange", "moderate"): "£20-25",
        ("priceRange", "high"): "more than £30", ("customer rating", "low"): "1 out of 5",
        ("customer rating", "average"): "3 out of 5", ("customer rating", "high"): "5 out of 5"}
SAME |= {(a, w): v for (a, v), w in SAME.items()}


# a negation at most two words before a mention ("is not a coffee shop", "doesn't serve Chinese food"), but not
# "not far from" or "not only"; familyFriendly's values carry their own negation, so it is left out
NEGATED = re.compile(r"(\bnot|n't|\bnever|\bno)(?! (far|only)\b)( [\w£-]+){0,2} $")


def _mentions(text: str, attribute: str, value: str) -> tuple[bool, bool]:
    """(affirmed, negated): whether the text mentions the value plainly, and under a negation."""
    if attribute in ("name", "near"):
        return value.lower() in text or "x" + attribute in text, False  # also delexicalised outputs
    forms = FORMS.get(attribute, {}).get(value, (re.escape(value.lower()),))
    affirmed = negated = False
    for match in (m for p in forms for m in re.finditer(p, text)):
        if attribute != "familyFriendly" and NEGATED.search(text[max(0, match.start() - 40):match.start()]):
            negated = True
        else:
            affirmed = True
    return affirmed, negated


def _mentioned(text: str, attribute: str, value: str) -> bool:
    return _mentions(text, attribute, value)[0]


def said(text: str, attribute: str, value: str) -> set[str]:
    """The values of `attribute` the (lower-cased) text mentions; `value` is the MR's (for name and near,
    whose values are open-ended)."""
    if attribute not in FORMS:
        return {value} if _mentioned(text, attribute, value) else set()
    found = {v for v in FORMS[attribute] if _mentioned(text, attribute, v)}
    if attribute == "familyFriendly" and "no" in found:  # "not family friendly" also reads as "family friendly"
        found.discard("yes")
    return found


def slot_errors(mr: str, text: str) -> tuple[int, int, int, int]:
    """(missing, wrong, added, slots) of one output: MR facts absent, facts contradicted (another value of the
    attribute, with or without the right one), and attributes the MR does not have."""
    slots, text = parse_mr(mr), " ".join(text.lower().split())
    missing = wrong = 0
    for attribute, value in slots.items():
        found = {value if SAME.get((attribute, v)) == value else v for v in said(text, attribute, value)}
        denied = _mentions(text, attribute, value)[1]  # "is not a coffee shop" for eatType[coffee shop]
        missing += not found and not denied
        wrong += bool(found - {value}) or denied
    added = sum(1 for attribute in FORMS if attribute not in slots and said(text, attribute, ""))
    return missing, wrong, added, len(slots)


def slot_error_rate(mrs: Sequence[str], predictions: Sequence[str]) -> Statistic:
    """Corpus SER in percent: (missing + wrong + added) summed over outputs / MR slots summed; per example
    (errors, slots) for bootstrap intervals."""
    counts = np.asarray([slot_errors(m, p) for m, p in zip(mrs, predictions)], float).reshape(-1, 4)
    return ratio_statistic(counts[:, :3].sum(1) * 100.0, counts[:, 3])


def fewest_slot_errors(mr: str, candidates: Sequence[str]) -> int:
    """Index of the candidate text with the fewest slot errors (missing + wrong + added) against `mr`; the first
    such, so ties keep the candidates' order (a beam's score order)."""
    return min(range(len(candidates)), key=lambda i: sum(slot_errors(mr, candidates[i])[:3]))
