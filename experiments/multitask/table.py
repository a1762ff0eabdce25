"""The multi-task run's figures per seed and their mean and sd, from the workdirs run.sh wrote:

    python experiments/multitask/table.py runs/mt_s1 runs/mt_s2 [--prior=seed0:85.3,85.2,72.6,8.37,46.6,75.3,2.45,17.0]

Reads WORKDIR/eval/banking77/validation.json and WORKDIR/eval/e2e_nlg/validation.json (95% bootstrap intervals),
the training time from summary.json and the validation curve from metrics.jsonl. `--prior` adds a seed measured
earlier whose workdir is gone (its figures in COLUMNS order) to the mean and sd.
"""

import argparse
import json
import statistics
from pathlib import Path

COLUMNS = [("banking77", "accuracy"), ("banking77", "macro_f1"), ("e2e_nlg", "e2e_bleu"), ("e2e_nlg", "nist"),
           ("e2e_nlg", "meteor"), ("e2e_nlg", "e2e_rouge_l"), ("e2e_nlg", "cider"), ("e2e_nlg", "slot_error_rate")]


def cell(m: dict) -> str:
    digits = 2 if m["value"] < 10 else 1
    interval = f" [{m['low']:.{digits}f}, {m['high']:.{digits}f}]" if "low" in m else ""  # METEOR has none
    return f"{m['value']:.{digits}f}{interval}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workdirs", nargs="+")
    ap.add_argument("--prior", action="append", default=[], help="NAME:v1,v2,... a seed measured earlier")
    args = ap.parse_args()
    print("| seed | " + " | ".join(f"{t} {m}" for t, m in COLUMNS) + " | train min | best step |")
    print("|---|" + "---:|" * (len(COLUMNS) + 2))
    values: list[list[float]] = []
    for prior in args.prior:
        name, _, figures = prior.partition(":")
        row = [float(v) for v in figures.split(",")]
        if len(row) != len(COLUMNS):
            raise SystemExit(f"--prior {name}: {len(row)} figures, expected {len(COLUMNS)}")
        values.append(row)
        print(f"| {name} (earlier) | " + " | ".join(f"{v:g}" for v in row) + " | | |")
    for wd in map(Path, args.workdirs):
        reports = {t: json.loads((wd / "eval" / t / "validation.json").read_text())["metrics"]
                   for t in ("banking77", "e2e_nlg")}
        summary = json.loads((wd / "summary.json").read_text())
        ms = [reports[t][m] for t, m in COLUMNS]
        values.append([m["value"] for m in ms])
        print(f"| {wd.name} | " + " | ".join(cell(m) for m in ms) +
              f" | {summary['seconds'] / 60:.1f} | {summary['best_step']} |")
    if len(values) > 1:
        cols = list(zip(*values))
        print(f"| mean ± sd (n={len(values)}) | " + " | ".join(
            f"{statistics.fmean(c):.2f} ± {statistics.stdev(c):.2f}" for c in cols) + " | | |")
    for wd in map(Path, args.workdirs):  # the validation curve: Banking77 accuracy and E2E loss per evaluation
        rows = [json.loads(line) for line in (wd / "metrics.jsonl").read_text().splitlines()]
        curve = [(r["step"], r["banking77/val_accuracy"], r["e2e_nlg/val_loss"]) for r in rows
                 if "banking77/val_accuracy" in r]
        print(f"{wd.name}: " + ", ".join(f"step {s}: accuracy {a:.1f}, E2E loss {e:.3f}" for s, a, e in curve))


if __name__ == "__main__":
    main()
