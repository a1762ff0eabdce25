"""The MLflow registry: versions and lineage round-trip through the SQLite store, a promotion killed before or
after its commit point leaves one champion (the old one, or the new one), rollback, pull gives a workdir that
evaluates as the original; refresh promotes a candidate that learned the new class and refuses one that did not
improve by the margin, recording the decision either way."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, run_ftjax, sft_config, write_csv

pytest.importorskip("mlflow")

from ftjax.registry.refresh import Rule, decide  # noqa: E402
from ftjax.registry.store import Registry  # noqa: E402

LABELS = ["alpha", "beta", "gamma"]


@pytest.fixture(scope="module")
def runs(tiny_model_dir, tmp_path_factory):
    """A tiny classification run that never saw gamma, registered as version 1 (champion), and its data."""
    from ftjax.train import loop

    root = tmp_path_factory.mktemp("registry")
    rng = np.random.RandomState(0)
    noise = lambda: [f"w{rng.randint(20, 60)}" for _ in range(rng.randint(0, 3))]
    row = lambda k: [" ".join(["w3", *noise(), f"w{10 + k}", *noise()]), LABELS[k]]
    files = {"train": write_csv(root / "train.csv", [row(rng.randint(2)) for _ in range(96)]),
             "old_test": write_csv(root / "old_test.csv", [row(rng.randint(2)) for _ in range(30)]),
             "new": write_csv(root / "new.csv", [row(2) for _ in range(48)] + [row(rng.randint(2)) for _ in range(16)]),
             "new_test": write_csv(root / "new_test.csv", [row(2) for _ in range(20)])}
    config = sft_config(**{"model.path": str(tiny_model_dir), "data.train": files["train"],
                           "data.validation": "holdout:0.2", "data.columns": "label=category",
                           "data.format": "classification", "data.labels": ",".join(LABELS),
                           "head.type": "classification", "train.steps": 30, "train.batch_size": 8,
                           "train.learning_rate": 3e-2, "train.eval_every": 30, "checkpoint.every": 30,
                           "train.early_stopping.metric": "val_accuracy", "train.early_stopping.mode": "max"})
    wd = root / "v1"
    loop.main(config, wd)
    registry = root / "registry"
    reg = Registry(registry)
    assert reg.register(wd, "b77") == "1"
    reg.promote("b77", "1", "first")
    return root, wd, registry, files


def test_versions_and_lineage_round_trip_through_the_store(runs):
    root, wd, registry, files = runs
    reg = Registry(registry)
    v2 = reg.register(wd, "lineage", parent=None)
    v3 = reg.register(wd, "lineage", parent=v2, tags={"note": "continued"})
    again = Registry(registry)  # a fresh client on the same SQLite store
    shown = again.show("lineage", v3)
    assert shown["lineage"] == [v2] and shown["tags"]["note"] == "continued"
    assert shown["tags"]["data.train.sha256"] == __import__("hashlib").sha256(
        open(files["train"], "rb").read()).hexdigest()
    assert shown["tags"]["workdir"] == str(wd.resolve())
    assert shown["metrics"]["train/best"] == json.loads((wd / "summary.json").read_text())["best"]
    assert [v["version"] for v in again.versions("lineage")] == [v2, v3]
    with pytest.raises(ValueError, match="has no version 9"):
        again.register(wd, "lineage", parent="9")


def _promote_and_die(registry, version, when):
    """Promote in a child process that SIGKILLs itself just before (or just after) the alias moves."""
    code = f"""
import os, signal
from mlflow import MlflowClient
from ftjax.registry.store import Registry
real = MlflowClient.set_registered_model_alias
def cut(self, *a, **k):
    if {when!r} == "after":
        real(self, *a, **k)
    os.kill(os.getpid(), signal.SIGKILL)
