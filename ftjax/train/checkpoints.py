"""Orbax checkpoints of a training run: trainable state, optimizer state, and a JSON `meta` item.

Only the trainable state is saved (the adapters, when only adapters train); the frozen base is rebuilt from
`model.path`. `meta` holds the step, the data-iterator position, the RNG seed stream position and the
early-stopping record, so a resumed run continues exactly where the last save left it. Restores go into
abstract states that carry shardings, so arrays come back already placed on the mesh.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as cm

log = logging.getLogger(__name__)


class Checkpoints:
    def __init__(self, directory: str | Path, *, keep: int, metric: str | None = None, mode: str = "min",
                 async_save: bool = True, clean_tmp: bool = False):
        policies = [cm.LatestN(n=keep)]
        score = lambda m: m[metric]  # noqa: E731
        if metric:  # keep the best evaluated checkpoint too, whatever its age
            policies.append(cm.BestN(get_metric_fn=score, reverse=mode == "min", n=1,
                                     keep_checkpoints_without_metrics=False))
        # best_fn only makes orbax write each step's metrics (the policies above decide what is kept)
        tracked = dict(best_fn=score, best_mode=mode) if metric else {}
        # clean_tmp: remove the folders of saves cut short (a kill during a save); only the run's trainer, which
        # holds its lock, may, since a reader (eval beside a live run) could meet a save still being written
        options = ocp.CheckpointManagerOptions(preservation_policy=cm.AnyPreservationPolicy(policies),
                                               enable_async_checkpointing=async_save, create=True,
                                               cleanup_tmp_directories=clean_tmp, **tracked)
        self.metric, self.mode = metric, mode
        self.directory = Path(directory).absolute()
        # handlers named up front, so a fresh process can read a checkpoint's metadata before restoring it
        self.manager = ocp.CheckpointManager(self.directory, options=options, item_handlers={
            "trainable": ocp.StandardCheckpointHandler(), "opt_state": ocp.StandardCheckpointHandler(),
            "meta": ocp.JsonCheckpointHandler()})

    def save(self, step: int, trainable: Any, opt_state: Any, meta: dict, metrics: dict | None = None) -> None:
        self.manager.save(step, args=ocp.args.Composite(
            trainable=ocp.args.StandardSave(trainable), opt_state=ocp.args.StandardSave(opt_state),
            meta=ocp.args.JsonSave(meta)), metrics=metrics, force=True)

    def restore(self, abstract_trainable: Any, abstract_opt_state: Any, step: int | None = None
                ) -> tuple[int, Any, Any, dict] | None:
        """The newest readable checkpoint (or `step`); a corrupt one is set aside with a warning. A readable
        checkpoint whose arrays have other shapes than this run's state is an error, never "unreadable"."""
        steps = sorted(self.manager.all_steps(), reverse=True) if step is None else [step]
        for s in steps:
            try:
                return self._read(s, abstract_trainable, abstract_opt_state)
            except ShapeMismatch:
                raise
            except Exception as e:  # noqa: BLE001 - any failure to read means: fall back to an older one
                if step is not None:
                    raise
                log.warning("checkpoint at step %d is unreadable (%s: %s); moved to %s, trying the previous one",
                            s, type(e).__name__, str(e).splitlines()[0][:200], self._set_aside(s))
        return None

    def _read(self, step: int, abstract_trainable: Any, abstract_opt_state: Any) -> tuple[int, Any, Any, dict]:
        check_shapes(self.manager.item_metadata(step)["trainable"], abstract_trainable, step)
        out = self.manager.restore(step, args=ocp.args.Composite(
            trainable=ocp.args.StandardRestore(abstract_trainable),
            opt_state=ocp.args.StandardRestore(abstract_opt_state), meta=ocp.args.JsonRestore()))
        return step, out["trainable"], out["opt_state"], out["meta"]

    def _set_aside(self, step: int) -> Path:
        """Move an unreadable step out of the manager's way (so it can be saved again), keeping it to inspect."""
        aside = self.directory.parent / f"{self.directory.name}.unreadable" / str(step)
        aside.parent.mkdir(exist_ok=True)
        shutil.rmtree(aside, ignore_errors=True)
        shutil.move(self.directory / str(step), aside)
        self.manager.reload()
        return aside

    def restore_trainable(self, abstract_trainable: Any, step: int) -> Any:
        check_shapes(self.manager.item_metadata(step)["trainable"], abstract_trainable, step)
        return self.manager.restore(step, args=ocp.args.Composite(
            trainable=ocp.args.StandardRestore(abstract_trainable)))["trainable"]

    @property
    def best_step(self) -> int | None:
        """The kept step with the best `metric` (None when none has it), from each step's saved metrics."""
        scored = [(m[self.metric], s) for s in self.manager.all_steps()
                  if self.metric and (m := self.manager.metrics(s)) and self.metric in m]
        if not scored:
            return None
        return (min if self.mode == "min" else max)(scored)[1]

    def all_steps(self) -> list[int]:
        return list(self.manager.all_steps())

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


class ShapeMismatch(ValueError):
    """A readable checkpoint of another train state (the model or adapter changed): never set aside."""


def check_shapes(saved: Any, target: Any, step: int) -> None:
    """A ShapeMismatch when checkpoint metadata `saved` holds other array shapes than the run's `target` state."""
    if saved is None:
        raise ValueError(f"the checkpoint at step {step} has no readable metadata")
    have = sorted(tuple(x.shape) for x in jax.tree.leaves(saved) if hasattr(x, "shape"))
    want = sorted(tuple(x.shape) for x in jax.tree.leaves(target))
    if have != want:
        diff = next(((a, b) for a, b in zip(have, want) if a != b), (len(have), len(want)))
        raise ShapeMismatch(f"the checkpoint at step {step} holds a train state of another shape ({diff[0]} where this "
                         f"run has {diff[1]}): the model or adapter changed since it was saved; resume with the "
                         "run's own settings, or train in a new workdir")


def abstract(tree: Any, shardings: Any) -> Any:
    """ShapeDtypeStructs with the target shardings: what a restore fills."""
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)
