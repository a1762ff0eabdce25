"""What protects a run folder: one writer at a time, a resume that may not change the run, a record of every start.

    with open_run(workdir, config) as wd:   # lock, compare with the run's config.json, record this start
        ...train...

- The lock (`train.lock`) names its holder (host, pid, start time). A second `ftjax train` on the folder is
  refused while the holder lives; a lock left by a dead process on this host is taken over with a warning.
- A folder that already holds a run (its config.json) may be resumed only with the same run: a change to the
  model, adapter, data, optimizer, schedule or seed is refused with the changed keys, old -> new. What does not
  alter the result so far (more steps, evaluation, logging and checkpoint cadence, the mesh, remat) may change;
  config.json then records the new values and `starts.jsonl` every start with what changed.
- A folder this command created is removed again if the run fails before anything was trained.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import ml_collections

from ftjax.io import write_json
from ftjax.workdir import Workdir, is_ensemble

log = logging.getLogger("ftjax.train")

# Config keys a resume may change (a key, or a block prefix ending in "."): they change cadence, placement or
# memory, not what the steps so far computed. Everything else defines the run.
SAFE_TO_CHANGE = ("train.steps", "train.epochs", "train.eval_every", "train.eval_batch_size", "train.log_every",
                  "train.loss_chunk", "train.early_stopping.patience", "checkpoint.", "mesh.", "eval.",
                  "model.remat", "model.attention")


class RunLock:
    """An exclusive lock file: `acquire()` or a FileExistsError naming the live holder."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.held = False

    def acquire(self) -> None:
        me = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                if holder and self.lives(holder):
                    raise FileExistsError(
                        f"{self.path.parent} is in use by ftjax train (host {holder['host']}, pid {holder['pid']}, "
                        f"since {holder.get('since')}); wait for it to finish, or delete {self.path} if that "
                        "process is gone") from None
                log.warning("taking over the stale lock %s (%s)", self.path, holder or "unreadable")
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self.held = True
            return
        raise FileExistsError(f"could not take the lock {self.path}: other processes keep creating it")

    def live_holder(self) -> dict | None:
        """The holder (host, pid, since) while it may still write: alive on this host, or on another host."""
        holder = self._holder()
        return holder if holder and self.lives(holder) else None

    @staticmethod
    def lives(holder: dict) -> bool:
        return holder.get("host") != socket.gethostname() or alive(holder.get("pid"))

    def _holder(self) -> dict | None:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None  # half-written by a process that died while writing it

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False


def alive(pid: object) -> bool:
    """Whether process `pid` of this host exists."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def flat(config: dict, prefix: str = "") -> dict[str, object]:
    """{"train.steps": 100, ...} of a nested config dict (tuples as lists, as config.json stores them)."""
    out = {}
    for k, v in config.items():
        if isinstance(v, dict):
            out |= flat(v, f"{prefix}{k}.")
        else:
            out[f"{prefix}{k}"] = list(v) if isinstance(v, tuple) else v
    return out


def config_changes(old: dict, new: dict) -> tuple[dict[str, tuple[object, object]], list[str]]:
    """({key: (old, new)} for every key that differs, a missing one shown as None; the keys of those changes a
    resume may not make). A key the old config lacks (added by a newer ftjax, at its default) is allowed."""
    a, b = flat(old), flat(json.loads(json.dumps(new, default=str)))
    changes = {k: (a.get(k), b.get(k)) for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k) or
               (k in a) != (k in b)}
    safe = lambda k: any(k == s or (s.endswith(".") and k.startswith(s)) for s in SAFE_TO_CHANGE)
    return changes, [k for k in changes if k in a and not safe(k)]


@contextlib.contextmanager
def open_run(workdir: str | os.PathLike, config: ml_collections.ConfigDict, main_process: bool = True
             ) -> Iterator[Workdir]:
    """Lock the run folder, check this start against the run it holds, write config.json and record the start;
    everything that can refuse happens before anything is written. Only process 0 locks and writes."""
    wd = Workdir(workdir)
    if not main_process:
        yield wd
        return
    if wd.root.exists() and not wd.root.is_dir():
        raise FileExistsError(f"--workdir={workdir} is a file, not a folder")
    created = not wd.root.exists()
    wd.root.mkdir(parents=True, exist_ok=True)
    lock = RunLock(wd.lock)
    try:
        lock.acquire()
        changes = {}
        if wd.config.is_file():
            try:
                old = json.loads(wd.config.read_text())
            except ValueError as e:
                raise ValueError(f"{wd.config} is not valid JSON ({e}); restore it or use a new workdir") from None
            if is_ensemble(old):
                raise ValueError(f"{workdir} holds an ensemble, not a training run; train in a new workdir")
            changes, refused = config_changes(old, config.to_dict())
            if refused:
                shown = "; ".join(f"{k}: {changes[k][0]!r} -> {changes[k][1]!r}" for k in refused[:4])
                more = f" (and {len(refused) - 4} more)" if len(refused) > 4 else ""
                raise ValueError(f"{workdir} holds a run with another config: {shown}{more}; resume with the run's "
                                 f"own settings, or train in a new workdir")
        write_json(wd.config, config.to_dict())
        with wd.starts.open("a", encoding="utf-8") as f:
            f.write(json.dumps({"time": time.strftime("%Y-%m-%d %H:%M:%S"), "host": socket.gethostname(),
                                "pid": os.getpid(), "resume": wd.trained(),
                                "changed": {k: list(v) for k, v in changes.items()}}) + "\n")
        yield wd
    except BaseException:
        if created and not wd.trained():
            shutil.rmtree(wd.root, ignore_errors=True)  # ours, made by this command, and nothing was trained
        raise
    finally:
        lock.release()
