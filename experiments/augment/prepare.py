"""The low-resource Banking77 set of the augmentation experiment (README.md here), and its training files.

    python experiments/augment/prepare.py --out=runs/augment/data
        real10.csv        10 rows per intent (770): the first 10 of each intent after the validation holdout
        validation.csv    the configs/banking77.py validation holdout (10% of train.csv, stratified; 1,005 rows)
    python experiments/augment/prepare.py --out=runs/augment/data --combine=SYNTHETIC.jsonl --name=NAME
        NAME.csv          real10.csv plus the synthetic rows (text, category, source, method)
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from ftjax.config import load_config_file
from ftjax.data.config import rows_of

ROOT = Path(__file__).resolve().parents[2]
COLUMNS = ["text", "category", "source", "method"]


def write(path: Path, rows: list[dict]) -> None:
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows({"source": "real", "method": "", **r, "category": r["label"]} for r in rows)
    tmp.replace(path)
    print(f"{path}: {len(rows)} rows")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/augment/data")
    p.add_argument("--per_label", type=int, default=10)
    p.add_argument("--combine", default="", help="a synthetic JSONL to add to real10.csv")
    p.add_argument("--name", default="", help="the combined file's name (without .csv)")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    config = load_config_file(ROOT / "configs" / "banking77.py", "few")
    config.data.per_label = args.per_label
    real = rows_of(config.data, "train")
    if not args.combine:
        write(out / "real10.csv", real)
        write(out / "validation.csv", rows_of(config.data, "validation"))
        return
    synthetic = [json.loads(line) for line in Path(args.combine).read_text().splitlines()]
    write(out / f"{args.name}.csv", real + synthetic)


if __name__ == "__main__":
    main()