MlflowClient.set_registered_model_alias = cut
Registry({str(registry)!r}).promote("kill", {version!r})
"""
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr


def test_a_promotion_killed_midway_leaves_one_champion_and_rollback_returns(runs):
    root, wd, registry, _ = runs
    reg = Registry(registry)
    first, second = reg.register(wd, "kill"), reg.register(wd, "kill")
    reg.promote("kill", first)
    _promote_and_die(registry, second, "before")
    assert Registry(registry).champion("kill") == first  # the old version stays current
    _promote_and_die(registry, second, "after")
    assert Registry(registry).champion("kill") == second
    assert Registry(registry).rollback("kill") == first
    assert Registry(registry).champion("kill") == first
    with pytest.raises(ValueError, match="first champion: nothing to roll back to"):
        Registry(registry).rollback("kill")


@pytest.mark.long
def test_pulled_version_predicts_as_the_original(runs, tmp_path):
    from ftjax.data.sources import load_rows
    from ftjax.monitor.model_view import ModelView, input_of
    from ftjax.train.restore import load_run

    root, wd, registry, files = runs
    out = tmp_path / "pulled"
    r = run_ftjax("registry", "pull", f"--registry={registry}", "--name=b77", "--version=1", f"--out={out}")
    assert "pulled" in r.stdout
    inputs = [input_of(row) for row in load_rows(files["old_test"], {"label": "category"})]
    loaded = [load_run(wd), load_run(out)]
    assert loaded[0][3] == loaded[1][3]  # the same checkpoint step
    predicted = [ModelView(m, tok, cfg).predict(inputs) for m, tok, cfg, _ in loaded]
    assert predicted[0] == predicted[1] and set(predicted[0]) <= set(LABELS)
    r = run_ftjax("registry", "pull", f"--registry={registry}", "--name=b77", "--version=1", f"--out={out}",
                  check=False)
    assert r.returncode == 2 and "exists" in r.stderr  # a user's folder is never overwritten


def test_decision_rule_both_sides():
    rule = Rule("accuracy", "max", margin=1.0, tolerance=2.0)
    champion = {"old_test": 90.0, "new_test": 40.0}
    assert decide(rule, champion, {"old_test": 89.0, "new_test": 80.0})["promote"]
    assert not decide(rule, champion, {"old_test": 87.0, "new_test": 80.0})["promote"]  # forgets the old test
    no_gain = decide(rule, champion, {"old_test": 90.0, "new_test": 40.5})
    assert not no_gain["promote"] and "not more than the margin" in no_gain["reason"]
    lower = Rule("loss", "min", margin=0.0, tolerance=0.0)
    assert decide(lower, {"old_test": 1.0, "new_test": 2.0}, {"old_test": 1.0, "new_test": 1.5})["promote"]


@pytest.mark.long
def test_refresh_promotes_a_candidate_that_learned_the_new_class_and_refuses_one_that_did_not(runs):
    root, wd, registry, files = runs
    common = [f"--registry={registry}", "--name=b77", f"--old_test={files['old_test']}",
              f"--new_test={files['new_test']}", "--set=train.steps=30,train.eval_every=30,checkpoint.every=30"]
    out = root / "refresh1"
    r = run_ftjax("refresh", f"--new_data={files['new']}", f"--out={out}", "--tolerance=10", *common, timeout=600)
    decision = json.loads((out / "decision.json").read_text())
    assert decision["promote"], decision
    assert decision["candidate"]["new_test"] > decision["champion"]["new_test"] + 50  # gamma: never seen before
    reg = Registry(registry)
    assert reg.champion("b77") == decision["candidate_version"] and "PROMOTED" in r.stdout
    shown = reg.show("b77")
    assert shown["lineage"] == ["1"] and shown["tags"]["refresh.decision"] == "promoted"
    # a second refresh on a few old-style rows, held to a 5-point gain and no loss on the old test set: refused
    plain = write_csv(root / "plain.csv", [r for r in __import__("csv").reader(open(files["train"]))][1:40])
    out2 = root / "refresh2"
    r = run_ftjax("refresh", f"--new_data={plain}", f"--out={out2}", "--margin=5", *common, timeout=600)
    decision2 = json.loads((out2 / "decision.json").read_text())
    assert not decision2["promote"] and "not promoted" in r.stdout
    assert Registry(registry).champion("b77") == decision["candidate_version"]  # the champion stays
    rejected = Registry(registry).show("b77", decision2["candidate_version"])
    assert rejected["tags"]["refresh.decision"] == "rejected"
    assert rejected["tags"]["refresh.reason"] == decision2["reason"] and decision2["reason"]
    assert (decision2["gain_new"] <= 5) or (decision2["loss_old"] > 0)  # the reason the rule gives


def test_an_audit_report_attaches_to_a_version_and_comes_back_with_it(runs, tmp_path):
    root, wd, registry, files = runs
    report = tmp_path / "audit"
    report.mkdir()
    (report / "report.md").write_text("# Bias audit\n\ngender: no output changed\n")
    (report / "report.html").write_text("<html><body><table></table></body></html>")
    reg = Registry(registry)
    reg.attach("b77", "1", report)
    assert "attached.audit" in reg.version("b77", "1").tags
    out = reg.pull("b77", "1", tmp_path / "pulled")
    assert (out / "audit" / "report.md").read_text() == (report / "report.md").read_text()
    assert (out / "audit" / "report.html").is_file() and (out / "checkpoints").is_dir()
    with pytest.raises(FileNotFoundError, match="no such folder"):
        reg.attach("b77", "1", tmp_path / "missing")
    with pytest.raises(ValueError, match="cannot attach as 'eval'"):
        reg.attach("b77", "1", report, as_name="eval")
