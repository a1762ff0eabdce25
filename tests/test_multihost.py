"""Two local processes (4 fake CPU devices each) train on one (2, 2, 2) mesh through `ftjax train`, save, are
restarted, resume from the checkpoint, and match one process on one device fed the same global batches."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from conftest import sft_config, write_rows
from ftjax import distributed
from ftjax.train import batches, loop
from ftjax.data.pipeline import Batches
from ftjax.workdir import read_metrics

ROOT = Path(__file__).resolve().parents[1]
OVERRIDES = {"mesh.shape": (2, 2, 2), "mesh.rules": "fsdp_tensor", "train.batch_size": 8, "train.eval_every": 3,
             "checkpoint.every": 3}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(paths: dict, workdir: Path, steps: int) -> list[subprocess.Popen]:
    """`ftjax train` in two processes that find each other through the FTJAX_* environment."""
    port = free_port()
    flags = [f"--config.{k}={v}" for k, v in {**paths, **OVERRIDES, "train.steps": steps}.items()]
    procs = []
    for rank in range(2):
        env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu",
                   JAX_COMPILATION_CACHE_DIR=str(workdir.parent / "jax_cache"),  # the restart skips compiling
                   JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                   FTJAX_COORDINATOR=f"127.0.0.1:{port}", FTJAX_NUM_PROCESSES="2", FTJAX_PROCESS_ID=str(rank))
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "ftjax", "train", f"--config={ROOT}/configs/sft.py:tiny", f"--workdir={workdir}",
             *flags], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    return procs


def finish(procs: list[subprocess.Popen]) -> list[str]:
    try:
        outs = [p.communicate(timeout=240)[0] for p in procs]
    finally:  # a failed or hung process leaves its peer waiting at a barrier
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out[-3000:]
    return outs


class TwoHostBatches:
    """What the two processes load together: shard 0's rows then shard 1's (process 0 holds the first half of the
    (data, fsdp) rows). Validation passes (no shard arguments) use the plain pipeline."""

    def __new__(cls, examples, **kw):
        if "shard_count" not in kw:
            return Batches(examples, **kw)
        return super().__new__(cls)

    def __init__(self, examples, *, batch_size, shard_index, shard_count, **kw):
        self.parts = [Batches(examples, batch_size=batch_size // 2, shard_index=i, shard_count=2, **kw)
                      for i in range(2)]

    def __next__(self):
        rows = [next(p) for p in self.parts]
        return {k: np.concatenate([r[k] for r in rows]) for k in rows[0]}

    def get_state(self):
        return [p.get_state() for p in self.parts]


def adapter(workdir: Path, step: int) -> dict[str, np.ndarray]:
    path = workdir / "checkpoints" / str(step) / "trainable"
    ckpt = ocp.StandardCheckpointer()
    meta = ckpt.metadata(path).item_metadata
    one = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=one), meta)
    tree = ckpt.restore(path, target)
    return {jax.tree_util.keystr(p): np.asarray(x) for p, x in jax.tree_util.tree_leaves_with_path(tree)}


@pytest.fixture(scope="module")
def paths(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("multihost")
    rng = np.random.RandomState(2)
    rows = lambda n: [{"prompt": "w3 " + " ".join(f"w{rng.randint(10, 100)}" for _ in range(rng.randint(1, 9))),
                       "completion": f" w{rng.randint(10, 100)} w5"} for _ in range(n)]
    return {"model.path": str(tiny_model_dir), "data.train": write_rows(root / "train.jsonl", rows(40)),
            "data.validation": write_rows(root / "val.jsonl", rows(6))}


@pytest.mark.long
def test_two_processes_train_save_resume_and_match_one(paths, tmp_path, monkeypatch):
    multi, single = tmp_path / "multi", tmp_path / "single"
    first = launch(paths, multi, steps=3)
    # meanwhile, the reference: one process on one device, fed the same global batches
    monkeypatch.setattr(batches, "Batches", TwoHostBatches)
    loop.main(sft_config(**paths, **{**OVERRIDES, "mesh.shape": (1, 1, 1), "train.steps": 5}), single)
    outs = finish(first)
    assert "done: 3 steps" in outs[0] and "done:" not in outs[1]  # only process 0 reports
    assert [p.name for p in (multi / "checkpoints").iterdir() if p.name.isdigit()] == ["3"]

    finish(launch(paths, multi, steps=5))  # fresh processes: restore step 3 across both, train 4 and 5
    got, want = read_metrics(multi), read_metrics(single)
    assert [m["step"] for m in got] == list(range(1, 6))
    for key in ("loss", "grad_norm", "val_loss"):
        steps = [m["step"] for m in want if key in m]
        np.testing.assert_allclose([m[key] for m in got if key in m], [m[key] for m in want if key in m],
                                   rtol=1e-5, atol=1e-5, err_msg=f"{key} at steps {steps}")
    a, b = adapter(multi, 5), adapter(single, 5)
    assert a.keys() == b.keys() and a
    for k in a:  # Adam divides by sqrt(v): summation-order noise in a small gradient moves a weight by ~1e-5
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-4, err_msg=k)


def test_initialize_reads_flags_then_environment(monkeypatch):
    for name in (*distributed.ENV, "SLURM_JOB_ID"):
        monkeypatch.delenv(name, raising=False)
    assert distributed.initialize() == "single"  # nothing to join: no-op
    assert distributed.initialize("127.0.0.1:1", 1, 0) == "single"
    monkeypatch.setenv("FTJAX_COORDINATOR", "127.0.0.1:1")
    with pytest.raises(ValueError, match="needs all of coordinator, num_processes and process_id"):
        distributed.initialize()
    monkeypatch.setenv("FTJAX_NUM_PROCESSES", "2")
    monkeypatch.setenv("FTJAX_PROCESS_ID", "2")
    with pytest.raises(ValueError, match=r"process_id must be in \[0, 2\), got 2"):
        distributed.initialize()
    with pytest.raises(ValueError, match="process_id must be in"):
        distributed.initialize(process_id=5)  # a flag overrides the environment
    monkeypatch.setenv("FTJAX_NUM_PROCESSES", "two")
    with pytest.raises(ValueError, match="FTJAX_NUM_PROCESSES must be an integer"):
        distributed.initialize()
