"""Compile time and step time of the trainer's LoRA step with unrolled vs scanned layers (model.scan_layers), on
random-weight Llama-architecture models of 18 and 32 layers (Gemma 3 270M's and Llama 3.1 8B's depth) at a
width this CPU can step, bf16 weights, LoRA r=16 on every linear layer.

    python experiments/bench_vs_peers/scan_compile.py --out=runs/scan_compile

Writes OUT/scan_compile.json and OUT/scan_compile.md (the table the README quotes).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import transformers

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_check import lora_steps  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layers", default="18,32")
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--length", type=int, default=128)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    rows = []
    for n in map(int, a.layers.split(",")):
        config = transformers.LlamaConfig(vocab_size=4096, hidden_size=a.width, intermediate_size=4 * a.width,
                                          num_hidden_layers=n, num_attention_heads=4, num_key_value_heads=2,
                                          head_dim=a.width // 4, max_position_embeddings=4 * a.length)
        for scanned in (False, True):
            r = lora_steps(config, a.batch, a.length, "none", "reference", a.steps, warmup=1, scan_layers=scanned)
            rows.append({"layers": n, "scan_layers": scanned, **{k: r[k] for k in (
                "compile_s", "step_s", "tokens_per_s", "peak_memory_gb", "losses")}})
            print(f"{n} layers, scan_layers={scanned}: compile {r['compile_s']:.1f} s, step {r['step_s']:.3f} s",
                  flush=True)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"date": time.strftime("%Y-%m-%d", time.gmtime()), "device": jax.devices()[0].device_kind,
            "jax": jax.__version__, "width": a.width, "batch": a.batch, "length": a.length}
    (out / "scan_compile.json").write_text(json.dumps({**meta, "rows": rows}, indent=1))
    lines = [f"{meta['date']}, {meta['device']}, jax {meta['jax']}: random Llama, width {a.width}, batch "
             f"{a.batch} x {a.length}, bf16, LoRA r=16 all linear, first step (compile + run) and median step",
             "", "| layers | layers run as | first step (s) | step (s) | tokens/s |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['layers']} | {'scan' if r['scan_layers'] else 'Python loop'} | {r['compile_s']:.1f} | "
                     f"{r['step_s']:.3f} | {r['tokens_per_s']:,.0f} |")
    (out / "scan_compile.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
