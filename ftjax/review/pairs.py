"""Preference pairs from a completed blinded A/B review (`ftjax review pairs`): what reviewers preferred becomes
training signal for DPO / IPO / ORPO / SimPO (train.preference).

The rule, per item, over its reviewers' votes (+1 for output 1, -1 for output 2, 0 for a tie):
- `by=preference`: a vote is the reviewer's `preferred` column; `by=rubric`: the sign of the reviewer's rubric
  total for output 1 minus output 2, a tie when the totals differ by less than `margin`;
- the item's winner is the sign of the summed votes; an item whose votes sum to zero is a tie and is dropped;
- an item whose winner was chosen by fewer than `min_agreement` of its reviewers (ties count against) is a
  disagreement and is dropped; so is an item whose two outputs are the same text.
Every dropped item is counted by reason in the report, with the review's overall Krippendorff alpha.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ftjax.review.results import krippendorff_alpha

RULES = ("preference", "rubric")


def read_exported_sheet(folder: str | Path) -> dict[str, dict]:
    """{item: row} of the sheet.csv that `review export` wrote next to key.json (prompt and both outputs)."""
    path = Path(folder) / "sheet.csv"
    if not path.is_file():
        raise FileNotFoundError(f"no exported sheet at {path} (pairs read the prompts and outputs from it)")
    with path.open(encoding="utf-8-sig", newline="") as f:
        return {row["item"]: row for row in csv.DictReader(f)}


def review_pairs(key: dict, sheets: dict[str, dict[str, dict]], exported: dict[str, dict], by: str = "preference",
                 min_agreement: float = 0.6, margin: float = 0.5) -> tuple[list[dict], dict]:
    """(pair rows, report) from the checked sheets (ftjax.review.results.read_sheets) of an A/B review."""
    if not key["paired"]:
        raise ValueError("preference pairs need a blinded A/B review (review export --run_b=...)")
    if by not in RULES:
        raise ValueError(f"--by={by!r}: choose from {', '.join(RULES)}")
    if not 0.5 <= min_agreement <= 1:
        raise ValueError(f"min_agreement={min_agreement}: a share of reviewers in [0.5, 1]")
    names = [c.name for c in key["rubric"]]
    reviewers = list(sheets)
    pairs, dropped = [], {"tie": 0, "disagreement": 0, "same_answer": 0}
    votes_all = []
    for entry in key["items"]:
        item = entry["item"]
        if item not in exported:
            raise ValueError(f"item {item!r} of the key is not in the exported sheet.csv")
        row = exported[item]
        votes = []
        for r in reviewers:
            answer = sheets[r][item]
            if by == "preference":
                votes.append({"1": 1, "2": -1, "tie": 0}[answer["preferred"]])
            else:
                diff = sum(answer[f"{n}_1"] for n in names) - sum(answer[f"{n}_2"] for n in names)
                votes.append(0 if abs(diff) < margin else int(np.sign(diff)))
        votes_all.append(votes)
        net = int(np.sign(sum(votes)))
        if row["output_1"].strip() == row["output_2"].strip():
            dropped["same_answer"] += 1
            continue
        if net == 0:
            dropped["tie"] += 1
            continue
        agreement = sum(v == net for v in votes) / len(votes)
        if agreement < min_agreement:
            dropped["disagreement"] += 1
            continue
        chosen, rejected = (row["output_1"], row["output_2"]) if net > 0 else (row["output_2"], row["output_1"])
        winner = key["systems"]["a" if (net > 0) == (entry["first"] == "a") else "b"]
        pairs.append({"prompt": row["prompt"], "chosen": chosen, "rejected": rejected, "source": "review",
                      "item": item, "preferred_system": winner, "agreement": round(agreement, 3),
                      "votes": len(votes)})
    alpha = krippendorff_alpha(np.array(votes_all, float).T, "nominal")
    report = {"items": len(key["items"]), "pairs": len(pairs), "dropped": dropped, "rule": by,
              "min_agreement": min_agreement, "reviewers": reviewers, "krippendorff_alpha": alpha}
    return pairs, report
