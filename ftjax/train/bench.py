"""Time the trainer's own sharded step (`setup.setup`): step time, tokens/s, model FLOPs utilisation, peak memory.

Model FLOPs of one step, counted from the model's shapes (what MFU divides; recomputation from remat and the
chunked loss, and padding positions, are not useful work and are not counted):

    per real token     4 N_frozen + 6 N_trainable + 12 L H T
    per target token   (4 + 2 [head trains]) d V

N_frozen, N_trainable: weights of the matrices every token passes through (attention and MLP kernels, the active
adapter's factors; not the embedding lookup or the output head). A matrix costs 2 FLOPs per weight forward and
2 backward to reach the activations below it; only trainable ones cost 2 more for their weight gradient, so full
fine-tuning gives the usual 6 N and LoRA about 4 N. Attention scores and values cost 4 L H T forward and twice
that backward (L layers, H = heads x head_dim, T the padded sequence length: masked scores are computed too).
The output head (width d, vocabulary V) runs only on target tokens (ftjax/loss.py).

MFU = model FLOPs / step time / peak, the peak being the dense bf16 peak per device from `PEAKS` times the
devices, or on CPU a measured matmul rate of this host (in the model's dtype) times the processes.
"""

from __future__ import annotations

import math
import statistics
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from ftjax import sharding
from ftjax.hardware import host_cpu
from ftjax.memory import peak_memory
from ftjax.models.config import ModelConfig
from ftjax.models.hooks import is_output_head
from ftjax.train.batches import load_data, step_batch, train_batches
from ftjax.train.config import check
from ftjax.train.setup import setup
from ftjax.train.state import TrainState

# Dense bf16 FLOP/s of one JAX device (a TPU v4/v5p chip is one megacore device), matched in order against
# `device_kind`; vendor data sheets (NVIDIA: SXM parts without sparsity).
PEAKS = (
    ("tpu v6 lite", "TPU v6e", 918e12), ("tpu v6e", "TPU v6e", 918e12),
    ("tpu v5 lite", "TPU v5e", 197e12), ("tpu v5e", "TPU v5e", 197e12),
    ("tpu v5p", "TPU v5p", 459e12), ("tpu v5", "TPU v5p", 459e12),
    ("tpu v4", "TPU v4", 275e12),
    ("a100", "NVIDIA A100", 312e12),
    ("h100 pcie", "NVIDIA H100 PCIe", 756e12), ("h100", "NVIDIA H100 SXM", 989e12),
    ("h200", "NVIDIA H200", 989e12),
)
MATMULS = ("kernel", "lora_a", "lora_b", "lora_a0", "lora_b0")


def device_peak(device: Any) -> tuple[str, float] | None:
    """(name, dense bf16 FLOP/s) of an accelerator from `PEAKS`; None for CPUs and unknown devices."""
    kind = device.device_kind.lower()
    return next(((name, flops) for key, name, flops in PEAKS if key in kind), None)


def cpu_matmul_peak(dtype: Any = jnp.float32, n: int = 2048, seconds: float = 2.0) -> float:
    """Best FLOP/s of a jitted n x n matmul on this host over about `seconds` (after one warm-up call)."""
    a = jnp.asarray(np.random.default_rng(0).standard_normal((n, n)), dtype)
    matmul = jax.jit(jnp.matmul)
    matmul(a, a).block_until_ready()
    best, end = math.inf, time.perf_counter() + seconds
    while time.perf_counter() < end or best == math.inf:
        t = time.perf_counter()
        matmul(a, a).block_until_ready()
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best


def matmul_params(cfg: ModelConfig, state: TrainState, adapter: str) -> tuple[int, int, bool]:
    """(N_frozen, N_trainable, whether the output head trains) of a train state."""
    counts, head_trains = [0, 0], False
    for i, state in enumerate((state.frozen, state.trainable)):
        for path, v in nnx.to_flat_state(state):
            keys = [str(k) for k in path]
            if is_output_head(path, v.shape, cfg):
                head_trains |= bool(i)
            elif keys[-1] in MATMULS and ("adapters" not in keys or keys[keys.index("adapters") + 1] == adapter):
                counts[i] += math.prod(v.shape)
    return counts[0], counts[1], head_trains


def step_flops(cfg: ModelConfig, frozen: int, trainable: int, head_trains: bool, tokens: float, targets: float,
               seq_len: int) -> float:
    """Model FLOPs of one step (the formula in the module docstring)."""
    per_token = 4 * frozen + 6 * trainable + 12 * cfg.num_layers * cfg.num_heads * cfg.head_dim * seq_len
    return tokens * per_token + targets * (4 + 2 * head_trains) * cfg.hidden_size * cfg.vocab_size


