"""Exact and near-duplicate detection over normalised texts.

Near duplicates: MinHash LSH (datasketch) over character n-grams proposes candidates, and the exact Jaccard
similarity of the n-gram sets confirms them, so nothing under the threshold is ever called a duplicate.
Character n-grams (not word n-grams) because short texts such as intents differ by a word or two. A row can
be several parts (input, target): it is a near duplicate only when every part is similar on its own, so two
different references for one input are not duplicates because they share the input.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Hashable

from tqdm import tqdm


def shingles(text: str, n: int) -> frozenset[str]:
    """Character n-grams of an already normalised text (the whole text when shorter than n)."""
    if len(text) <= n:
        return frozenset([text]) if text else frozenset()
    return frozenset(text[i:i + n] for i in range(len(text) - n + 1))


def jaccard(a: frozenset, b: frozenset) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


class NearDuplicateIndex:
    """Add texts under keys; `match` finds the most similar earlier text at or above the threshold."""

    def __init__(self, threshold: float, ngram: int = 5, num_perm: int = 128):
        from datasketch import MinHashLSH

        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"near-duplicate threshold must be in (0, 1], got {threshold}")
        self.threshold, self.ngram, self.num_perm = threshold, ngram, num_perm
        # candidates are verified exactly, so trade false positives (cheap) for recall: banding for 0.1 below the
        # threshold, weighted against misses, finds >99.7% of pairs at the threshold (datasketch's default
        # banding missed about a quarter of banking77's near duplicates at 0.8)
        self._lsh = MinHashLSH(threshold=max(threshold - 0.1, 0.05), num_perm=num_perm, weights=(0.1, 0.9))
        self._sets: dict[Hashable, tuple[frozenset, ...]] = {}

    def signatures(self, rows: list[tuple[str, ...]]) -> list[tuple[tuple[frozenset, ...], object]]:
        """(n-gram set per part, MinHash of all parts' n-grams) per row of normalised parts, in bulk."""
        from datasketch import MinHash

        sets = [tuple(shingles(part, self.ngram) for part in parts) for parts in rows]
        tagged = [[f"{k}\x1f{g}".encode() for k, grams in enumerate(parts) for g in grams] for parts in sets]
        return list(zip(sets, MinHash.bulk(tagged, num_perm=self.num_perm)))

    def match(self, signature: tuple[tuple[frozenset, ...], object],
              accept: Callable[[Hashable], bool] = lambda key: True) -> tuple[Hashable, float] | None:
        """(key, similarity) of the most similar accepted earlier row whose every part is at least `threshold`
        similar."""
        parts, minhash = signature
        if not any(parts):
            return None
        best = None
        for key in filter(accept, self._lsh.query(minhash)):
            sim = min(jaccard(a, b) for a, b in zip(parts, self._sets[key]))
            if sim >= self.threshold and (best is None or sim > best[1]):
                best = (key, sim)
        return best

    def add(self, key: Hashable, signature: tuple[tuple[frozenset, ...], object]) -> None:
        parts, minhash = signature
        if any(parts):
            self._sets[key] = parts
            self._lsh.insert(key, minhash)


def cross_matches(index_texts: dict[Hashable, str], query_texts: dict[Hashable, str], threshold: float,
                  ngram: int = 5, num_perm: int = 128, desc: str = "near-duplicates") -> list[tuple]:
    """(query key, index key, similarity) for every query text with a near duplicate among the index texts."""
    index = NearDuplicateIndex(threshold, ngram, num_perm)
    for key, sig in zip(index_texts, index.signatures([(t,) for t in index_texts.values()])):
        index.add(key, sig)
    found = []
    sigs = index.signatures([(t,) for t in query_texts.values()])
    for key, sig in tqdm(list(zip(query_texts, sigs)), desc=desc, unit="row", file=sys.stderr,
                         disable=len(sigs) < 5000):
        hit = index.match(sig)
        if hit is not None:
            found.append((key, *hit))
    return found
