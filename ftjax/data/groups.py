"""Group lexicons for bias audits: which demographic groups a text mentions, and counterfactual swaps.

A lexicon is YAML (the starter set, `ftjax/data/starter_groups.yaml`, documents the format):

    attributes:
      gender:
        counterfactual: true          # the groups' term lists are aligned: term i of one swaps with term i of
        groups:                       # another; `~` where a term has no counterpart
          female: [she, her, hers, woman]
          male:   [he, his, ~, man]
    sensitive: [religion, disabled]   # terms to flag wherever they occur
    ignore: [American Express]        # phrases that contain a term but are not about a group (brands, places)

A term in lower case matches any casing as a whole word or phrase; a term with a capital letter (US, UK) matches
only as written. A swap keeps a lower, Capitalised or UPPER word so. Swapping groups a and b exchanges both
ways at once, so applying the same swap twice gives the text back exactly (each term belongs to one group of
its attribute, which the loader checks).
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

STARTER = Path(__file__).with_name("starter_groups.yaml")
_KEYS = {"attributes", "sensitive", "ignore"}
_ATTRIBUTE_KEYS = {"groups", "counterfactual"}


@dataclasses.dataclass(frozen=True)
class Attribute:
    name: str
    groups: dict[str, tuple[str | None, ...]]  # group -> terms (None: no counterpart at that position)
    counterfactual: bool

    def terms(self, group: str) -> list[str]:
        return [t for t in self.groups[group] if t is not None]


@dataclasses.dataclass(frozen=True)
class Lexicon:
    attributes: dict[str, Attribute]
    sensitive: tuple[str, ...] = ()
    source: str = ""
    ignore: tuple[str, ...] = ()

    def _masked(self, text: str) -> str:
        """`text` with the ignored phrases blanked out (same length), so their words count for no group."""
        return _pattern(self.ignore).sub(lambda m: " " * len(m[0]), text) if self.ignore else text

    def attribute(self, name: str) -> Attribute:
        if name not in self.attributes:
            raise ValueError(f"{self.source or 'lexicon'}: no attribute {name!r}; have: "
                             f"{', '.join(self.attributes) or 'none'}")
        return self.attributes[name]

    def mentions(self, text: str) -> dict[str, set[str]]:
        """attribute -> the groups whose terms occur in `text` (attributes with none left out)."""
        out = {}
        text = self._masked(text)
        for name, attr in self.attributes.items():
            found = {g for g in attr.groups if _pattern(tuple(attr.terms(g))).search(text)}
            if found:
                out[name] = found
        return out

    def group_of(self, text: str, attribute: str) -> str:
        """The one group of `attribute` that `text` mentions; '' for none, '+'-joined names for several."""
        found = self.mentions(text).get(attribute, set())
        return "+".join(sorted(found))

    def sensitive_terms(self, text: str) -> list[str]:
        text = self._masked(text)
        return [t for t in self.sensitive if _pattern((t,)).search(text)]

    def swap(self, text: str, attribute: str, a: str, b: str) -> str:
        """`text` with the terms of groups `a` and `b` of `attribute` exchanged (an involution)."""
        attr = self.attribute(attribute)
        if not attr.counterfactual:
            raise ValueError(f"attribute {attribute!r} has no aligned term lists (counterfactual: false)")
        for g in (a, b):
            if g not in attr.groups:
                raise ValueError(f"attribute {attribute!r} has no group {g!r}; have: {', '.join(attr.groups)}")
        table = {}
        for x, y in zip(attr.groups[a], attr.groups[b]):
            if x is not None and y is not None:
                table[_key(x)], table[_key(y)] = y, x
        if not table:
            return text
        kept = {_key(t) for t in self.ignore}
        # ignored phrases join the alternation (longest first) and map to themselves, so their words stay put
        pattern = _pattern(tuple(t for g in (a, b) for t in attr.terms(g) if _key(t) in table) + self.ignore)

        def replace(m: re.Match) -> str:
            found = m[0]
            if found in kept or found.lower() in kept:
                return found
            new = table[found] if found in table else table[found.lower()]
            if found not in table:  # a case-insensitive term: carry its casing over
                if found.isupper() and len(found) > 1:
                    return new.upper()
                if found[:1].isupper():
                    return new[:1].upper() + new[1:]
            return new

        return pattern.sub(replace, text)


def _key(term: str) -> str:
    """How a term is looked up: as written when it has a capital (case-sensitive), else lower case."""
    return term if term != term.lower() else term.lower()


@functools.lru_cache(maxsize=4096)
def _pattern(terms: tuple[str, ...]) -> re.Pattern:
    """Whole-word alternation of `terms`, longest first; lower-case terms ignore case."""
    parts = [re.escape(t) if t != t.lower() else f"(?i:{re.escape(t)})"
             for t in sorted(set(terms), key=len, reverse=True)]
    return re.compile(rf"(?<!\w)(?:{'|'.join(parts) or '(?!)'})(?!\w)")


def load_lexicon(path: str | Path = "") -> Lexicon:
    """The lexicon at `path` (default: the starter set), checked: one-line errors name the file and line."""
    import yaml

    p = Path(path) if path else STARTER
    if not p.is_file():
        raise FileNotFoundError(f"no such lexicon file: {p}")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise ValueError(f"{p}:{mark.line + 1 if mark else '?'}: not valid YAML "
                         f"({getattr(e, 'problem', None) or e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("attributes"), dict):
        raise ValueError(f"{p}: expected a mapping with 'attributes' (attribute -> groups -> terms)")
    if set(data) - _KEYS:
        raise ValueError(f"{p}: unknown key(s) {sorted(set(data) - _KEYS)}; a lexicon has: {', '.join(sorted(_KEYS))}")
    attributes = {str(name): _attribute(p, str(name), spec) for name, spec in data["attributes"].items()}
    lists = {}
    for key in ("sensitive", "ignore"):
        value = data.get(key) or []
        if not isinstance(value, list) or not all(isinstance(t, str) and t.strip() for t in value):
            raise ValueError(f"{p}: '{key}' must be a list of terms")
        lists[key] = tuple(t.strip() for t in value)
    return Lexicon(attributes, lists["sensitive"], str(p), lists["ignore"])


def _attribute(p: Path, name: str, spec: object) -> Attribute:
    if not isinstance(spec, dict) or not isinstance(spec.get("groups"), dict) or not spec["groups"]:
        raise ValueError(f"{p}: attribute {name!r} needs 'groups' (group -> list of terms)")
    if set(spec) - _ATTRIBUTE_KEYS:
        raise ValueError(f"{p}: attribute {name!r}: unknown key(s) {sorted(set(spec) - _ATTRIBUTE_KEYS)}")
    counterfactual = bool(spec.get("counterfactual", False))
    groups, owner = {}, {}
    for group, terms in spec["groups"].items():
        if not isinstance(terms, list) or not terms or not all(t is None or isinstance(t, str) and t.strip()
                                                               for t in terms):
            raise ValueError(f"{p}: {name}.{group}: expected a list of terms (~ for a missing counterpart)")
        if None in terms and not counterfactual:
            raise ValueError(f"{p}: {name}.{group}: ~ only means something in aligned (counterfactual) lists")
        for t in terms:
            if t is None:
                continue
            k = _key(t.strip())
            if k in owner:
                raise ValueError(f"{p}: term {t!r} is listed twice in attribute {name!r} "
                                 f"({owner[k]} and {group}): a swap could not be undone")
            owner[k] = str(group)
        groups[str(group)] = tuple(t.strip() if t is not None else None for t in terms)
    if counterfactual:
        if len(groups) < 2:
            raise ValueError(f"{p}: attribute {name!r}: a counterfactual swap needs two or more groups")
        lengths = {g: len(t) for g, t in groups.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"{p}: attribute {name!r}: aligned lists must be equally long, got {lengths}")
    return Attribute(name, groups, counterfactual)


def group_labels(lexicon: Lexicon, texts: Iterable[str], attribute: str) -> list[str]:
    """The group of each text for `attribute` (Lexicon.group_of)."""
    lexicon.attribute(attribute)
    return [lexicon.group_of(t, attribute) for t in texts]


def balance_weights(groups: Sequence[str], weights: Sequence[float] | None = None) -> list[float]:
    """Each row's weight (given `weights`, default 1) rescaled so every mentioned group has the same total
    weight (the mean of their totals); rows that mention no group, or several, keep theirs, so the total weight
    is unchanged."""
    weights = [1.0] * len(groups) if weights is None else list(weights)
    totals: dict[str, float] = {}
    for g, w in zip(groups, weights):
        if g and "+" not in g:
            totals[g] = totals.get(g, 0.0) + w
    if not totals:
        return weights
    target = sum(totals.values()) / len(totals)
    return [w * target / totals[g] if totals.get(g) else w for g, w in zip(groups, weights)]


def resample_counts(groups: Sequence[str]) -> list[int]:
    """How many times to repeat each row so every mentioned group has as many rows as the largest one
    (rows of a group repeated in turn: the first rows once more before any row a third time)."""
    counts: dict[str, int] = {}
    for g in groups:
        if g and "+" not in g:
            counts[g] = counts.get(g, 0) + 1
    largest = max(counts.values(), default=0)
    seen: dict[str, int] = {}
    out = []
    for g in groups:
        if g not in counts:
            out.append(1)
            continue
        i, n = seen.get(g, 0), counts[g]
        seen[g] = i + 1
        out.append(largest // n + (1 if i < largest % n else 0))
    return out
