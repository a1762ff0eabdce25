"""Experiment trackers beside metrics.jsonl and TensorBoard: MLflow and Weights & Biases, chosen by
`train.log_to` ("mlflow", "wandb" or both, comma-separated; optional extra `ftjax[tracking]`). One interface:
`log(step, metrics)` and `close()`. MLflow writes to a SQLite store, WORKDIR/mlflow.db, unless
`train.tracking.mlflow_uri` names a tracking server (MLflow 3 refuses new file stores); W&B runs `offline` by
default (`train.tracking.wandb_mode`), its files under WORKDIR/wandb for `wandb sync`. A resumed run continues
the same tracker runs: their ids are kept in WORKDIR/trackers.json.
"""

from __future__ import annotations

import json
import time
from typing import Any, Protocol

import ml_collections

from ftjax.io import write_json
from ftjax.train.guard import flat
from ftjax.workdir import Workdir

TRACKERS = ("mlflow", "wandb")


class Tracker(Protocol):
    def log(self, step: int, metrics: dict[str, float]) -> None: ...

    def close(self) -> None: ...


def tracker_names(config: ml_collections.ConfigDict) -> list[str]:
    """The trackers `train.log_to` names; an unknown one is a one-line error."""
    names = [n.strip() for n in str(config.train.get("log_to", "")).split(",") if n.strip()]
    for n in names:
        if n not in TRACKERS:
            raise ValueError(f"train.log_to names {n!r}; choose from {', '.join(TRACKERS)} (comma-separated)")
    return names


def open_trackers(wd: Workdir, config: ml_collections.ConfigDict) -> list[Tracker]:
    """The run's trackers, started (or resumed, by the ids in trackers.json)."""
    names = tracker_names(config)
    if not names:
        return []
    path = wd.root / "trackers.json"
    ids = json.loads(path.read_text()) if path.is_file() else {}
    settings = config.train.get("tracking", ml_collections.ConfigDict())
    opened = {}
    for name in names:
        try:
            opened[name] = (MLflowTracker if name == "mlflow" else WandbTracker)(wd, config, settings, ids.get(name))
        except ImportError:
            raise ValueError(f"train.log_to={name} needs the tracking extra: pip install 'ftjax[tracking]'") from None
    write_json(path, {name: t.run_id for name, t in opened.items()})
    return list(opened.values())


def log_config_params(client: Any, run_id: str, config: ml_collections.ConfigDict) -> None:
    """The resolved config as an MLflow run's parameters: dotted keys, values as text cut to MLflow's 500
    characters, sent 100 at a time (MLflow's most per batch)."""
    from mlflow.entities import Param

    params = sorted((k, str(v)[:500]) for k, v in flat(config.to_dict()).items())
    for i in range(0, len(params), 100):
        client.log_batch(run_id, params=[Param(k, v) for k, v in params[i:i + 100]])


class MLflowTracker:
    def __init__(self, wd: Workdir, config: ml_collections.ConfigDict, settings: Any, run_id: str | None):
        from mlflow import MlflowClient

        uri = settings.get("mlflow_uri", "") or f"sqlite:///{(wd.root / 'mlflow.db').resolve()}"
        self.client = MlflowClient(tracking_uri=uri)
        name = settings.get("experiment", "ftjax")
        experiment = self.client.get_experiment_by_name(name)
        experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(name)
        if run_id is None:
            run_id = self.client.create_run(experiment_id, run_name=wd.root.resolve().name).info.run_id
            log_config_params(self.client, run_id, config)
        self.run_id = run_id

    def log(self, step: int, metrics: dict[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()])

    def close(self) -> None:
        self.client.set_terminated(self.run_id)


class WandbTracker:
    def __init__(self, wd: Workdir, config: ml_collections.ConfigDict, settings: Any, run_id: str | None):
        import wandb

        self.run = wandb.init(project=settings.get("wandb_project", "ftjax"), dir=str(wd.root),
                              mode=settings.get("wandb_mode", "offline"), id=run_id,
                              resume="allow" if run_id else None, name=wd.root.resolve().name, config=config.to_dict(),
                              reinit="create_new")
        self.run_id = self.run.id

    def log(self, step: int, metrics: dict[str, float]) -> None:
        self.run.log(dict(metrics), step=step)

    def close(self) -> None:
        self.run.finish()
