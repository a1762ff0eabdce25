"""Review sheets round trip: export (blinded A/B and single), two simulated reviewers, import with checks."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import run_ftjax
from ftjax.review import export_sheets, load_key, parse_rubric, read_sheets, summarize
from ftjax.review.results import read_sheet

RUBRIC = "accuracy:1-5,fluency:1-3"


def ftjax(*args, check=True):
    return run_ftjax(*args, check=check, timeout=120)


def predictions(path: Path, outputs: list[str]) -> str:
    rows = [{"id": i, "prompt": f"question {i}?", "references": [f"answer {i}"], "prediction": o}
            for i, o in enumerate(outputs)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def fill(sheet: Path, out: Path, answer) -> Path:
    """A completed copy of `sheet`; answer(row) -> the filled-in columns."""
    rows = list(csv.DictReader(sheet.open(newline="")))
    with out.open("w", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(dict(r, **answer(r)) for r in rows)
    return out


def test_parse_rubric():
    assert [(c.name, c.low, c.high) for c in parse_rubric("accuracy:1-5, tone:0-2")] == [("accuracy", 1, 5),
                                                                                         ("tone", 0, 2)]
    for bad, message in (("accuracy", "name:low-high"), ("a:5-1", "low < high"), ("comment:1-5", "reserved"),
                         ("a:1-5,a:1-3", "repeated"), ("", "at least one")):
        with pytest.raises(ValueError, match=message):
            parse_rubric(bad)


@pytest.fixture
def ab(tmp_path):
    """A blinded A/B export of 6 items (B answers right, A wrong), and who wrote each item's output 1."""
    a = predictions(tmp_path / "a_predictions.jsonl", [f"wrong {i}" for i in range(8)])
    b = predictions(tmp_path / "b_predictions.jsonl", [f"answer {i}" for i in range(8)])
    out = tmp_path / "review"
    proc = ftjax("review", "export", f"--run={a}", f"--run_b={b}", f"--out={out}", f"--rubric={RUBRIC}",
                 "--sample=6", "--seed=3")
    assert "blinded A/B" in proc.stdout
    key = load_key(out / "key.json")
    return out, key, {i["item"]: i["first"] for i in key["items"]}


def test_export_is_blinded_and_shuffled(ab):
    out, key, first = ab
    text = (out / "sheet.csv").read_text()
    assert "a_predictions" not in text and "b_predictions" not in text
    rows = list(csv.DictReader((out / "sheet.csv").open(newline="")))
    assert [r["item"] for r in rows] == [f"item{i:03d}" for i in range(1, 7)]
    assert [i["row"] for i in key["items"]] != sorted(i["row"] for i in key["items"])  # shuffled
    assert set(first.values()) == {"a", "b"}  # both orders occur
    for r in rows:  # the key unblinds: output 1 is B's ("answer") exactly when first == "b"
        assert r["output_1"].startswith("answer") == (first[r["item"]] == "b")
    assert key["systems"] == {"a": "a", "b": "b"}
    page = (out / "sheet.html").read_text()
    assert "<script type='application/json' id='data'>" in page and "http" not in page.replace("http-equiv", "")


def test_round_trip_two_reviewers(ab, tmp_path):
    out, key, first = ab
    b_slot = lambda r: "1" if first[r["item"]] == "b" else "2"
    a_slot = lambda r: "2" if b_slot(r) == "1" else "1"

    def alice(r):  # B: accuracy 5, fluency 3; A: 2 and 2; always prefers B
        return {f"accuracy_{b_slot(r)}": 5, f"accuracy_{a_slot(r)}": 2, f"fluency_{b_slot(r)}": 3,
                f"fluency_{a_slot(r)}": 2, "preferred": b_slot(r), "comment": "B is right"}

    def bob(r):  # agrees, except one tie
        return alice(r) | {f"accuracy_{b_slot(r)}": 4, "preferred": "tie" if r["item"] == "item002" else b_slot(r)}

    sheets = [fill(out / "sheet.csv", tmp_path / f"{f.__name__}.csv", f) for f in (alice, bob)]
    proc = ftjax("review", "import", f"--key={out / 'key.json'}", *map(str, sheets), "--bootstrap=200")
    assert "| accuracy | b | 4.50" in proc.stdout
    summary = json.loads((out / "review_summary.json").read_text())
    assert summary["reviewers"] == ["alice", "bob"] and summary["items"] == 6
    acc = summary["criteria"]["accuracy"]
    assert acc["a"]["value"] == 2.0 and acc["b"]["value"] == 4.5 and acc["b"]["low"] <= 4.5 <= acc["b"]["high"]
    import krippendorff

    # units: (item, system); reviewers agree on A (2) and differ by one on B (5 vs 4)
    data = np.array([[2] * 6 + [5] * 6, [2] * 6 + [4] * 6], float)
    assert acc["krippendorff_alpha"] == pytest.approx(krippendorff.alpha(data, level_of_measurement="ordinal"))
    pref = summary["preference"]
    assert pref["b_wins"]["value"] == pytest.approx(11 / 12) and pref["items_won"] == {"b": 6, "a": 0, "tied": 0}
    assert pref["sign_test_p"] == pytest.approx(2 / 64)
    assert (out / "review_summary.md").is_file()


