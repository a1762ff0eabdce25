"""Single float32 matmuls of Llama 3.2 1B's LoRA-step shapes through XLA's CPU backend and through PyTorch.

Separates the GEMM kernels from everything else in `run.py --model=llama-1b`: if XLA's kernel is slower on these
shapes, no change to ftjax's model code closes the gap. XLA_FLAGS from the environment apply to the JAX side
(the compiled module's fusion kind is printed, so a flag that changes nothing shows it).

  python experiments/bench_vs_peers/matmul.py [--reps=10]
  XLA_FLAGS=--xla_cpu_experimental_onednn_custom_call=true python experiments/bench_vs_peers/matmul.py
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp

# tokens x in x out of a batch of 8 x 96: the MLP up/down projections, attention's q/o, a rank-16 LoRA product.
SHAPES = [(768, 2048, 8192), (768, 8192, 2048), (768, 2048, 2048), (768, 2048, 16)]


def _median_s(fn: Callable[[], object], reps: int) -> float:
    fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _jax_row(m: int, k: int, n: int, reps: int) -> tuple[float, str]:
    a = jax.random.normal(jax.random.key(0), (m, k), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (k, n), jnp.float32)
    compiled = jax.jit(jnp.matmul).lower(a, b).compile()
    kinds = sorted(set(re.findall(r"ROOT %(\w+?)(?:\.\d+)? = ", compiled.as_text())))
    return _median_s(lambda: compiled(a, b).block_until_ready(), reps), ",".join(kinds)


def _torch_row(m: int, k: int, n: int, reps: int) -> float | None:
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(os.cpu_count() or 1)
    a, b = torch.randn(m, k), torch.randn(k, n)
    return _median_s(lambda: a @ b, reps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=10, help="timed repetitions per shape (median reported)")
    args = parser.parse_args()
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}; XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
    print("| m x k x n | XLA ms | XLA GFLOP/s | XLA root op | PyTorch ms | PyTorch GFLOP/s | XLA / PyTorch time |")
    print("|---|---:|---:|---|---:|---:|---:|")
    for m, k, n in SHAPES:
        flops = 2 * m * k * n
        xla_s, kinds = _jax_row(m, k, n, args.reps)
        torch_s = _torch_row(m, k, n, args.reps)
        torch_cells = (
            f"{torch_s * 1e3:.3f} | {flops / torch_s / 1e9:.0f} | {xla_s / torch_s:.2f}" if torch_s else "- | - | -"
        )
        print(f"| {m} x {k} x {n} | {xla_s * 1e3:.3f} | {flops / xla_s / 1e9:.0f} | {kinds} | {torch_cells} |")


if __name__ == "__main__":
    main()
