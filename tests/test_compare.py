"""`ftjax compare` on two synthetic runs: paired tests, report files, and mismatched test sets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import run_ftjax
from ftjax.eval.compare import compare_runs, load_result, paired_metrics
from ftjax.eval.runner import write_results
from ftjax.metrics import metric_report, statistics

NAMES = ["exact_match", "token_f1", "bleu", "perplexity"]


def make_run(workdir: Path, correct: np.ndarray, nll: float) -> Path:
    """A workdir with metrics.jsonl and eval/test.json + predictions, as `ftjax train` + `ftjax eval` leave it."""
    rows = [{"id": i, "prompt": f"w{i} w{i + 1}", "references": [f"the answer is {i}", f"it is {i}"],
             "prediction": f"the answer is {i}" if ok else "no idea", "nll": nll, "tokens": 4}
            for i, ok in enumerate(correct)]
    report = metric_report(statistics(rows, NAMES), n_resamples=100)
    report |= {"task": "prompt_completion", "settings": {"normalize": "lower,punct,articles,whitespace"}}
    write_results(workdir / "eval", "test", report, rows)
    history = [{"step": s, "loss": 3.0 / s, **({"val_loss": 3.2 / s} if s % 5 == 0 else {})} for s in range(1, 21)]
    (workdir / "metrics.jsonl").write_text("".join(json.dumps(h) + "\n" for h in history))
    return workdir


@pytest.fixture
def runs(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.random(40) < 0.4
    return make_run(tmp_path / "small", a, 2.0), make_run(tmp_path / "large", a | (rng.random(40) < 0.6), 1.0)


def test_compare_report(runs, tmp_path):
    a, b = runs
    summary = compare_runs(str(a), str(b), tmp_path / "report", n_resamples=300)
    em = summary["metrics"]["exact_match"]
    assert em["difference"]["delta"] == pytest.approx(em["b"]["value"] - em["a"]["value"])
    assert em["difference"]["p_value"] < 0.01 and 0 < em["difference"]["low"] < em["difference"]["delta"]
    assert summary["metrics"]["perplexity"]["difference"]["delta"] < 0
    files = {p.name for p in (tmp_path / "report").iterdir()}
    assert files == {"compare.json", "compare.md", "compare.html", "metrics.png", "loss.png"}
    md = (tmp_path / "report" / "compare.md").read_text()
    assert "| exact_match |" in md and "B better" in md and "![loss](loss.png)" in md
    page = (tmp_path / "report" / "compare.html").read_text()
    assert page.count("data:image/png;base64,") == 2 and "src=\"http" not in page
    assert summary["examples"] and all(e["a"] != e["b"] for e in summary["examples"])


def test_a_corpus_only_metric_shows_its_difference_untested(runs, tmp_path, monkeypatch):
    import dataclasses

    import ftjax.eval.compare as compare

    def bleu_corpus_only(rows, names, *args):  # BLEU made like METEOR: a value on all items, nothing to resample
        stats = statistics(rows, names, *args)
        return stats | {"bleu": dataclasses.replace(stats["bleu"], resample=False)}

    monkeypatch.setattr(compare, "statistics", bleu_corpus_only)
    summary = compare_runs(str(runs[0]), str(runs[1]), tmp_path / "report", n_resamples=50)
    bleu = summary["metrics"]["bleu"]["difference"]
    assert "p_value" not in bleu and bleu["delta"] == pytest.approx(bleu["b"] - bleu["a"]) and bleu["delta"] > 0
    line = next(x for x in (tmp_path / "report" / "compare.md").read_text().splitlines() if x.startswith("| bleu |"))
    assert line.endswith(f"| {bleu['delta']:+.2f} | - | not tested |")


def test_eval_out_folders_are_named_by_folder_and_split(runs, tmp_path):
    """Two `ftjax eval --out=DIR` results of one run (say two decodings of its validation split) keep apart."""
    for run, folder in zip(runs, ("greedy", "beam")):
        result = load_result(run)
        write_results(tmp_path / folder, "validation", result["report"] | {"split": "validation"},
                      result["predictions"])
    summary = compare_runs(str(tmp_path / "greedy" / "validation.json"), str(tmp_path / "beam" / "validation.json"),
                           tmp_path / "report", n_resamples=20)
    assert (summary["a"], summary["b"], summary["split"]) == ("greedy:validation", "beam:validation", "validation")
    assert (tmp_path / "report" / "compare.md").read_text().startswith(
        "# beam:validation vs greedy:validation (validation, 40 items)")


def test_same_run_shows_no_difference(runs):
    rows = load_result(runs[0])["predictions"]
    tests = paired_metrics(rows, list(reversed(rows)), NAMES, "lower", n_resamples=50)  # order does not matter
    assert all(t["delta"] == 0 and t["p_value"] == 1.0 for t in tests.values())


def test_different_test_sets_are_refused(runs):
    rows = load_result(runs[0])["predictions"]
    other = [dict(r, references=["something else"]) for r in rows]
    with pytest.raises(ValueError, match="not evaluated on the same test set"):
        paired_metrics(rows, other, NAMES, "lower")
    with pytest.raises(FileNotFoundError, match="no eval result at"):
        load_result(runs[0], split="validation")


def test_compare_command(runs, tmp_path):
    a, b = runs
    proc = run_ftjax("compare", str(a), str(b), f"--out={tmp_path / 'r'}", "--bootstrap=100")
    assert "| exact_match |" in proc.stdout and (tmp_path / "r" / "compare.html").is_file()
    proc = run_ftjax("compare", str(a), str(tmp_path / "nope"), check=False)
    assert proc.returncode == 2 and "no eval result at" in proc.stderr.strip().splitlines()[-1]
