"""Drift statistics against scipy/numpy references, no alarm on a same-distribution sample and an alarm on a
shifted one (text checks and, with a tiny classification run, the label and embedding checks), the history
that skips files already monitored, the report, and quality decay."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as scipy_stats
from scipy.spatial.distance import jensenshannon

from conftest import run_ftjax, write_csv
from ftjax.monitor import drift, stats
from ftjax.monitor.report import append_history, read_history


def test_psi_matches_its_formula():
    e, a = np.array([30, 50, 20]), np.array([10, 40, 50])
    pe, pa = e / e.sum(), a / a.sum()
    assert stats.psi(e, a) == pytest.approx(np.sum((pa - pe) * np.log(pa / pe)))
    assert stats.psi(e, e) == 0.0
    assert np.isfinite(stats.psi(np.array([5, 0]), np.array([0, 5])))  # empty bins are smoothed, not infinite


def test_length_psi_bins_at_reference_quantiles():
    rng = np.random.default_rng(0)
    ref, cur = rng.integers(1, 30, 1000), rng.integers(5, 40, 300)
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, 11)[1:-1]))
    count = lambda x: np.array([np.sum(np.digitize(x, edges, right=False) == i) for i in range(len(edges) + 1)])
    assert stats.length_psi(ref, cur) == pytest.approx(stats.psi(count(ref), count(cur)))


def test_vocab_js_and_oov_match_scipy_and_counting():
    ref = [["a", "b", "b"], ["c"]]
    cur = [["a", "d"], ["d", "b"]]
    p, q = [1, 2, 1, 0], [1, 1, 0, 2]  # counts of a, b, c, d
    assert stats.vocab_js(ref, cur) == pytest.approx(jensenshannon(p, q, base=2))
    assert stats.oov_rate(ref, cur) == pytest.approx(2 / 4)  # two of the four current words are "d"


def test_label_chi2_matches_scipy():
    ref, cur = ["x"] * 30 + ["y"] * 10, ["x"] * 10 + ["y"] * 20 + ["z"] * 5
    table = np.array([[30, 10, 0], [10, 20, 5]])
    assert stats.label_chi2_p(ref, cur) == pytest.approx(scipy_stats.chi2_contingency(table).pvalue)


def test_mmd_matches_a_direct_computation_and_its_test_separates():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(40, 3)), rng.normal(size=(30, 3)) + 1.0
    x = np.concatenate([a, b])
    d2 = ((x[:, None] - x[None]) ** 2).sum(-1)
    bw = np.sqrt(np.median(d2[np.triu_indices(70, 1)]))
    k = np.exp(-d2 / (2 * bw ** 2))
    direct = k[:40, :40].mean() + k[40:, 40:].mean() - 2 * k[:40, 40:].mean()
    value, p = stats.mmd_test(a, b, permutations=200)
    assert value == pytest.approx(direct)
    assert p < 0.01
    # with no difference the p-value is uniform: about 5% of same-distribution pairs fall below 0.05
    null = [stats.mmd_test(rng.normal(size=(40, 3)), rng.normal(size=(30, 3)), permutations=100, seed=s)[1]
            for s in range(20)]
    assert np.mean(np.array(null) < 0.05) <= 0.2 and 0.2 < np.median(null) < 0.8


def _texts(rng, n, words):
    return [" ".join(rng.choice(words, rng.integers(3, 12))) for _ in range(n)]


def test_text_checks_quiet_on_the_same_distribution_and_alarm_on_a_shift():
    rng = np.random.default_rng(1)
    common = [f"w{i}" for i in range(60)]
    block = drift.default_config()
    ref = drift.Reference(_texts(rng, 600, common), block)
    same = drift.compare(ref, _texts(rng, 150, common))
    assert not same["alarm"], same
    shifted = [t + " " + " ".join(rng.choice([f"new{i}" for i in range(30)], 6)) for t in _texts(rng, 150, common)]
    moved = drift.compare(ref, shifted)
    flagged = {c["check"] for c in moved["checks"] if c["alarm"]}
    assert {"length_psi", "vocab_js", "oov_rate"} <= flagged


def test_bad_thresholds_are_one_line_errors():
    block = drift.default_config()
    block.length_psi = "high"
    with pytest.raises(ValueError, match="monitor.length_psi='high': give a number or auto"):
        drift.check(block)
    block.length_psi = "0.3"
    drift.check(block)
    assert drift.threshold_of(block, "length_psi") == 0.3


def test_history_keeps_whole_lines_after_a_torn_write(tmp_path):
    path = tmp_path / "drift.jsonl"
    append_history(path, {"n": 1})
    with path.open("a") as f:
        f.write('{"n": 2, "torn')  # a kill mid-line
    assert read_history(path) == [{"n": 1}]
    append_history(path, {"n": 3})
    assert read_history(path) == [{"n": 1}, {"n": 3}]


@pytest.fixture(scope="module")
def shifted_run(tiny_model_dir, tmp_path_factory):
    """A tiny classification run trained on alpha/beta only; production weeks: one like its training data, and
    one where alpha dominates and gamma (never trained on, other words) appears."""
    from conftest import sft_config
    from ftjax.train import loop

    root = tmp_path_factory.mktemp("monitor")
    rng = np.random.RandomState(0)
    noise = lambda: [f"w{rng.randint(20, 60)}" for _ in range(rng.randint(0, 4))]
    row = lambda k: [" ".join(["w3", *noise(), f"w{10 + k}", *noise()]), ["alpha", "beta", "gamma"][k]]
    gamma = lambda: [" ".join(["w5", *[f"w{rng.randint(70, 120)}" for _ in range(6)], "w12"]), "gamma"]
    files = {"train": write_csv(root / "train.csv", [row(rng.randint(2)) for _ in range(96)]),
             "validation": write_csv(root / "val.csv", [row(rng.randint(2)) for _ in range(24)]),
             "week1": write_csv(root / "week1.csv", [row(rng.randint(2)) for _ in range(60)]),
             "week2": write_csv(root / "week2.csv", [row(0) for _ in range(45)] + [gamma() for _ in range(15)]),
             "labelled1": write_csv(root / "labelled1.csv", [row(rng.randint(2)) for _ in range(40)]),
             "labelled2": write_csv(root / "labelled2.csv", [gamma() for _ in range(40)])}
    config = sft_config(**{"model.path": str(tiny_model_dir), "data.train": files["train"],
                           "data.validation": files["validation"], "data.columns": "label=category",
                           "data.format": "classification", "data.labels": "alpha,beta,gamma",
                           "head.type": "classification", "train.steps": 40, "train.batch_size": 8,
                           "train.learning_rate": 3e-2, "train.eval_every": 20, "checkpoint.every": 20,
                           "train.early_stopping.metric": "val_accuracy", "train.early_stopping.mode": "max"})
    wd = root / "run"
    loop.main(config, wd)
    return wd, files, root


@pytest.mark.long
def test_monitor_drift_with_the_model_fires_on_the_shifted_week_only(shifted_run):
    wd, files, root = shifted_run
    out = root / "drift_out"
    args = ["monitor", "drift", f"--workdir={wd}", f"--current={files['week1']},{files['week2']}", f"--out={out}",
            "--config.monitor.permutations=400"]
    r = run_ftjax(*args)
    assert r.returncode == 0, r.stderr
    history = read_history(out / "drift.jsonl")
    assert [h["name"] for h in history] == ["week1", "week2"]
    week1, week2 = ({c["check"]: c for c in h["checks"]} for h in history)
    assert set(week1) == {"length_psi", "vocab_js", "oov_rate", "label_psi", "embedding_mmd"}
    assert not history[0]["alarm"], week1
    assert week2["label_psi"]["alarm"] and week2["embedding_mmd"]["alarm"] and week2["oov_rate"]["alarm"]
    html = (out / "report.html").read_text()
    assert "week2" in html and "ALARM" in html and '<img src="drift.png"' in html
    assert (out / "drift.png").stat().st_size > 0
    # rerun with the same files: nothing recomputed (the history does not grow), and a failing exit on request
    r = run_ftjax(*args, "--fail_on_alarm", check=False)
    assert r.returncode == 1 and len(read_history(out / "drift.jsonl")) == 2


def test_monitor_quality_flags_decay_against_the_held_out_score(shifted_run):
    wd, files, root = shifted_run
    out = root / "quality_out"
    r = run_ftjax("monitor", "quality", f"--workdir={wd}", f"--labelled={files['labelled1']},{files['labelled2']}",
                  f"--out={out}", "--baseline_score=90", "--max_drop=5")
    assert r.returncode == 0, r.stderr
    first, second = read_history(out / "quality.jsonl")
    assert first["value"] >= 85 and not first["alarm"]  # the traffic it was trained for
    assert second["value"] < 50 and second["alarm"] and second["significant"]  # gamma: never seen
    assert "Quality by file" in (out / "report.md").read_text()


def test_monitor_errors_are_one_line(tmp_path):
    r = run_ftjax("monitor", "drift", f"--current={tmp_path / 'missing.csv'}", f"--reference={tmp_path}/x.csv", check=False)
    assert r.returncode == 2 and "no such file" in r.stderr and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.long
def test_monitor_usage_errors_are_one_line(tmp_path):
    r = run_ftjax("monitor", "sideways", check=False)
    assert r.returncode == 2 and "usage: ftjax monitor {drift|quality}" in r.stderr
    r = run_ftjax("monitor", "quality", f"--labelled={tmp_path / 'x.csv'}", check=False)
    assert r.returncode == 2 and "needs --workdir" in r.stderr
