"""Multi-process runs: joining the job, and which batch rows each process loads.

`initialize()` must run before anything touches devices. It finds the job from, in order: explicit arguments
(the commands' --coordinator/--num_processes/--process_id flags), the FTJAX_COORDINATOR /
FTJAX_NUM_PROCESSES / FTJAX_PROCESS_ID environment, a SLURM step with several tasks, or a Cloud TPU VM (JAX
reads the slice's metadata); otherwise the run is one process and nothing happens.

`DataShards` reads the mesh, not the process count: processes whose devices hold the same batch rows (a mesh
axis replicated across hosts) must load the same rows, so they share a data shard.
"""

from __future__ import annotations

import glob
import importlib.util
import json
import os
from pathlib import Path
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh

from ftjax.sharding import batch_sharding

ENV = ("FTJAX_COORDINATOR", "FTJAX_NUM_PROCESSES", "FTJAX_PROCESS_ID")
_GOOGLE_PCI_VENDOR = "0x1ae0"  # TPU chips on a Cloud TPU VM


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> str:
    """Join the multi-process job if there is one; returns how it was found: explicit, slurm, tpu or single."""
    coordinator = coordinator or os.environ.get(ENV[0])
    num_processes = num_processes if num_processes is not None else _int_env(ENV[1])
    process_id = process_id if process_id is not None else _int_env(ENV[2])
    if coordinator or num_processes is not None or process_id is not None:
        if not coordinator or num_processes is None or process_id is None:
            raise ValueError(f"a multi-process run needs all of coordinator, num_processes and process_id "
                             f"(flags or {', '.join(ENV)})")
        if not 0 <= process_id < num_processes:
            raise ValueError(f"process_id must be in [0, {num_processes}), got {process_id}")
        if num_processes == 1:
            return "single"
        jax.distributed.initialize(coordinator, num_processes, process_id)
        return "explicit"
    if _slurm_tasks() > 1:  # inside `srun`: JAX reads SLURM_* (node list, task count and rank)
        jax.distributed.initialize()
        return "slurm"
    if _on_tpu_vm():  # JAX asks the VM's metadata server for the slice's workers (one host included)
        jax.distributed.initialize()
        return "tpu"
    return "single"


def define_flags(module_name: str) -> None:
    """--coordinator/--num_processes/--process_id, listed in `module_name`'s --help (defined once per process)."""
    from absl import flags

    if "coordinator" not in flags.FLAGS:
        flags.DEFINE_string("coordinator", None, f"host:port of process 0 in a multi-process run (or {ENV[0]})")
        flags.DEFINE_integer("num_processes", None, f"processes in the run (or {ENV[1]})")
        flags.DEFINE_integer("process_id", None, f"this process, 0 .. num_processes-1 (or {ENV[2]})")
    for name in ("coordinator", "num_processes", "process_id"):
        flags.FLAGS.register_key_flag_for_module(module_name, flags.FLAGS[name])


def initialize_from_flags() -> str:
    """`initialize` from the command's flags, then quiet ftjax's info logging on every process but 0."""
    import logging

    from absl import flags

    f = flags.FLAGS
    how = initialize(f.coordinator, f.num_processes, f.process_id)
    logging.getLogger("ftjax").setLevel(logging.INFO if jax.process_index() == 0 else logging.WARNING)
    return how


def _int_env(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None or value == "":
        return None
    if not value.lstrip("-").isdigit():
        raise ValueError(f"{name} must be an integer, got {value!r}")
    return int(value)


def _slurm_tasks() -> int:
    step = all(k in os.environ for k in ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_PROCID", "SLURM_LOCALID"))
    return int(os.environ.get("SLURM_NTASKS", "1")) if step else 1


def _on_tpu_vm() -> bool:
    if importlib.util.find_spec("libtpu") is None:
        return False
    vendors = glob.glob("/sys/bus/pci/devices/*/vendor")
    return any(Path(v).read_text().strip() == _GOOGLE_PCI_VENDOR for v in vendors)


class DataShards:
    """How the `rows` of a global (micro-)batch, sharded over data x fsdp on `mesh`, split across processes.

    `index`/`count`: this process's data shard (pass them to `Batches`); each shard is `rows // count` rows.
    `rows_of[p]`: the global row indices process p's devices hold, in the order its local rows fill them.
    """

    def __init__(self, mesh: Mesh, rows: int):
        per_process: list[set[int]] = [set() for _ in range(jax.process_count())]
        for device, index in batch_sharding(mesh).devices_indices_map((rows,)).items():
            per_process[device.process_index].update(range(*index[0].indices(rows)))
        self.rows_of = [np.array(sorted(r), np.int64) for r in per_process]
        blocks = sorted({tuple(r) for r in self.rows_of})
        covered = sorted(i for b in blocks for i in b)
        if covered != list(range(rows)) or len({len(b) for b in blocks}) != 1:
            raise ValueError(f"mesh {dict(mesh.shape)} gives processes overlapping or unequal parts of the "
                             f"{rows} batch rows; put whole data x fsdp slices on each host")
        self.count = len(blocks)
        self.index = blocks.index(tuple(self.rows_of[jax.process_index()]))
        self.rows = rows

    def gather(self, local: np.ndarray, axis: int) -> np.ndarray:
        """Every process's `local` rows (along `axis`) assembled into the global batch, on every process."""
        if jax.process_count() == 1:
            return local
        from jax.experimental import multihost_utils

        parts = np.asarray(multihost_utils.process_allgather(local))  # [process, *local.shape]
        shape = list(local.shape)
        shape[axis] = self.rows
        out = np.empty(shape, local.dtype)
        for part, rows in zip(parts, self.rows_of):
            np.moveaxis(out, axis, 0)[rows] = np.moveaxis(part, axis, 0)
        return out


def allgather_json(obj: Any) -> list[Any]:
    """Every process's JSON-serialisable `obj`, in process order (one collective; all processes must call)."""
    if jax.process_count() == 1:
        return [obj]
    from jax.experimental import multihost_utils

    data = np.frombuffer(json.dumps(obj).encode(), np.uint8)
    sizes = np.asarray(multihost_utils.process_allgather(np.int64(data.size)))
    padded = np.zeros(int(sizes.max()), np.uint8)
    padded[:data.size] = data
    parts = np.asarray(multihost_utils.process_allgather(padded))
    return [json.loads(p[:n].tobytes()) for p, n in zip(parts, sizes)]
