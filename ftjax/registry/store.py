"""A model registry on MLflow's: each version of a named model is an MLflow model version whose run holds the
training run as artifacts (config.json, summary.json, eval/*.json and the chosen checkpoint: adapter, task
heads and optimizer state), its config as parameters, its figures as metrics, and as tags its data fingerprints
(SHA-256 of each data file), objective verdict and lineage (the version it continued from, the data it added).

The serving version is the registered model's `champion` alias. Promotion writes the new version's
`promoted_from` tag first and moves the alias last, in one database update, so a promotion killed at any point
leaves either the old champion or the new one, never neither; rollback moves the alias back along
`promoted_from`.

`location` is a folder (the embedded default: a SQLite MLflow store, DIR/mlflow.db, and artifacts in
DIR/artifacts, created by the first command) or an MLflow tracking URI (a team's server, `http://...`).
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ftjax.io import atomic_dir, file_sha256
from ftjax.train.checkpoints import Checkpoints
from ftjax.train.restore import pick_step
from ftjax.train.trackers import log_config_params
from ftjax.workdir import Workdir, read_config

CHAMPION = "champion"
EXPERIMENT = "ftjax-registry"


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def data_fingerprints(config: Any) -> dict[str, str]:
    """`data.<split>.sha256` for each data split of the config that is a local file (hub specs are recorded
    by name: they have no bytes here to hash)."""
    out = {}
    for split in ("train", "validation", "test"):
        spec = str(config.data.get(split, "") or "")
        if spec:
            out[f"data.{split}"] = spec
            if Path(spec).is_file():
                out[f"data.{split}.sha256"] = file_sha256(spec)
    return out


def run_metrics(workdir: str | os.PathLike) -> dict[str, float]:
    """The run's figures: summary.json's numbers as train/*, each eval/<split>.json metric as <split>/<name>
    (with _low and _high for its interval)."""
    wd = Workdir(workdir)
    found = {}
    if wd.summary.is_file():
        summary = json.loads(wd.summary.read_text())
        found |= {f"train/{k}": float(v) for k, v in summary.items()
                  if isinstance(v, (int, float)) and not isinstance(v, bool)}
    for path in sorted(wd.eval.glob("*.json")) if wd.eval.is_dir() else []:
        report = json.loads(path.read_text())
        for name, m in (report.get("metrics") or {}).items() if isinstance(report, dict) else []:
            for part, key in (("value", ""), ("low", "_low"), ("high", "_high")):
                if isinstance(m, dict) and isinstance(m.get(part), (int, float)):
                    found[f"{path.stem}/{name}{key}"] = float(m[part])
    return found


class Registry:
    def __init__(self, location: str | os.PathLike = "registry"):
        try:
            from mlflow import MlflowClient
        except ImportError:
            raise ValueError("the registry needs MLflow: pip install 'ftjax[tracking]'") from None
        location = str(location)
        self.artifacts = None
        if "://" in location:
            uri = location
        else:
            folder = Path(location).resolve()
            if folder.exists() and not folder.is_dir():
                raise NotADirectoryError(f"--registry={location} is a file; give a folder or an MLflow URI")
            folder.mkdir(parents=True, exist_ok=True)
            uri, self.artifacts = f"sqlite:///{folder / 'mlflow.db'}", (folder / "artifacts").as_uri()
        self.location, self.uri = location, uri
        self.client = MlflowClient(tracking_uri=uri, registry_uri=uri)

    def _experiment_id(self) -> str:
        found = self.client.get_experiment_by_name(EXPERIMENT)
        if found is not None:
            return found.experiment_id
        return self.client.create_experiment(EXPERIMENT, artifact_location=self.artifacts)

    def register(self, workdir: str | os.PathLike, name: str, *, checkpoint: str = "best",
                 parent: str | None = None, tags: dict[str, str] | None = None) -> str:
        """Register `workdir` (at `checkpoint`) as a new version of `name`; returns its version number. The
        version appears only once every artifact is stored (a kill before leaves an unregistered run)."""
        wd = Workdir(workdir)
        config = read_config(workdir)
        ckpts = Checkpoints(wd.checkpoints, keep=config.checkpoint.keep, metric=config.train.early_stopping.metric,
                            mode=config.train.early_stopping.mode, async_save=False)
        step = pick_step(ckpts, checkpoint)
        if parent is not None:
            self.version(name, parent)  # the parent must exist
        run = self.client.create_run(self._experiment_id(), run_name=f"{name}:{Path(workdir).resolve().name}")
        run_id = run.info.run_id
        log_config_params(self.client, run_id, config)
        for k, v in run_metrics(workdir).items():
            self.client.log_metric(run_id, k, v)
        with tempfile.TemporaryDirectory() as tmp:
            run_dir = Path(tmp) / "run"
            (run_dir / "checkpoints").mkdir(parents=True)
            shutil.copytree(wd.checkpoints / str(step), run_dir / "checkpoints" / str(step))
            for f in (wd.config, wd.summary):
                if f.is_file():
                    shutil.copy2(f, run_dir / f.name)
            if wd.eval.is_dir():
                (run_dir / "eval").mkdir()
                for f in wd.eval.glob("*.json"):
                    shutil.copy2(f, run_dir / "eval" / f.name)
            if (Path(workdir) / "audit").is_dir():  # a bias audit made before registering goes with the version
                shutil.copytree(Path(workdir) / "audit", run_dir / "audit")
            self.client.log_artifacts(run_id, str(run_dir), "run")
        summary = json.loads(wd.summary.read_text()) if wd.summary.is_file() else {}
        verdict = summary.get("objective", {}) if isinstance(summary.get("objective"), dict) else {}
        version_tags = {"workdir": str(Path(workdir).resolve()), "checkpoint_step": str(step),
                        "parent_version": parent or "", "registered_at": _now(),
                        "objective": json.dumps(verdict)[:5000] if verdict else "", **data_fingerprints(config),
                        **(tags or {})}
        for k, v in version_tags.items():
            self.client.set_tag(run_id, k, v)
        self.client.set_terminated(run_id)
        if not self.client.search_registered_models(f"name = '{name}'"):
            self.client.create_registered_model(name)
        mv = self.client.create_model_version(name, f"{run.info.artifact_uri}/run", run_id=run_id, tags=version_tags)
        return str(mv.version)

    def version(self, name: str, version: str) -> Any:
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_model_version(name, str(version))
        except MlflowException:
            have = ", ".join(v["version"] for v in self.versions(name)) or "none"
            raise ValueError(f"{self.location}: model {name!r} has no version {version} (versions: {have})") from None

    def champion(self, name: str) -> str | None:
        from mlflow.exceptions import MlflowException

        try:
            return str(self.client.get_model_version_by_alias(name, CHAMPION).version)
        except MlflowException:
            return None

    def versions(self, name: str) -> list[dict]:
        """Every version of `name`, oldest first, with its tags, metrics and whether it is the champion."""
        current = self.champion(name)
        found = self.client.search_model_versions(f"name = '{name}'")
        out = []
        for mv in sorted(found, key=lambda m: int(m.version)):
            metrics = self.client.get_run(mv.run_id).data.metrics if mv.run_id else {}
            out.append({"version": str(mv.version), "champion": str(mv.version) == current, "run_id": mv.run_id,
                        "source": mv.source, "tags": dict(mv.tags), "metrics": dict(metrics)})
        return out

    def show(self, name: str, version: str | None = None) -> dict:
        """One version (default: the champion) with its lineage: the chain of parent versions back to the
        first."""
        version = version or self.champion(name)
        if version is None:
            raise ValueError(f"{self.location}: model {name!r} has no champion; give --version")
        self.version(name, version)
        by = {v["version"]: v for v in self.versions(name)}
        info = dict(by[str(version)])
        chain, seen = [], {str(version)}
        parent = info["tags"].get("parent_version")
        while parent and parent in by and parent not in seen:
            chain.append(parent)
            seen.add(parent)
            parent = by[parent]["tags"].get("parent_version")
        return info | {"name": name, "lineage": chain}

    def promote(self, name: str, version: str, reason: str = "") -> str | None:
        """Make `version` the champion; returns the previous one."""
        self.version(name, version)
        before = self.champion(name)
        if before == str(version):
            return before
        for k, v in {"promoted_from": before or "", "promoted_at": _now(), "promotion_reason": reason}.items():
            self.client.set_model_version_tag(name, str(version), k, v)
        self.client.set_registered_model_alias(name, CHAMPION, str(version))  # the commit point
        return before

    def rollback(self, name: str) -> str:
        """Give the champion alias back to the version the current champion was promoted from."""
        current = self.champion(name)
        if current is None:
            raise ValueError(f"{self.location}: model {name!r} has no champion to roll back")
        previous = self.version(name, current).tags.get("promoted_from")
        if not previous:
            raise ValueError(f"version {current} of {name!r} was the first champion: nothing to roll back to")
        self.client.set_model_version_tag(name, previous, "rolled_back_from", current)
        self.client.set_registered_model_alias(name, CHAMPION, previous)
        return previous

    def attach(self, name: str, version: str, folder: str | os.PathLike, as_name: str = "audit") -> str:
        """Store `folder` (e.g. an audit report) with version `version`, under run/<as_name>/ of its artifacts
        (so `pull` brings it back), and tag the version `attached.<as_name>`; returns the artifact path."""
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"no such folder: {folder}")
        if not as_name or "/" in as_name or as_name in ("checkpoints", "eval"):
            raise ValueError(f"cannot attach as {as_name!r}: give a plain name other than checkpoints or eval")
        mv = self.version(name, version)
        self.client.log_artifacts(mv.run_id, str(folder), f"run/{as_name}")
        self.client.set_model_version_tag(name, str(version), f"attached.{as_name}", f"{_now()} from {folder}")
        return f"{mv.source}/{as_name}"

    def pull(self, name: str, version: str, out: str | os.PathLike) -> Path:
        """The version's training run as a workdir at `out` (config, summary, eval results and its checkpoint),
        ready for `ftjax eval --workdir`, `ftjax monitor` or `model.init_from`; an existing folder is kept."""
        mv = self.version(name, version)
        out = Path(out)
        if out.exists():
            raise FileExistsError(f"{out} exists; pull into a new folder")
        from mlflow.artifacts import download_artifacts

        with atomic_dir(out) as tmp:
            got = Path(download_artifacts(artifact_uri=mv.source, dst_path=str(tmp / "download"),
                                          tracking_uri=self.uri))
            for item in got.iterdir():
                item.rename(tmp / item.name)
            shutil.rmtree(tmp / "download", ignore_errors=True)
        return out
