"""The results table of experiments/preference/README.md from runs/preference/eval_*/test.json."""

import json
from pathlib import Path

R = Path("runs/preference")
METRICS = ("e2e_bleu", "rouge_l", "e2e_rouge_l", "slot_error_rate", "perplexity")


def cell(m: dict | None) -> str:
    if not m:
        return "-"
    return f"{m['value']:.1f}" + (f" [{m['low']:.1f}, {m['high']:.1f}]" if "low" in m else "")


print("| model | " + " | ".join(METRICS) + " |")
print("|---|" + "---:|" * len(METRICS))
for arm in ("sft", "dpo", "simpo", "orpo"):
    path = R / f"eval_{arm}" / "test.json"
    if path.is_file():
        metrics = json.loads(path.read_text())["metrics"]
        print(f"| {arm} | " + " | ".join(cell(metrics.get(k)) for k in METRICS) + " |")
pairs = R / "pairs.jsonl.report.json"
if pairs.is_file():
    print("\npairs:", json.loads(pairs.read_text()))