def test_malformed_sheets_name_file_line_and_column(ab, tmp_path):
    out, key, _ = ab
    good = {"accuracy_1": 3, "accuracy_2": 3, "fluency_1": 2, "fluency_2": 2, "preferred": "tie"}
    cases = [
        ({"item002": {"accuracy_2": 7}}, ":3: accuracy_2 is '7' for item002, expected an integer 1-5"),
        ({"item003": {"fluency_1": ""}}, ":4: missing score 'fluency_1' for item003"),
        ({"item001": {"fluency_1": "2.5"}}, ":2: fluency_1 is '2.5' for item001"),
        ({"item001": {"preferred": "A"}}, ":2: preferred is 'a' for item001, expected one of 1, 2, tie"),
        ({"item006": {"item": "item099"}}, ":7: unknown item 'item099'"),
    ]
    for n, (changes, message) in enumerate(cases):
        sheet = fill(out / "sheet.csv", tmp_path / f"bad{n}.csv", lambda r: good | changes.get(r["item"], {}))
        with pytest.raises(ValueError) as e:
            read_sheet(sheet, key)
        assert str(e.value).startswith(f"{sheet}{message}"), str(e.value)
    rows = list(csv.DictReader((out / "sheet.csv").open(newline="")))
    short = tmp_path / "short.csv"
    with short.open("w", newline="") as f:
        w = csv.DictWriter(f, [c for c in rows[0] if c != "fluency_2"])
        w.writeheader()
    with pytest.raises(ValueError, match=r"short.csv:1: missing column 'fluency_2'"):
        read_sheet(short, key)
    partial = fill(out / "sheet.csv", tmp_path / "partial.csv", lambda r: good)
    partial.write_text("\n".join(partial.read_text().splitlines()[:-1]) + "\n")
    with pytest.raises(ValueError, match="no row for item 'item006'"):
        read_sheet(partial, key)
    twice = fill(out / "sheet.csv", tmp_path / "twice.csv", lambda r: good | {"reviewer": "carol"})
    with pytest.raises(ValueError, match="reviewer 'carol' already has a sheet"):
        read_sheets([twice, twice], key)
    # the command: one line, exit 2, no summary written
    proc = ftjax("review", "import", f"--key={out / 'key.json'}", str(tmp_path / "bad0.csv"), check=False)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1].startswith("ftjax review: error: ")
    assert "accuracy_2 is '7'" in proc.stderr and not (out / "review_summary.json").exists()


def test_single_system_review(tmp_path):
    rows = [{"prompt": f"q{i}", "references": [f"r{i}"], "prediction": f"p{i}"} for i in range(4)]
    key = export_sheets(rows, tmp_path, parse_rubric("accuracy:1-5"), names=("run", ""))
    assert not key["paired"] and [i["row"] for i in key["items"]] == [0, 1, 2, 3]  # all items, in order
    key = load_key(tmp_path / "key.json")
    scores = {"alice": [5, 4, 3, 2], "bob": [5, 4, 3, 3]}
    sheets = [fill(tmp_path / "sheet.csv", tmp_path / f"{who}.csv",
                   lambda r, s=s: {"accuracy": s[int(r["item"][-3:]) - 1]}) for who, s in scores.items()]
    summary = summarize(read_sheets(sheets, key), key, n_resamples=100)
    assert summary["criteria"]["accuracy"]["run"]["value"] == pytest.approx(np.mean(scores["alice"] + scores["bob"]))
    assert summary["criteria"]["accuracy"]["krippendorff_alpha"] > 0.8 and "preference" not in summary


