"""A hand-written template for E2E meaning representations (no learning): the simple non-LLM baseline, scored on
the validation holdout of configs/e2e_nlg.py with the same metrics and intervals as `ftjax eval`.

    python experiments/e2e_nlg/template_baseline.py        # writes runs/e2e_template.json
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from ftjax.config import load_config_file
from ftjax.data.config import rows_of
from ftjax.eval.items import eval_items
from ftjax.io import write_json
from ftjax.metrics import metric_report, statistics
from ftjax.metrics.slots import parse_mr
from ftjax.metrics.suite import default_metrics

ROOT = Path(__file__).resolve().parents[2]


def realise(mr: str) -> str:
    """Every slot of the MR in one fixed order and wording."""
    s = parse_mr(mr)
    text = f"{s.get('name', 'It')} is a {s.get('eatType', 'restaurant')}"
    if "food" in s:
        text += f" serving {s['food']} food"
    if "priceRange" in s:
        text += f" in the {s['priceRange']} price range"
    if "area" in s:
        text += f" in the {s['area']}"
    if "near" in s:
        text += f" near {s['near']}"
    text += "."
    if "customer rating" in s:
        text += f" It has a {s['customer rating']} customer rating."
    if "familyFriendly" in s:
        text += " It is family friendly." if s["familyFriendly"] == "yes" else " It is not family friendly."
    return text


def main() -> None:
    config = load_config_file(ROOT / "configs" / "e2e_nlg.py")
    rows = rows_of(config.data, "validation")
    items, task = eval_items(rows, config.data.format)
    t0 = time.perf_counter()
    predictions = [{"prompt": it.prompt, "prediction": realise(it.prompt), "references": it.references}
                   for it in items]
    names = [n for n in default_metrics(task) if n != "perplexity"]
    report = metric_report(statistics(predictions, names, config.eval.normalize), None, 1000)
    out = {"items": len(items), "rows": len(rows), "seconds": time.perf_counter() - t0, "metrics": report["metrics"],
           "examples": predictions[:3]}
    path = write_json(ROOT / "runs" / "e2e_template.json", out)
    print(json.dumps({k: round(v["value"], 3) for k, v in out["metrics"].items()}), f"({len(items)} MRs) -> {path}")


if __name__ == "__main__":
    main()
