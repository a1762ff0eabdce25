"""TF-IDF (word 1-2 + char 2-5 grams) + LinearSVC on exactly the training rows of a configs/banking77.py variant,
scored on its validation holdout with the same metrics and bootstrap intervals as `ftjax eval`.

    python experiments/banking77/baseline.py --variant=few      # writes runs/b77_<variant>_tfidf_svm.json
    python experiments/banking77/baseline.py --variant=few --per_label=10   # runs/b77_few10_tfidf_svm.json
    python experiments/banking77/baseline.py --per_label=30 --label_noise=0.4  # runs/b77_few30_noise0.4_tfidf_svm.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import make_pipeline, make_union
from sklearn.svm import LinearSVC

from ftjax.config import load_config_file
from ftjax.data.config import rows_of
from ftjax.io import write_json
from ftjax.metrics import metric_report, statistics

ROOT = Path(__file__).resolve().parents[2]


def fit_and_score(train: list[dict], val: list[dict], labels: list[str]) -> dict:
    """Fit on `train` rows (text, label), score on `val`: rows, seconds and metrics with bootstrap intervals."""
    t0 = time.perf_counter()
    features = make_union(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
                          TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True))
    svm = make_pipeline(features, LinearSVC(C=1.0))
    svm.fit([r["text"] for r in train], [r["label"] for r in train])
    predicted = svm.predict([r["text"] for r in val])
    rows = [{"prediction": p, "references": [r["label"]], "label": r["label"]} for p, r in zip(predicted, val)]
    report = metric_report(statistics(rows, ["accuracy", "macro_f1"], "none", labels), labels, 1000)
    return {"train_rows": len(train), "validation_rows": len(val), "seconds": time.perf_counter() - t0,
            "metrics": report["metrics"]}


def arm_name(variant: str, per_label: int | None = None, label_noise: float = 0.0) -> str:
    """The rows' name in the results: <variant>[<per_label>][_noise<F>]."""
    size = str(per_label) if per_label is not None else ""
    return variant + size + (f"_noise{label_noise:g}" if label_noise else "")


def result_path(variant: str, per_label: int | None = None, label_noise: float = 0.0) -> Path:
    """Where the baseline on these rows writes its figures."""
    return ROOT / "runs" / f"b77_{arm_name(variant, per_label, label_noise)}_tfidf_svm.json"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--variant", default="few")
    parser.add_argument("--per_label", type=int, default=None, help="training rows per intent (default: the variant's)")
    parser.add_argument("--label_noise", type=float, default=0.0, help="fraction of training labels made wrong")
    args = parser.parse_args()
    config = load_config_file(ROOT / "configs" / "banking77.py", None if args.variant == "default" else args.variant)
    if args.per_label is not None:
        config.data.per_label = args.per_label
    if args.label_noise:
        config.data.label_noise = args.label_noise
    train, val = rows_of(config.data, "train"), rows_of(config.data, "validation")
    out = {"variant": arm_name(args.variant, args.per_label, args.label_noise),
           **fit_and_score(train, val, config.data.labels.split(","))}
    path = write_json(result_path(args.variant, args.per_label, args.label_noise), out)
    print(json.dumps(out["metrics"]), f"({len(train)} train rows, {len(val)} validation rows) -> {path}")


if __name__ == "__main__":
    main()
