"""Simulated drift on Banking77: the files the lifecycle experiment (run.sh) trains, monitors and refreshes with.

From ../shared/data/banking77/train.csv (or $BANKING77_DIR), with a fixed seed:
  held out:  10% of every intent's rows (stratified): never trained on. Split into old_test.csv (the intents of
             the first round) and new_test.csv (the intents that only appear later): the fixed held-out sets
             both versions are scored on.
  round1.csv          30 rows per intent of 67 intents: the first version's training data (10 intents absent)
  week_control.csv    400 unseen rows of the same 67 intents: production traffic that has not drifted
  week_drift.csv      400 unseen rows, half from the 10 new intents: production traffic that has
  new_labelled.csv    30 labelled rows per new intent plus 5 per old intent: what the team labels after the alarm

    python experiments/lifecycle/prepare.py --out=runs/lifecycle/data
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
from collections import defaultdict
from pathlib import Path


def write(path: Path, rows: list[dict]) -> None:
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["text", "category"])
        w.writeheader()
        w.writerows(rows)
    tmp.replace(path)
    print(f"{path}: {len(rows)} rows")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/lifecycle/data")
    p.add_argument("--new_intents", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    folder = Path(os.environ.get("BANKING77_DIR", "../shared/data/banking77"))
    with (folder / "train.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    intents = json.loads((folder / "categories.json").read_text())
    rng = random.Random(args.seed)
    new = set(rng.sample(intents, args.new_intents))
    by = defaultdict(list)
    for r in rows:
        by[r["category"]].append({"text": r["text"], "category": r["category"]})
    test, pool = {}, {}
    for intent, items in by.items():
        rng.shuffle(items)
        k = max(1, round(0.1 * len(items)))
        test[intent], pool[intent] = items[:k], items[k:]
    old = [i for i in intents if i not in new]
    take = lambda intent, n: [pool[intent].pop() for _ in range(min(n, len(pool[intent])))]
    round1 = [r for i in old for r in take(i, 30)]
    labelled = [r for i in sorted(new) for r in take(i, 30)] + [r for i in old for r in take(i, 5)]
    control = rng.sample([r for i in old for r in pool[i]], 400)
    seen = {id(r) for r in control}
    for i in old:
        pool[i] = [r for r in pool[i] if id(r) not in seen]
    drift = rng.sample([r for i in old for r in pool[i]], 200) + rng.sample([r for i in new for r in pool[i]], 200)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, part in [("round1", round1), ("new_labelled", labelled), ("week_control", control),
                       ("week_drift", drift), ("old_test", [r for i in old for r in test[i]]),
                       ("new_test", [r for i in sorted(new) for r in test[i]])]:
        rng.shuffle(part)
        write(out / f"{name}.csv", part)
    (out / "new_intents.json").write_text(json.dumps(sorted(new), indent=1) + "\n")


if __name__ == "__main__":
    main()