def measure(config: ml_collections.ConfigDict, steps: int = 10, warmup: int = 3) -> dict[str, Any]:
    """Set the run up as `ftjax train` does, take `warmup` steps (compilation), then time `steps` steps."""
    if steps < 1 or warmup < 1:
        raise ValueError(f"need steps >= 1 and warmup >= 1, got {steps} and {warmup}")
    check(config)
    if config.get("tasks"):
        raise ValueError("ftjax bench times one task; give a single-task config (e.g. configs/task.py:NAME)")
    tc = config.train
    data = load_data(config, validation=False)
    r = setup(config, total_steps=warmup + steps)
    shards = r.shards
    batches = train_batches(data.train, config, shards, data.pad_id)
    state = r.state
    times, tokens, targets, seq_len = [], 0, 0, 0
    for i in range(warmup + steps):
        t = time.perf_counter()
        batch = step_batch(batches, tc.grad_accum_steps, shards)
        state, m = r.train_step(state, sharding.put_batch(batch, r.batch_shardings))
        loss = float(m["loss"])  # waits for the step, as the trainer does
        if i >= warmup:
            times.append(time.perf_counter() - t)
            tokens += int(batch["attention_mask"].sum())
            targets += int(batch["valid"].sum())  # target positions are global already
            seq_len = batch["inputs"].shape[-1]
    if not math.isfinite(loss):
        raise FloatingPointError(f"loss is {loss} during the benchmark")
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        tokens = int(np.sum(multihost_utils.process_allgather(np.int64(tokens)))) // (jax.process_count()
                                                                                        // shards.count)
    step_s = statistics.mean(times)
    frozen, trainable_n, head_trains = matmul_params(r.model_config, r.state, config.peft.name)
    flops = step_flops(r.model_config, frozen, trainable_n, head_trains, tokens / steps, targets / steps, seq_len)
    device = jax.devices()[0]
    named = device_peak(device)
    if named:
        peak_name, peak = f"{named[0]} bf16 dense (table) x {jax.device_count()}", named[1] * jax.device_count()
    else:
        dtype = jnp.dtype(config.model.dtype)
        peak = cpu_matmul_peak(dtype) * jax.process_count()
        peak_name = f"measured {dtype.name} matmul on this host x {jax.process_count()} process(es)"
    memory, memory_source = peak_memory()
    return {
        "device_kind": device.device_kind, "platform": device.platform, "devices": jax.device_count(),
        "host_cpu": host_cpu(),
        "processes": jax.process_count(), "mesh": dict(r.mesh.shape), "rules": config.mesh.rules,
        "model_dtype": config.model.dtype, "peft": config.peft.method, "base_params": r.counts["base_params"],
        "trainable_params": r.counts["trainable_params"], "matmul_params_frozen": frozen,
        "matmul_params_trainable": trainable_n, "batch_size": tc.batch_size, "seq_len": seq_len,
        "warmup": warmup, "steps": steps, "step_s_mean": step_s, "step_s_median": statistics.median(times),
        "step_s_stdev": statistics.stdev(times) if steps > 1 else 0.0,
        "tokens_per_step": tokens / steps, "target_tokens_per_step": targets / steps,
        "tokens_per_s": tokens / sum(times), "tokens_per_s_per_device": tokens / sum(times) / jax.device_count(),
        "model_flops_per_step": flops, "model_flops_per_s": flops / step_s, "peak_flops_per_s": peak,
        "peak": peak_name, "mfu": flops / step_s / peak, "peak_memory_bytes": memory, "memory": memory_source,
        "last_loss": loss,
    }


def report(r: dict[str, Any]) -> str:
    """The result as a few aligned lines."""
    mesh = " ".join(f"{k}={v}" for k, v in r["mesh"].items())
    rows = [
        ("devices", f"{r['devices']} x {r['device_kind']} in {r['processes']} process(es); mesh {mesh}, "
                    f"rules {r['rules']}"),
        ("host", r["host_cpu"]),
        ("model", f"{r['base_params']:,} base params ({r['model_dtype']}), {r['trainable_params']:,} trainable "
                  f"({r['peft']}); batch {r['batch_size']} x {r['seq_len']}"),
        ("step time", f"{r['step_s_mean'] * 1e3:.1f} ms mean, {r['step_s_median'] * 1e3:.1f} median, "
                      f"{r['step_s_stdev'] * 1e3:.1f} stdev ({r['steps']} steps after {r['warmup']} warm-up)"),
        ("tokens/s", f"{r['tokens_per_s']:,.0f} ({r['tokens_per_s_per_device']:,.0f} per device; "
                     f"{r['tokens_per_step']:.0f} real, {r['target_tokens_per_step']:.0f} target tokens per step)"),
        ("model FLOPs", f"{r['model_flops_per_step'] / 1e9:.3f} GFLOP/step = "
                        f"{r['model_flops_per_s'] / 1e9:.2f} GFLOP/s"),
        ("MFU", f"{100 * r['mfu']:.2f}% of {r['peak_flops_per_s'] / 1e9:,.1f} GFLOP/s ({r['peak']})"),
        ("peak memory", f"{r['peak_memory_bytes'] / 2 ** 30:.2f} GiB ({r['memory']})"),
    ]
    return "\n".join(f"{k:<12} {v}" for k, v in rows)
