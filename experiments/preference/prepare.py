"""Data for the preference experiment (experiments/preference/README.md): the prompts to sample pairs from and
the validation MRs to score on.

    python experiments/preference/prepare.py --out=runs/preference/data [--prompts=128]

configs/e2e_nlg.py's split of ../shared/data/e2e/devset.csv: its validation holdout (54 MRs, never trained on,
scored at the end) and, from the training MRs, the first `prompts` distinct MRs in a seeded shuffle with all
their references (the SFT run trains on these too; pairs are sampled from its outputs on them).
"""

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from ftjax.config import load_config_file  # noqa: E402
from ftjax.data.config import rows_of  # noqa: E402
from ftjax.io import atomic_file  # noqa: E402


def write(path: Path, rows: list[dict]) -> None:
    with atomic_file(path) as tmp, tmp.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["mr", "ref"])
        w.writerows([r["data"], r["text"]] for r in rows)  # the task maps data=mr, text=ref
    print(f"{path}: {len(rows)} rows")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/preference/data")
    p.add_argument("--prompts", type=int, default=128)
    args = p.parse_args()
    config = load_config_file(ROOT / "configs" / "e2e_nlg.py")
    out = Path(args.out)
    train, validation = rows_of(config.data, "train"), rows_of(config.data, "validation")
    mrs = sorted({r["data"] for r in train})
    picked = set(np.random.default_rng(0).permutation(mrs)[:args.prompts].tolist())
    write(out / "pair_prompts.csv", [r for r in train if r["data"] in picked])
    write(out / "validation.csv", validation)


if __name__ == "__main__":
    main()
