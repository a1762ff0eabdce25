"""The results tables of experiments/preference/README.md from runs/preference/eval_*/: each arm's metrics with
95% bootstrap intervals, the slot error rate recomputed from the saved outputs with the current checker (and
split into missing / wrong / added), output length and repetition, and each arm minus SFT as paired tests."""

import json
from pathlib import Path

import numpy as np

from ftjax.metrics import paired_test, statistics, with_ci
from ftjax.metrics.slots import slot_errors

R = Path("runs/preference")
ARMS = ("sft", "dpo", "simpo", "orpo")
PAIRED = ("e2e_bleu", "e2e_rouge_l", "slot_error_rate")


def cell(m: dict | None) -> str:
    if not m:
        return "-"
    return f"{m['value']:.1f}" + (f" [{m['low']:.1f}, {m['high']:.1f}]" if "low" in m else "")


def repeats(text: str) -> bool:
    """Whether the text says some 4-gram twice (the loops preference tuning can learn)."""
    words = text.lower().split()
    grams = [tuple(words[i:i + 4]) for i in range(len(words) - 3)]
    return len(set(grams)) < len(grams)


rows = {a: [json.loads(line) for line in (R / f"eval_{a}" / "test_predictions.jsonl").open()]
        for a in ARMS if (R / f"eval_{a}" / "test_predictions.jsonl").is_file()}
stats = {a: statistics(r, PAIRED) for a, r in rows.items()}
print("| model | BLEU (E2E) | ROUGE-L (E2E) | slot error rate | missing / wrong / added | words | repeats a 4-gram "
      "| perplexity |")
print("|---|---:|---:|---:|---|---:|---:|---:|")
for arm, r in rows.items():
    counts = np.array([slot_errors(x["prompt"], x["prediction"]) for x in r])
    ppl = json.loads((R / f"eval_{arm}" / "test.json").read_text())["metrics"].get("perplexity")
    print(f"| {arm} | " + " | ".join(cell(with_ci(stats[arm][k], 1000)) for k in PAIRED) +
          f" | {' / '.join(str(int(c)) for c in counts[:, :3].sum(0))} of {int(counts[:, 3].sum())}"
          f" | {np.mean([len(x['prediction'].split()) for x in r]):.1f}"
          f" | {100 * np.mean([repeats(x['prediction']) for x in r]):.0f}% | {cell(ppl)} |")
if "sft" in rows:
    print("\n| arm minus SFT (paired) | " + " | ".join(PAIRED) + " |")
    print("|---|" + "---:|" * len(PAIRED))
    for arm in [a for a in rows if a != "sft"]:
        tests = [paired_test(stats["sft"][k], stats[arm][k]) for k in PAIRED]
        print(f"| {arm} | " + " | ".join(f"{t['delta']:+.1f} [{t['low']:+.1f}, {t['high']:+.1f}], p={t['p_value']:.3f}"
                                         for t in tests) + " |")
    refs = [(x["prompt"], ref) for x in rows["sft"] for ref in x["references"]]
    human = np.array([slot_errors(mr, ref) for mr, ref in refs])
    print(f"\nhuman references ({len(refs)}): slot error rate {100 * human[:, :3].sum() / human[:, 3].sum():.1f}%")
pairs = R / "pairs.jsonl.report.json"
if pairs.is_file():
    print("\npairs:", json.loads(pairs.read_text()))
