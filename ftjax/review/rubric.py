"""The review rubric and the sheet layout that export and import share.

A rubric is `name:low-high` criteria (integer scales) separated by commas, e.g.
`accuracy:1-5,completeness:1-5,fluency:1-5,tone:1-5`; every sheet also has a free `comment` column. A sheet
reviews one system (`output`, `<criterion>`) or compares two blinded ones (`output_1`, `output_2`,
`<criterion>_1`, `<criterion>_2`, `preferred` = 1, 2 or tie); `reviewer` names the reviewer (else the file name does).
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

DEFAULT_RUBRIC = "accuracy:1-5,completeness:1-5,fluency:1-5,tone:1-5"
PREFERENCES = ("1", "2", "tie")
KEY_FORMAT = "ftjax-review-key"
_CRITERION = re.compile(r"^([A-Za-z][A-Za-z0-9_]*):(-?\d+)-(-?\d+)$")
_RESERVED = {"item", "prompt", "reference", "output", "preferred", "comment", "reviewer"}


@dataclasses.dataclass(frozen=True)
class Criterion:
    name: str
    low: int = 1
    high: int = 5


def parse_rubric(spec: str) -> list[Criterion]:
    """'accuracy:1-5,fluency:1-3' -> criteria; a malformed entry is a one-line ValueError naming it."""
    out = []
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        m = _CRITERION.match(part)
        if not m or int(m[2]) >= int(m[3]):
            raise ValueError(f"rubric entry {part!r} must look like name:low-high with low < high (e.g. fluency:1-5)")
        if m[1] in _RESERVED or any(c.name == m[1] for c in out):
            raise ValueError(f"rubric criterion name {m[1]!r} is reserved or repeated")
        out.append(Criterion(m[1], int(m[2]), int(m[3])))
    if not out:
        raise ValueError("the rubric needs at least one criterion, e.g. accuracy:1-5")
    return out


def columns(rubric: list[Criterion], paired: bool) -> list[str]:
    """The sheet's header: what reviewers see, then what they fill in."""
    if not paired:
        return ["item", "prompt", "reference", "output", *(c.name for c in rubric), "comment", "reviewer"]
    scores = [f"{c.name}_{k}" for c in rubric for k in (1, 2)]
    return ["item", "prompt", "reference", "output_1", "output_2", *scores, "preferred", "comment", "reviewer"]


def load_key(path: str | Path) -> dict:
    """The export's key.json (items, which system is output 1, rubric); checked to be one."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no review key at {p} (ftjax review export writes key.json)")
    try:
        key = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{p}:{e.lineno}: not valid JSON ({e.msg})") from None
    if not isinstance(key, dict) or key.get("format") != KEY_FORMAT:
        raise ValueError(f"{p} is not a review key written by ftjax review export")
    key["rubric"] = [Criterion(**c) for c in key["rubric"]]
    return key
