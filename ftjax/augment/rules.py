"""Rule-based augmentation without a model, for robustness sets: controlled noise (typos, casing, punctuation)
and swaps from user lists (synonyms, entities). Seeded per row, so a rerun writes the same rows.

A synonym file is JSON `{"word": ["alternative", ...]}` (a swap picks among the word and its alternatives); an
entity file is JSON `[["London", "Paris", ...], ["Visa", "Mastercard"], ...]`: any member of a group may replace
another. Matching is whole-word and case-insensitive; a replacement keeps a capitalised word capitalised.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Sequence
from pathlib import Path

import numpy as np

NOISE = ("typos", "casing", "punctuation")
_KEYBOARD = ["qwertyuiop", "asdfghjkl", "zxcvbnm"]  # neighbours on a QWERTY keyboard, for substitution typos


def _neighbours() -> dict[str, str]:
    near = {}
    for r, row in enumerate(_KEYBOARD):
        for c, ch in enumerate(row):
            around = [row[c + d] for d in (-1, 1) if 0 <= c + d < len(row)]
            around += [_KEYBOARD[r + d][c] for d in (-1, 1) if 0 <= r + d < 3 and c < len(_KEYBOARD[r + d])]
            near[ch] = "".join(around)
    return near


NEAR = _neighbours()


def typo(word: str, rng: np.random.Generator) -> str:
    """One edit inside a word of 3+ letters: swap two neighbours, drop, or hit a neighbouring key; a doubled
    letter when the edit would change nothing (a swap of equal letters)."""
    if len(word) < 3 or not word.isalpha():
        return word
    i = int(rng.integers(1, len(word) - 1))  # keep the first letter: people rarely mistype it
    kind = rng.integers(3)
    if kind == 0:
        out = word[:i] + word[i + 1] + word[i] + word[i + 2:]
    elif kind == 1:
        out = word[:i] + word[i + 1:]
    else:
        options = NEAR.get(word[i].lower(), "")
        out = word[:i] + (options[rng.integers(len(options))] if options else word[i]) + word[i + 1:]
    return out if out != word else word[:i] + word[i] + word[i:]


def noise(text: str, kinds: Sequence[str], rate: float, rng: np.random.Generator) -> str:
    """`text` with each kind applied: typos in about `rate` of the words, the casing changed (all lower, all
    upper or the first letter flipped), or punctuation dropped / a final one added or swapped."""
    unknown = set(kinds) - set(NOISE)
    if unknown:
        raise ValueError(f"unknown noise kind(s) {sorted(unknown)}; choose from: {', '.join(NOISE)}")
    if "typos" in kinds:
        words = text.split(" ")
        can = [i for i, w in enumerate(words) if len(w) >= 3 and w.isalpha()]
        hit = {i for i in can if rng.random() < rate}
        if can and not hit:  # at least one typo, or the row would equal its seed
            hit = {can[rng.integers(len(can))]}
        text = " ".join(typo(w, rng) if i in hit else w for i, w in enumerate(words))
    if "casing" in kinds:
        style = rng.integers(3)
        text = text.lower() if style == 0 else text.upper() if style == 1 else text[:1].swapcase() + text[1:]
    if "punctuation" in kinds:
        stripped = text.rstrip(string.punctuation)
        if rng.random() < 0.5 or stripped == text:
            text = stripped + "?!."[rng.integers(3)]
        else:
            text = "".join(c for c in text if c not in string.punctuation)
    return text


def load_swaps(synonyms: str = "", entities: str = "") -> dict[str, list[str]]:
    """word (lower case) -> words it may become, from a synonym file and an entity file (either may be empty)."""
    table: dict[str, set[str]] = {}
    if synonyms:
        data = _read(synonyms)
        if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
            raise ValueError(f"{synonyms}: expected a JSON object of word -> list of alternatives")
        for word, alts in data.items():
            table.setdefault(word.lower(), set()).update(str(a) for a in alts)
    if entities:
        data = _read(entities)
        if not isinstance(data, list) or not all(isinstance(g, list) for g in data):
            raise ValueError(f"{entities}: expected a JSON list of groups (lists) of interchangeable entities")
        for group in data:
            for member in group:
                table.setdefault(str(member).lower(), set()).update(str(m) for m in group if m != member)
    return {k: sorted(v - {k}) for k, v in table.items() if v - {k}}


def _read(path: str) -> object:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no such file: {p}")
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{p}:{e.lineno}: not valid JSON ({e.msg})") from None


def swap(text: str, table: dict[str, list[str]], rng: np.random.Generator) -> str:
    """`text` with one listed word or phrase (longest first, whole words) replaced by one of its alternatives;
    unchanged when nothing listed occurs."""
    if not table:
        return text
    found = []
    for key in sorted(table, key=len, reverse=True):
        found += [m for m in re.finditer(rf"(?<!\w){re.escape(key)}(?!\w)", text, re.IGNORECASE)]
    if not found:
        return text
    m = found[rng.integers(len(found))]
    new = table[m[0].lower()][rng.integers(len(table[m[0].lower()]))]
    if m[0][:1].isupper():
        new = new[:1].upper() + new[1:]
    return text[:m.start()] + new + text[m.end():]
