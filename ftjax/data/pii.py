"""Find and mask personal data: email addresses, payment-card numbers (Luhn-checked) and phone numbers.

Patterns are deliberately conservative (a card must pass the Luhn check, a phone needs 10-15 digits) so that
amounts, dates and reference numbers are left alone. Masks: [EMAIL], [CARD], [PHONE].
"""

from __future__ import annotations

import re
from collections import Counter

EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?![\w-])")
CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
PHONE = re.compile(r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{2,5}(?:[ .-]?\d{2,5}){1,4}(?![\w-])")
KINDS = ("email", "card", "phone")


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, d in enumerate(reversed(digits)):
        n = int(d) * (2 if i % 2 else 1)
        total += n - 9 if n > 9 else n
    return total % 10 == 0


def _card(m: re.Match) -> str | None:
    digits = re.sub(r"\D", "", m.group())
    return "[CARD]" if 13 <= len(digits) <= 19 and luhn_ok(digits) else None


def _phone(m: re.Match) -> str | None:
    digits = re.sub(r"\D", "", m.group())
    return "[PHONE]" if 10 <= len(digits) <= 15 else None


def scrub(text: str) -> tuple[str, Counter]:
    """The text with personal data masked, and how many of each kind were found. Cards go before phones so a
    card number is never counted as a phone."""
    counts: Counter = Counter()

    def masker(kind: str, check):
        def sub(m: re.Match) -> str:
            mask = check(m)
            if mask is None:
                return m.group()
            counts[kind] += 1
            return mask
        return sub

    text = EMAIL.sub(masker("email", lambda m: "[EMAIL]"), text)
    text = CARD.sub(masker("card", _card), text)
    text = PHONE.sub(masker("phone", _phone), text)
    return text, counts
