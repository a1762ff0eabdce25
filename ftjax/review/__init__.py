"""Human review of model outputs: export blinded review sheets (CSV + a self-contained HTML page), import the
completed sheets of several reviewers, and summarise scores, agreement and A/B win rates.

    key = export_sheets(rows_a, "runs/review", rubric=parse_rubric("accuracy:1-5,fluency:1-5"), rows_b=rows_b)
    results = summarize(read_sheets(["alice.csv", "bob.csv"], load_key("runs/review/key.json")), key)
"""

from ftjax.review.results import read_sheets, summarize, write_summary
from ftjax.review.rubric import Criterion, columns, load_key, parse_rubric
from ftjax.review.sheet import export_sheets

__all__ = ["Criterion", "columns", "export_sheets", "load_key", "parse_rubric", "read_sheets", "summarize",
           "write_summary"]
