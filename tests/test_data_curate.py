"""Curation on a fixture with planted duplicates, personal data and junk: all found, nothing else removed."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import run_ftjax
from ftjax.data.curate import CurateOptions, curate
from ftjax.data.pii import luhn_ok, scrub
from ftjax.data.sources import load_rows

FIXTURE = Path(__file__).parent / "fixtures" / "data" / "curate.jsonl"
PLANTED = {24: "exact_duplicate", 25: "exact_duplicate", 26: "near_duplicate", 27: "near_duplicate",
           28: "exact_duplicate", 29: "empty_target", 30: "repeated_chars", 31: "non_text", 32: "non_text"}


def removed_lines(report):
    return {int(e["where"].rsplit(":", 1)[1]): reason for reason, items in report["examples"].items()
            for e in items}


def test_planted_problems_are_all_found_and_nothing_else_is_removed():
    rows = load_rows(str(FIXTURE))
    kept, report = curate(rows, CurateOptions(examples=100))
    assert removed_lines(report) == PLANTED
    assert [r["_line"] for r in kept] == [n for n in range(1, len(rows) + 1) if n not in PLANTED]
    assert report["rows_in"] == 35 and report["rows_out"] == 35 - len(PLANTED)
    near = {int(e["where"].rsplit(":", 1)[1]): e for e in report["examples"]["near_duplicate"]}
    assert near[26]["duplicate_of"].endswith(":5") and near[27]["duplicate_of"].endswith(":19")
    assert 0.8 <= near[26]["similarity"] < 1
    conflict = report["label_conflicts"]
    assert conflict["count"] == 1 and conflict["examples"][0]["where"].endswith(":28")
    pii = report["pii"]
    assert (pii["rows"], pii["email"], pii["phone"], pii["card"]) == (3, 1, 1, 1)
    assert [e["where"].rsplit(":", 1)[1] for e in pii["examples"]] == ["21", "22", "23"]
    assert "jane.doe" not in json.dumps(report) and "7946" not in json.dumps(report)  # the report never leaks
    assert kept[20]["text"].startswith("Please email me at jane.doe@")  # not scrubbed unless asked


def test_scrub_pii_masks_the_output():
    kept, report = curate(load_rows(str(FIXTURE)), CurateOptions(scrub_pii=True))
    texts = {r["_line"]: r["text"] for r in kept}
    assert texts[21] == "Please email me at [EMAIL] about my refund."
    assert texts[22] == "Call me back on [PHONE] about the transfer."
    assert texts[23] == "My card number is [CARD] and it was declined."
    assert report["pii"]["scrubbed"] is True


def test_pii_patterns_leave_numbers_that_are_not_personal_data_alone():
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    for text in ["I paid 1,000,000 on 2019-05-12, ref 12345678", "card 4111-1111-1111-1112 (bad checksum)",
                 "version 1.2.3.4 at 10:30", "transfer of 100 000 pounds"]:
        assert scrub(text) == (text, {})
    assert scrub("(555) 123-4567 or 555.123.4567, a@b.io")[0] == "[PHONE] or [PHONE], [EMAIL]"


def test_other_formats_compare_input_and_target_together():
    rows = [{"prompt": "name[Aromi]", "completion": "Aromi is a coffee shop."},
            {"prompt": "name[Aromi]", "completion": "There is a place called Aromi that sells coffee."},
            {"prompt": "name[Aromi]", "completion": "Aromi is a coffee shop!"},
            {"messages": [{"role": "user", "content": "hi, mail me: x@y.com"}, {"role": "assistant", "content": "ok"}]}]
    rows = [dict(r, _source="e2e.jsonl", _line=i) for i, r in enumerate(rows, 1)]
    kept, report = curate(rows, CurateOptions(scrub_pii=True))
    assert [r["_line"] for r in kept] == [1, 2, 4]  # two references for one input are not duplicates
    assert report["removed"]["exact_duplicate"] == 1
    assert kept[2]["messages"][0]["content"] == "hi, mail me: [EMAIL]"
    assert report["formats"] == {"prompt_completion": 3, "chat": 1}


def test_curate_command_writes_rows_and_reports(tmp_path):
    out, rep = tmp_path / "out" / "kept.jsonl", tmp_path / "out" / "report.json"
    run_ftjax("data", "curate", f"--input={FIXTURE}", f"--output={out}", f"--report={rep}", "--scrub_pii",
              "--near_threshold=0.8")
    kept = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(kept) == 35 - len(PLANTED) and set(kept[0]) == {"text", "label"}  # no _source/_line in output
    report = json.loads(rep.read_text())
    assert report["removed"]["near_duplicate"] == 2 and report["pii"]["email"] == 1
    page = rep.with_suffix(".md").read_text()
    assert "## Length in words, before" in page and "## Label balance, after" in page and "near_duplicate" in page
    bad = run_ftjax("data", "curate", f"--input={tmp_path / 'nope.csv'}", f"--output={tmp_path / 'x.jsonl'}",
                    check=False)
    assert bad.returncode != 0 and "no such file" in bad.stderr and not (tmp_path / "x.jsonl").exists()


def test_threshold_is_configurable():
    rows = load_rows(str(FIXTURE))
    assert curate(rows, CurateOptions(near_threshold=0.7))[1]["removed"]["near_duplicate"] > 2
    assert curate(rows, CurateOptions(near_threshold=0))[1]["removed"]["near_duplicate"] == 0
