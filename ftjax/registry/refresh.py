"""Re-fine-tuning as a measured step: train a candidate on the old training data plus newly collected labelled
data (continuing from the champion's adapter and heads, or from the base), score champion and candidate on the
same fixed held-out sets (the old test set, and the held-out part of the new data), and promote the candidate
only when it beats the champion on the new data by `margin` without losing more than `tolerance` on the old
test set (the forgetting check). The decision and every figure go into the registry with the candidate.

The trainer and the evaluator are passed in (`train(config, workdir)`, `evaluate(workdir, file) -> metrics`):
the `ftjax refresh` command supplies `ftjax train`'s loop and `ftjax eval`'s runner. Rerunning a killed refresh
with the same folder resumes its training and registers the candidate once.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import ml_collections

from ftjax.data.sources import load_rows, strip_trace
from ftjax.data.split import split_rows
from ftjax.io import file_sha256, write_json, write_jsonl
from ftjax.registry.store import Registry
from ftjax.workdir import read_config


@dataclasses.dataclass(frozen=True)
class Rule:
    metric: str = "accuracy"
    mode: str = "max"  # max: higher is better
    margin: float = 0.0  # the candidate must beat the champion on the new held-out data by more than this
    tolerance: float = 0.0  # and may lose at most this on the old test set


def decide(rule: Rule, champion: dict[str, float], candidate: dict[str, float]) -> dict:
    """The decision from {"old_test": value, "new_test": value} of each version."""
    sign = 1.0 if rule.mode == "max" else -1.0
    gain = sign * (candidate["new_test"] - champion["new_test"])
    loss = sign * (champion["old_test"] - candidate["old_test"])
    better, kept = gain > rule.margin, loss <= rule.tolerance
    reasons = []
    if not better:
        reasons.append(f"{rule.metric} on the new data {candidate['new_test']:.4g} vs {champion['new_test']:.4g}: "
                       f"gain {gain:+.4g} is not more than the margin {rule.margin:g}")
    if not kept:
        reasons.append(f"{rule.metric} on the old test set {candidate['old_test']:.4g} vs "
                       f"{champion['old_test']:.4g}: loss {loss:.4g} exceeds the tolerance {rule.tolerance:g}")
    return {"promote": better and kept, "gain_new": gain, "loss_old": loss, "rule": dataclasses.asdict(rule),
            "champion": champion, "candidate": candidate,
            "reason": "; ".join(reasons) or f"gain {gain:+.4g} on the new data, loss {loss:.4g} on the old test set"}


def _raw_rows(spec: str) -> list[dict]:
    return [strip_trace(r) for r in load_rows(spec)]


def write_rows(path: Path, rows: list[dict]) -> Path:
    """Rows as CSV when every value is a plain string (keeps Banking77's layout), else JSONL."""
    if all(isinstance(v, str) for r in rows for v in r.values()) and len({tuple(r) for r in rows}) == 1:
        from ftjax.io import atomic_file

        with atomic_file(path.with_suffix(".csv")) as tmp, tmp.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        return path.with_suffix(".csv")
    return write_jsonl(path.with_suffix(".jsonl"), rows)


def refresh(registry: Registry, name: str, folder: str | Path, new_data: str, old_test: str, *,
            train: Callable[[ml_collections.ConfigDict, Path], dict], evaluate: Callable[[Path, str], dict],
            rule: Rule, new_test: str | None = None, new_test_fraction: float = 0.2, start_over: bool = False,
            overrides: Callable[[ml_collections.ConfigDict], None] = lambda c: None, seed: int = 0) -> dict:
    """Run one refresh in `folder` (champion/ pulled from the registry, data/, candidate/, decision.json) and
    return the decision, with the candidate's version and whether it was promoted."""
    folder = Path(folder)
    champion = registry.champion(name)
    if champion is None:
        raise ValueError(f"{registry.location}: model {name!r} has no champion to refresh; promote a version first")
    for flag, path in (("new_data", new_data), ("old_test", old_test), ("new_test", new_test)):
        if path and not Path(path).is_file():
            raise FileNotFoundError(f"--{flag}: no such file: {path}")
    state_path = folder / "refresh.json"
    state = json.loads(state_path.read_text()) if state_path.is_file() else {}
    if state and state.get("champion") != champion:
        raise ValueError(f"{folder} is a refresh of version {state.get('champion')}; the champion is now "
                         f"{champion}: use a new folder")
    write_json(state_path, state := state | {"champion": champion, "name": name})
    base = folder / "champion"
    if not base.exists():
        registry.pull(name, champion, base)
    config = read_config(base)
    data = folder / "data"
    if "train" not in state:
        data.mkdir(parents=True, exist_ok=True)
        new_rows = _raw_rows(new_data)
        if new_test is None:
            parts = split_rows(new_rows, (1 - new_test_fraction, new_test_fraction), seed, config.data.format)
            new_rows, held = parts["train"], parts["validation"]
            new_test = str(write_rows(data / "new_test", held))
        train_file = write_rows(data / "train", _raw_rows(config.data.train) + new_rows)
        write_json(state_path, state := state | {"train": str(train_file), "new_test": new_test})
    candidate = folder / "candidate"
    config = config.copy_and_resolve_references()
    config.data.train = state["train"]
    config.model.init_from = "" if start_over else str(base)
    overrides(config)
    train(config, candidate)
    scores = {}
    for who, wd in (("champion", base), ("candidate", candidate)):
        scores[who] = {split: evaluate(wd, file)[rule.metric]["value"]
                       for split, file in (("old_test", old_test), ("new_test", state["new_test"]))}
    decision = decide(rule, scores["champion"], scores["candidate"])
    version = state.get("version") or registry.register(
        candidate, name, parent=None if start_over else champion,
        tags={"refresh.folder": str(folder.resolve()), "refresh.new_data": new_data,
              "refresh.new_data.sha256": file_sha256(new_data), "refresh.old_test": old_test,
              "refresh.new_test": state["new_test"], "refresh.from": champion,
              "refresh.start_over": str(start_over)})
    write_json(state_path, state := state | {"version": version})
    decision |= {"name": name, "champion_version": champion, "candidate_version": version}
    for k, v in {"refresh.decision": "promoted" if decision["promote"] else "rejected",
                 "refresh.reason": decision["reason"][:5000],
                 "refresh.scores": json.dumps({"champion": scores["champion"], "candidate": scores["candidate"]})
                 }.items():
        registry.client.set_model_version_tag(name, version, k, v)
    write_json(folder / "decision.json", decision)
    if decision["promote"]:
        registry.promote(name, version, reason=decision["reason"])
    return decision