HARNESS = r"""
const fs = require('fs');
const page = fs.readFileSync(process.argv[2], 'utf8');
const data = page.match(/id='data'>([\s\S]*?)<\/script>/)[1];
const script = page.match(/<script>([\s\S]*)<\/script><\/body>/)[1];
const fields = {};
const field = name => fields[name] || (fields[name] = {name, value: '', addEventListener() {}});
const anchor = {click() { fs.writeFileSync(process.argv[3], this.href.text); }};
const byId = {data: {textContent: data}, reviewer: {value: 'carol'}, status: {}, download: {},
              items: {appendChild(s) { for (const m of s.innerHTML.matchAll(/name="([^"]+)"/g)) field(m[1]); }}};
global.document = {getElementById: id => byId[id], createElement: t => (t === 'a' ? anchor : {}),
                   querySelector: sel => field(sel.match(/\[name="(.*)"\]/)[1]),
                   querySelectorAll: () => Object.values(fields)};
global.localStorage = {getItem: () => null, setItem() {}};
global.CSS = {escape: s => s};
global.Blob = class { constructor(parts) { this.text = parts.join(''); } };
global.URL = {createObjectURL: b => b};
eval(script);
for (const f of Object.values(fields)) f.value = f.name.endsWith('|comment') ? 'fine, "really"' : '2';
byId.download.onclick();
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node to run the page's script")
def test_html_page_downloads_an_importable_sheet(ab, tmp_path):
    out, key, _ = ab
    (tmp_path / "harness.js").write_text(HARNESS)
    subprocess.run(["node", str(tmp_path / "harness.js"), str(out / "sheet.html"), str(tmp_path / "carol.csv")],
                   check=True, timeout=60)
    who, answers = read_sheet(tmp_path / "carol.csv", key)
    assert who == "carol" and len(answers) == 6
    assert all(a["accuracy_1"] == 2 and a["preferred"] == "2" and a["comment"] == 'fine, "really"'
               for a in answers.values())


def test_review_pairs_handle_ties_disagreement_and_malformed_sheets(ab, tmp_path):
    out, key, first = ab
    b_slot = lambda r: "1" if first[r["item"]] == "b" else "2"
    a_slot = lambda r: "2" if b_slot(r) == "1" else "1"
    scores = lambda r: {"accuracy_1": 3, "accuracy_2": 3, "fluency_1": 2, "fluency_2": 2, "comment": ""}

    def alice(r):  # prefers B, except item004 (A) and item005 (tie)
        pref = {"item004": a_slot(r), "item005": "tie"}.get(r["item"], b_slot(r))
        return scores(r) | {"preferred": pref, f"accuracy_{b_slot(r)}": 5}

    def bob(r):  # prefers B, except item004 (B: alice and bob disagree) and item005 (tie) and item006 (A)
        pref = {"item005": "tie", "item006": a_slot(r)}.get(r["item"], b_slot(r))
        return scores(r) | {"preferred": pref, f"accuracy_{b_slot(r)}": 5}

    def carol(r):  # always B
        return scores(r) | {"preferred": b_slot(r)}

    sheets = [str(fill(out / "sheet.csv", tmp_path / f"{f.__name__}.csv", f)) for f in (alice, bob, carol)]
    pairs_file = tmp_path / "pairs.jsonl"
    proc = ftjax("review", "pairs", f"--key={out / 'key.json'}", *sheets, f"--output={pairs_file}")
    pairs = [json.loads(line) for line in pairs_file.read_text().splitlines()]
    # item004: votes A, B, B -> B with 2/3 agreement (kept); item005: tie, tie, B -> B with 1/3 (disagreement);
    # item006: B, A, B -> B (2/3); the rest unanimous
    assert "dropped: tie 0, disagreement 1, same_answer 0" in proc.stdout
    assert len(pairs) == 5 and all(p["chosen"].startswith("answer") and p["rejected"].startswith("wrong")
                                   for p in pairs)
    assert all(p["preferred_system"] == "b" for p in pairs)
    assert {p["item"]: p["agreement"] for p in pairs}["item004"] == pytest.approx(0.667, abs=1e-3)
    # rubric totals: carol scores both the same (a tie vote); alice and bob give B 5 -> B wins with 2/3
    proc = ftjax("review", "pairs", f"--key={out / 'key.json'}", *sheets, f"--output={pairs_file}", "--by=rubric")
    assert "6 pairs from 6 items" in proc.stdout
    # stricter agreement: unanimity keeps only the unanimous items
    proc = ftjax("review", "pairs", f"--key={out / 'key.json'}", *sheets, f"--output={pairs_file}",
                 "--min_agreement=1")
    assert "3 pairs from 6 items" in proc.stdout
    # a malformed sheet is one line with its file:line; a single-system review has no pairs
    bad = fill(out / "sheet.csv", tmp_path / "bad.csv", lambda r: carol(r) | {"preferred": "maybe"})
    proc = ftjax("review", "pairs", f"--key={out / 'key.json'}", str(bad), f"--output={pairs_file}", check=False)
    assert proc.returncode == 2 and "bad.csv:2: preferred is 'maybe'" in proc.stderr
    from ftjax.review.pairs import review_pairs

    with pytest.raises(ValueError, match="need a blinded A/B review"):
        review_pairs(key | {"paired": False}, {}, {})
