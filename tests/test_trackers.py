"""MLflow and W&B beside metrics.jsonl: the same per-step figures reach each tracker, a resumed run continues the
same tracker runs, and a bad tracker name is a one-line error (skipped without the tracking extra)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import killed_at_step, sft_config, write_rows
from ftjax.train import loop
from ftjax.workdir import read_metrics


@pytest.fixture
def rows(tmp_path):
    rng = np.random.RandomState(0)
    made = [{"prompt": f"w3 w{a}", "completion": f" w{a % 7 + 1} w5"} for a in rng.randint(10, 100, 24)]
    return {"data.train": write_rows(tmp_path / "train.jsonl", made[:16]),
            "data.validation": write_rows(tmp_path / "val.jsonl", made[16:])}


def test_mlflow_and_wandb_get_every_logged_step_and_a_resume_continues_them(tiny_model_dir, rows, tmp_path,
                                                                            monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_SILENT", "true")
    config = sft_config(**{"model.path": str(tiny_model_dir), **rows, "train.steps": 6, "train.eval_every": 3,
                           "checkpoint.every": 2, "train.log_to": "mlflow,wandb"})
    work = tmp_path / "run"
    undo = killed_at_step(monkeypatch, 4)
    with pytest.raises(KeyboardInterrupt):
        loop.main(config, work)
    undo()
    first = json.loads((work / "trackers.json").read_text())
    loop.main(config, work)  # resumes: the same tracker runs go on
    ids = json.loads((work / "trackers.json").read_text())
    assert ids == first

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{(work / 'mlflow.db').resolve()}")
    history = client.get_metric_history(ids["mlflow"], "loss")
    logged = {m["step"]: m["loss"] for m in read_metrics(work)}
    latest = {h.step: h.value for h in history}  # a resumed step's second value is the one that counts
    assert sorted(latest) == sorted(logged) == list(range(1, 7))
    np.testing.assert_allclose([latest[s] for s in range(1, 7)], [logged[s] for s in range(1, 7)], rtol=1e-6)
    run = client.get_run(ids["mlflow"])
    assert run.data.params["train.steps"] == "6" and "val_loss" in run.data.metrics
    assert any(p.name.endswith(ids["wandb"]) for p in (work / "wandb").glob("offline-run-*"))


def test_unknown_tracker_is_a_one_line_error(tiny_model_dir, rows, tmp_path):
    from ftjax.train.config import check

    config = sft_config(**{"model.path": str(tiny_model_dir), **rows, "train.log_to": "mlflow,neptune"})
    with pytest.raises(ValueError, match="train.log_to names 'neptune'; choose from mlflow, wandb"):
        check(config)
