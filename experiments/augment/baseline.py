"""TF-IDF + linear SVM (experiments/banking77/baseline.py) on each arm's training file, scored on the holdout.

    python experiments/augment/baseline.py       # writes runs/augment/tfidf_svm.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "experiments" / "banking77"))

from baseline import fit_and_score  # noqa: E402

from ftjax.data.sources import load_rows  # noqa: E402
from ftjax.io import write_json  # noqa: E402

ARMS = ("real10", "real10_unfiltered", "real10_filtered")


def main() -> None:
    data = ROOT / "runs" / "augment" / "data"
    read = lambda name: load_rows(str(data / f"{name}.csv"), {"label": "category"})
    val = read("validation")
    labels = sorted({r["label"] for r in val})
    out = {arm: fit_and_score(read(arm), val, labels) for arm in ARMS}
    for arm, r in out.items():
        m = r["metrics"]["accuracy"]
        print(f"{arm}: {r['train_rows']} rows, accuracy {m['value']:.2f} [{m['low']:.2f}, {m['high']:.2f}]")
    print(f"-> {write_json(ROOT / 'runs' / 'augment' / 'tfidf_svm.json', out)}")


if __name__ == "__main__":
    main()
