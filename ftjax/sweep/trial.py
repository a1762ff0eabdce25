"""One trial: an `ftjax train` process on the trial's workdir. Its validation curve goes to Optuna as it is
logged; a pruned trial's process gets SIGTERM (it saves the step and exits); the result is read from the
workdir: the metric at the best checkpoint, and what the run cost."""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ftjax.objective import validation_name
from ftjax.train.guard import RunLock
from ftjax.workdir import Workdir

POLL_S = 0.2


@dataclasses.dataclass
class Outcome:
    state: str  # complete | pruned | failed
    value: float | None = None
    attrs: dict = dataclasses.field(default_factory=dict)  # costs, steps, the error of a failed trial


def command(base: str, workdir: Path, settings: dict[str, Any]) -> list[str]:
    """The trial's `ftjax train` command line."""
    return [sys.executable, "-m", "ftjax", "train", f"--config={base}", f"--workdir={workdir}",
            *(f"--config.{k}={v}" for k, v in settings.items())]


def curve(workdir: Path, name: str) -> list[tuple[int, float]]:
    """(step, value) of every logged evaluation of `name` so far (a line being written is skipped)."""
    path = Workdir(workdir).metrics
    out = []
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if name in row:
            out.append((row["step"], row[name]))
    return out


def result(workdir: Path, name: str, also: Sequence[str] = ()) -> Outcome:
    """The finished run's `name` at its best checkpoint (the early-stopping metric's best, or `name` logged at
    that step) with its costs, and each eval name in `also` as logged at that step (None where it was not)."""
    wd = Workdir(workdir)
    summary = json.loads(wd.summary.read_text())
    if summary["metric"] == name:
        value = summary["best"]
    else:
        value = dict(curve(workdir, name)).get(summary["best_step"])
    if value is None:
        raise ValueError(f"{workdir}: the run logs no {name} at its best step {summary['best_step']}; "
                         f"choose a sweep.metric that training computes")
    final = summary.get("final", {})
    attrs = {"steps": summary["steps"], "best_step": summary["best_step"], "minutes": summary["seconds"] / 60,
             "peak_memory_gb": summary.get("peak_memory_gb"), "tokens_per_s": final.get("tokens_per_s"),
             "trainable": summary.get("parameters", {}).get("trainable_params")}
    if also:
        attrs["also"] = {m: dict(curve(workdir, validation_name(m))).get(summary["best_step"]) for m in also}
    return Outcome("complete", float(value), attrs)


def wait_for_workdir(workdir: Path, timeout_s: float = 600.0) -> None:
    """Wait while an earlier process of this trial (killed with its sweep) still saves into the workdir."""
    lock = RunLock(Workdir(workdir).lock)
    deadline = time.time() + timeout_s
    while (holder := lock.live_holder()) is not None:
        if time.time() > deadline:
            raise TimeoutError(f"{workdir} is still in use by pid {holder.get('pid')} on {holder.get('host')}")
        time.sleep(POLL_S)


def _end_with_parent() -> None:
    """In the trial's process: SIGTERM when the sweep dies (Linux), so that a killed sweep leaves no orphan
    training; the trial saves its step and the next sweep resumes it."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def run(trial: Any, base: str, workdir: Path, log_path: Path, settings: dict[str, Any], name: str,
        prune: bool, heartbeat: Any = None, also: Sequence[str] = ()) -> Outcome:
    """Train one trial, reporting each new validation value of `name` to the Optuna `trial`; `heartbeat()` is
    called while it runs (the storage's liveness record for other hosts); `also` as in `result`."""
    wait_for_workdir(workdir)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    reported: set[int] = set()
    with log_path.open("a") as log:
        proc = subprocess.Popen(command(base, workdir, settings), stdout=log, stderr=subprocess.STDOUT,
                                preexec_fn=_end_with_parent)
        try:
            while True:
                done = proc.poll() is not None
                for step, value in curve(workdir, name):
                    if step not in reported:
                        trial.report(value, step)
                        reported.add(step)
                if done:
                    break
                if prune and reported and trial.should_prune():
                    proc.send_signal(signal.SIGTERM)
                    proc.wait()
                    return Outcome("pruned", attrs={"pruned_at": max(reported)})
                if heartbeat is not None:
                    heartbeat()
                time.sleep(POLL_S)
        except BaseException:  # the sweep is stopping: let the trial save its step first
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait()
            raise
    if proc.returncode != 0:
        lines = [line for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
        return Outcome("failed", attrs={"error": lines[-1] if lines else f"exit {proc.returncode}",
                                        "returncode": proc.returncode})
    try:
        return result(workdir, name, also)
    except (OSError, ValueError) as e:
        return Outcome("failed", attrs={"error": str(e)})
