"""Transfer vs from scratch, per seed and as mean +- sd, from the workdirs experiments/transfer/run.sh wrote:

    python experiments/transfer/table.py 0 1 2 [--runs=runs]

For each direction and seed: the from-scratch run and the transferred one at their best checkpoints on the same
validation holdout (WORKDIR/eval/validation.json, 95% bootstrap intervals), the per-seed difference, the
validation curve of both (transfer's effect shows first at the early evaluations) and what init_from loaded
(summary.json). A seed whose runs are missing is named and skipped.
"""

import argparse
import json
import statistics
from pathlib import Path

# direction -> (from-scratch workdir, transferred workdir, report metrics, curve metric) by seed
DIRECTIONS = {
    "E2E -> Banking77": ("b77_few_s{}", "b77_from_e2e_s{}", ("accuracy", "macro_f1"), "val_accuracy"),
    "Banking77 -> E2E": ("e2e_s{}", "e2e_from_b77_s{}", ("e2e_bleu", "e2e_rouge_l", "slot_error_rate"), "val_loss"),
}


def report(wd: Path) -> dict:
    return json.loads((wd / "eval" / "validation.json").read_text())


def curve(wd: Path, key: str) -> str:
    rows = [json.loads(line) for line in (wd / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return ", ".join(f"{r['step']}: {r[key]:.3g}" for r in rows if key in r)


def cell(m: dict) -> str:
    return f"{m['value']:.1f} [{m['low']:.1f}, {m['high']:.1f}]"


def mean_sd(values: list[float]) -> str:
    sd = f" ± {statistics.stdev(values):.1f}" if len(values) > 1 else ""
    return f"{statistics.fmean(values):.1f}{sd}"


def direction_table(name: str, seeds: list[int], runs: Path) -> None:
    scratch_t, transfer_t, metrics, curve_key = DIRECTIONS[name]
    print(f"\n### {name}\n")
    print("| seed | arm | " + " | ".join(metrics) + " | best step |")
    print("|---|---|" + "---:|" * (len(metrics) + 1))
    values = {arm: {m: [] for m in metrics} for arm in ("scratch", "transfer")}
    curves = []
    for seed in seeds:
        pair = {"scratch": runs / scratch_t.format(seed), "transfer": runs / transfer_t.format(seed)}
        missing = [str(wd) for wd in pair.values() if not (wd / "eval" / "validation.json").is_file()]
        if missing:
            print(f"| {seed} | missing: {', '.join(missing)} |" + " |" * (len(metrics) + 1))
            continue
        reports = {arm: report(wd) for arm, wd in pair.items()}
        decodings = {r.get("settings", {}).get("decoding") for r in reports.values()}
        if len(decodings) > 1:  # e.g. a from-scratch E2E run scored before the slot reranker became the default
            curves.append(f"seed {seed}: the two arms were decoded differently ({' vs '.join(map(str, decodings))}); "
                          "rerun one's `ftjax eval` with the other's eval settings before comparing")
        for arm, wd in pair.items():
            ms = reports[arm]["metrics"]
            for m in metrics:
                values[arm][m].append(ms[m]["value"])
            best = json.loads((wd / "summary.json").read_text())["best_step"]
            print(f"| {seed} | {arm} ({wd.name}) | " + " | ".join(cell(ms[m]) for m in metrics) + f" | {best} |")
            curves.append(f"seed {seed} {arm}, {curve_key} at step {curve(wd, curve_key)}")
        loaded = json.loads((pair["transfer"] / "summary.json").read_text()).get("init_from") or {}
        curves.append(f"seed {seed}: init_from {loaded.get('workdir')} step {loaded.get('step')}: "
                      f"{len(loaded.get('loaded', []))} tensors loaded, {len(loaded.get('fresh', []))} fresh, "
                      f"{len(loaded.get('unused', []))} unused")
    n = len(values["scratch"][metrics[0]])
    if n:
        for arm in ("scratch", "transfer"):
            print(f"| mean ± sd (n={n}) | {arm} | " + " | ".join(mean_sd(values[arm][m]) for m in metrics) + " | |")
        diffs = {m: [t - s for s, t in zip(values["scratch"][m], values["transfer"][m])] for m in metrics}
        print(f"| transfer - scratch (n={n}) | | " + " | ".join(mean_sd(diffs[m]) for m in metrics) + " | |")
    print()
    for line in curves:
        print(f"- {line}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("seeds", nargs="+", type=int)
    ap.add_argument("--runs", default="runs", type=Path, help="the folder run.sh wrote its workdirs in")
    args = ap.parse_args()
    for name in DIRECTIONS:
        direction_table(name, args.seeds, args.runs)


if __name__ == "__main__":
    main()
