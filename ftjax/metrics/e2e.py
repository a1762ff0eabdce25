"""The E2E NLG challenge's five metrics, computed as its scoring script (e2e-metrics, measure_scores.py) does.

    BLEU, NIST   as mteval-v13a: lower-cased, mteval's tokenization (sacrebleu's `13a` tokenizer is a port of
                 it); BLEU from sacrebleu, NIST here (below); reported as BLEU x 100 (percent) and NIST as is
    METEOR, ROUGE-L, CIDEr
                 the MS-COCO caption evaluation code the script bundles (pycocoevalcap: METEOR 1.5, ROUGE-L
                 with beta 1.2, CIDEr-D), on its PTB tokenization (lower-cased); METEOR and ROUGE-L in percent

Checked against the official script on a fixture (tests/test_e2e_metrics.py). The `e2e` extra installs
pycocoevalcap; METEOR and the PTB tokenizer run on Java (`java` on the PATH).

NIST is written here rather than taken from nltk: nltk's `corpus_nist` does not follow mteval-v13a's
information weights and length penalty and gives other values (5.12 instead of the script's 5.47 on the
fixture). Intervals: BLEU resamples its n-gram counts; NIST keeps each example's information-weighted hits
(the weights from all references held fixed); ROUGE-L and CIDEr are means of per-example scores (CIDEr's
document frequencies held fixed); METEOR's corpus score is the Java aggregate, reported without an interval.
"""

from __future__ import annotations

import functools
import math
import shutil
from collections import Counter
from collections.abc import Sequence

import numpy as np

from ftjax.metrics.bootstrap import Statistic, mean_statistic

E2E_METRICS = ("e2e_bleu", "nist", "meteor", "e2e_rouge_l", "cider")
COCO = ("meteor", "e2e_rouge_l", "cider")  # the three pycocoevalcap computes
NIST_N = 5
NIST_BETA = -math.log(0.5) / math.log(1.5) ** 2  # the length penalty is 0.5 at 2/3 of the reference length


def available() -> str | None:
    """Why the COCO metrics cannot run here (None when they can)."""
    try:
        import pycocoevalcap.meteor.meteor  # noqa: F401
    except ImportError:
        return "pycocoevalcap is not installed (pip install -e '.[e2e]')"
    if shutil.which("java") is None:
        return "METEOR and the PTB tokenizer need Java: no `java` on the PATH"
    return None


def e2e_bleu(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> Statistic:
    from sacrebleu.metrics import BLEU

    from ftjax.metrics.text import sacrebleu_statistic

    return sacrebleu_statistic(BLEU(lowercase=True, tokenize="13a"), predictions, references)


@functools.cache
def _mteval_tokenizer():
    from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

    return Tokenizer13a()


def _ngrams(tokens: Sequence[str], n: int) -> Counter:
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def nist(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> Statistic:
    """NIST-5 as mteval-v13a: an n-gram's information is log2(count of its first n-1 words / count of it) over all
    references of the corpus; hits are clipped by the most any one reference holds; per order, the summed
    information of the hits over the number of system n-grams; times the length penalty on the system length
    against the sum of each example's mean reference length."""
    tok = lambda s: _mteval_tokenizer()(s.lower()).split()
    hyps = [tok(p) for p in predictions]
    refs = [[tok(r) for r in rs] for rs in references]
    counts = [Counter() for _ in range(NIST_N + 1)]  # counts[n][ngram] over all references; counts[0][()] = words
    for rs in refs:
        for r in rs:
            counts[0][()] += len(r)
            for n in range(1, NIST_N + 1):
                counts[n].update(_ngrams(r, n))
    info = lambda g: math.log2(counts[len(g) - 1][g[:-1]] / counts[len(g)][g])
    items = np.zeros((len(hyps), 2 * NIST_N + 2))
    for i, (h, rs) in enumerate(zip(hyps, refs)):
        for n in range(1, NIST_N + 1):
            best = Counter()
            for r in rs:
                best |= _ngrams(r, n)  # the most each n-gram occurs in any one reference
            hits = _ngrams(h, n) & best
            items[i, n - 1] = sum(info(g) * k for g, k in hits.items())
            items[i, NIST_N + n - 1] = max(len(h) - n + 1, 0)
        items[i, -2], items[i, -1] = len(h), np.mean([len(r) for r in rs])

    def score(a: np.ndarray) -> float:
        total = a.sum(0)
        gain = sum(total[n] / total[NIST_N + n] for n in range(NIST_N) if total[NIST_N + n] > 0)
        ratio = total[-2] / max(total[-1], 1e-12)
        penalty = 1.0 if ratio >= 1 else 0.0 if ratio <= 0 else math.exp(-NIST_BETA * math.log(ratio) ** 2)
        return float(penalty * gain)

    return Statistic(items, score)


def coco_statistics(predictions: Sequence[str], references: Sequence[Sequence[str]], names: Sequence[str]
                    ) -> dict[str, Statistic]:
    """METEOR, ROUGE-L and CIDEr (those of `names`) from pycocoevalcap, after its PTB tokenizer."""
    why = available()
    if why:
        raise ValueError(f"{', '.join(names)}: {why}")
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    keys = range(len(predictions))
    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({i: [{"caption": r} for r in references[i]] for i in keys})
    res = tokenizer.tokenize({i: [{"caption": predictions[i]}] for i in keys})
    out = {}
    for name in names:
        if name == "meteor":
            from pycocoevalcap.meteor.meteor import Meteor

            total, per = Meteor().compute_score(gts, res)  # the Java process ends with the object
            out[name] = Statistic(np.asarray(per, np.float64).reshape(-1, 1), lambda a, t=total: 100.0 * t,
                                  resample=False)
        elif name == "e2e_rouge_l":
            from pycocoevalcap.rouge.rouge import Rouge

            out[name] = mean_statistic(Rouge().compute_score(gts, res)[1])
        elif name == "cider":
            from pycocoevalcap.cider.cider import Cider

            out[name] = mean_statistic(Cider().compute_score(gts, res)[1], scale=1.0)
    return out
