"""The accelerator path in one command: the fused attention kernel agrees with the reference, then a few LoRA
steps of the trainer's own jitted step on random-weight Llama 3.2 1B and Llama 3.1 8B (bf16, scanned layers),
with compile time, step time, tokens/s, MFU and peak memory. No network, no checkpoint files: weights are drawn on the device.

    python experiments/bench_vs_peers/gpu_check.py --out=DIR               # on a GPU (gpu_check.sh)
    python experiments/bench_vs_peers/gpu_check.py --tiny --out=DIR        # the same path on CPU, tiny shapes

Writes DIR/gpu_check.json and prints one line per check.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from ftjax.memory import peak_memory  # noqa: E402
from ftjax.models import attention as A  # noqa: E402
from ftjax_lora import ftjax_batch  # noqa: E402  (the trainer's batch layout, as the side-by-side feeds it)
from ftjax.models.config import from_hf  # noqa: E402
from ftjax.models.layers import attention_mask  # noqa: E402
from ftjax.models.loading import build  # noqa: E402
from ftjax.models.presets import hf_preset  # noqa: E402
from ftjax.models.scan import stack_blocks  # noqa: E402
from ftjax.peft.apply import apply_peft, trainable_filter  # noqa: E402
from ftjax.train.bench import cpu_matmul_peak, device_peak, matmul_params, step_flops  # noqa: E402
from ftjax.train.state import TrainState  # noqa: E402
from ftjax.train.step import make_train_step  # noqa: E402

# (preset, batch, sequence length, remat) per model; --tiny swaps in a small Llama of the same shape family
RUNS = [("llama3.2-1b", 8, 2048, "none"), ("llama3.1-8b", 4, 2048, "dots")]
TINY = dict(vocab_size=512, hidden_size=64, intermediate_size=160, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, head_dim=16, max_position_embeddings=256)


def kernel(platform: str) -> str:
    return "cudnn" if platform == "gpu" else "xla"


def attention_agrees(impl: str, dtype) -> float:
    """Max |fused - reference| over valid rows, causal + sliding window + packing segments, bf16 inputs."""
    r = np.random.default_rng(0)
    b, t, n, k, h = 2, 256, 8, 2, 64
    q, kk, v = (jnp.asarray(r.standard_normal((b, t, heads, h)), dtype) for heads in (n, k, k))
    seg = jnp.asarray(np.where(np.arange(t) < 100, 1, 2)[None].repeat(b, 0))
    pos = jnp.where(seg == 1, jnp.arange(t), jnp.arange(t) - 100)
    worst = 0.0
    for window in (None, 64):
        mask = attention_mask(pos, pos, jnp.ones((b, t), bool), window, seg, seg)
        ref = A.reference(q, kk, v, mask, scale=h ** -0.5, softcap=None).astype(jnp.float32)
        out = A.attend(q, kk, v, mask, scale=h ** -0.5, softcap=None, implementation=impl).astype(jnp.float32)
        worst = max(worst, float(jnp.max(jnp.abs(out - ref))))
    return worst


def lora_steps(hf_config, batch: int, length: int, remat: str, impl: str, steps: int, warmup: int,
               scan_layers: bool = True) -> dict:
    cfg = from_hf(hf_config)
    dtype = jnp.bfloat16
    model = nnx.jit(lambda: build(cfg, dtype))() if jax.devices()[0].platform != "cpu" else build(cfg, dtype)
    model.set_remat(remat)
    model.set_attention(impl)
    apply_peft(model, {"method": "lora", "rank": 16, "alpha": 32.0, "targets": "all-linear"}, nnx.Rngs(0))
    if scan_layers:
        stack_blocks(model)
    graphdef, trainable, rng, frozen = nnx.split(model, trainable_filter({"method": "lora"}), nnx.RngState, ...)
    del model
    tx = optax.adamw(1e-4)
    state = TrainState(trainable, tx.init(trainable), rng, frozen)
    step = jax.jit(make_train_step(graphdef, tx, chunk=1024), donate_argnums=0)
    ids = np.random.default_rng(0).integers(0, cfg.vocab_size, (1, batch, length)).astype(np.int32)
    loss_mask = np.ones(ids.shape, bool)
    loss_mask[..., 0] = False  # every token but the first is a target (workload.py's convention)
    host = ftjax_batch({"input_ids": ids, "attention_mask": np.ones(ids.shape, bool), "loss_mask": loss_mask}, 0)
    data = jax.device_put(host)
    t0 = time.perf_counter()
    state, m = step(state, data)
    losses = [float(m["loss"])]
    compile_s = time.perf_counter() - t0
    times = []
    for i in range(warmup + steps - 1):
        t = time.perf_counter()
        state, m = step(state, data)
        losses.append(float(m["loss"]))
        if i >= warmup - 1:
            times.append(time.perf_counter() - t)
    frozen_n, trainable_n, head_trains = matmul_params(cfg, state, "default")
    tokens = batch * length
    flops = step_flops(cfg, frozen_n, trainable_n, head_trains, tokens, float(host["valid"].sum()), length)
    step_s = statistics.median(times)
    named = device_peak(jax.devices()[0])
    peak = named[1] if named else cpu_matmul_peak(dtype)
    memory, source = peak_memory()
    return {"batch": batch, "length": length, "remat": remat, "scan_layers": scan_layers, "attention": impl,
            "layers": cfg.num_layers, "compile_s": compile_s,
            "step_s": step_s, "tokens_per_s": tokens / step_s, "mfu": flops / step_s / peak,
            "model_flops_per_step": flops, "peak": named[0] if named else "measured bf16 matmul (CPU)",
            "peak_memory_gb": memory / 2 ** 30, "memory": source, "losses": losses,
            "loss_fell": losses[-1] < losses[0], "frozen_matmul_params": int(frozen_n),
            "lora_params": int(trainable_n)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tiny", action="store_true", help="small shapes, for CPU (the tests run this)")
    p.add_argument("--models", default="", help="comma list of presets to run (default: all of RUNS)")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    platform = jax.devices()[0].platform
    impl = kernel(platform)
    report = {"device": jax.devices()[0].device_kind, "platform": platform, "jax": jax.__version__,
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "attention": impl}
    report["attention_max_abs_diff"] = attention_agrees(impl, jnp.bfloat16)
    print(f"attention {impl} vs reference: max |diff| {report['attention_max_abs_diff']:.4f} (bf16)", flush=True)
    if report["attention_max_abs_diff"] > 0.05:
        raise SystemExit("the fused attention kernel disagrees with the reference")
    import transformers

    runs = [("tiny-llama", 2, 64, "dots")] if a.tiny else [r for r in RUNS if not a.models
                                                           or r[0] in a.models.split(",")]
    report["runs"] = {}
    for name, batch, length, remat in runs:
        config = transformers.LlamaConfig(**TINY) if a.tiny else hf_preset(name)
        r = lora_steps(config, batch, length, remat, impl, a.steps, a.warmup)
        report["runs"][name] = r
        print(f"{name}: {batch}x{length} remat={remat}: compile {r['compile_s']:.1f} s, step {r['step_s']:.3f} s, "
              f"{r['tokens_per_s']:,.0f} tokens/s, MFU {100 * r['mfu']:.1f}% of {r['peak']}, peak memory "
              f"{r['peak_memory_gb']:.1f} GiB, loss {r['losses'][0]:.3f} -> {r['losses'][-1]:.3f}", flush=True)
        out = Path(a.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "gpu_check.json").write_text(json.dumps(report, indent=1))  # after each model: a kill keeps some


if __name__ == "__main__":
    main()
