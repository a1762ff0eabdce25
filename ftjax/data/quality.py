"""Text normalisation (for duplicate detection) and the length and quality filters of `ftjax data curate`."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

_SPACE = re.compile(r"\s+")


def normalize(text: str) -> str:
    """Unicode-compatible, case-folded, punctuation-free, single-spaced: `Where's my CARD?!` -> `wheres my card`.
    Symbols stay (`£1` and `€1` differ)."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = "".join(c for c in text if not unicodedata.category(c).startswith("P"))
    return _SPACE.sub(" ", text).strip()


@dataclass(frozen=True)
class Filters:
    """Limits in characters; 0 switches a limit off."""

    min_target_chars: int = 1  # below: "short_target" (0 characters: "empty_target")
    min_input_chars: int = 1  # below: "short_input"
    max_chars: int = 0  # input + target above: "too_long"
    max_char_run: int = 20  # the same character this many times in a row: "repeated_chars"
    min_letter_ratio: float = 0.5  # letters among non-space characters below: "non_text"

    def problem(self, input_text: str, target: str) -> str | None:
        """The first reason to drop an example, or None."""
        t = target.strip()
        if not t:
            return "empty_target"
        if len(t) < self.min_target_chars:
            return "short_target"
        if len(input_text.strip()) < self.min_input_chars:
            return "short_input"
        if self.max_chars and len(input_text) + len(target) > self.max_chars:
            return "too_long"
        both = f"{input_text}\n{target}"
        if self.max_char_run and re.search(r"(\S)\1{%d,}" % (self.max_char_run - 1), both):
            return "repeated_chars"
        if not looks_like_text(both, self.min_letter_ratio):
            return "non_text"
        return None


REASONS = {
    "empty_target": "target is empty",
    "short_target": "target shorter than --min_target_chars",
    "short_input": "input shorter than --min_input_chars",
    "too_long": "input + target longer than --max_chars",
    "repeated_chars": "a character repeated --max_char_run times in a row",
    "non_text": "control characters, U+FFFD, or too few letters (--min_letter_ratio)",
    "exact_duplicate": "same normalised text as an earlier row",
    "near_duplicate": "MinHash Jaccard similarity >= --near_threshold with an earlier row",
}


def looks_like_text(text: str, min_letter_ratio: float) -> bool:
    """False for binary junk (control characters, decoding errors) and for strings of mostly digits/symbols."""
    if "\ufffd" in text or any(unicodedata.category(c) == "Cc" and c not in "\n\r\t" for c in text):
        return False
    chars = [c for c in text if not c.isspace()]
    letters = sum(c.isalpha() for c in chars)
    return not chars or letters / len(chars) >= min_letter_ratio

