"""Evaluation speed: batched greedy generation (prefill + KV-cache decode) with ftjax's `generate` against
transformers' `generate` (PyTorch) on the same prompts, and against this machine's matmul roof.

    python experiments/bench_vs_peers/generation.py --model=models/gemma-3-270m-q4_k_m.gguf --out=runs/generation

Prompts: the first --rows Banking77 training queries (`Query: TEXT\\nIntent:`), batches of --batch, exactly
--new_tokens new tokens each (no stop token, so both do the same work). The first ftjax batch compiles (prompt
lengths come in buckets, so later batches mostly reuse it) and is timed apart. The roof is the measured
matmul peak divided by 2 x (weights every token multiplies + the output head) FLOPs per decoded token. Writes
OUT/generation.json and OUT/generation.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import model_folder  # noqa: E402  (the GGUF written once as a transformers folder)

from ftjax.models import from_pretrained  # noqa: E402
from ftjax.models.config import from_hf  # noqa: E402
from ftjax.models.loading import hf_config  # noqa: E402
from ftjax.models.generate import Sampling, generate  # noqa: E402
from ftjax.models.tokenizer import load_tokenizer, padding_id  # noqa: E402
from ftjax.train.bench import cpu_matmul_peak  # noqa: E402


def prompts(path: Path, rows: int) -> list[str]:
    with open(path, newline="") as f:
        return [f"Query: {r['text']}\nIntent:" for r, _ in zip(csv.DictReader(f), range(rows))]


def run_ftjax(folder: Path, ids: list[list[int]], batch: int, new: int, dtype) -> tuple[list, float, float]:
    model = from_pretrained(folder, dtype=dtype)
    model.eval()
    sampling = Sampling(max_new_tokens=new)
    t0 = time.perf_counter()
    out = generate(model, ids[:batch], sampling)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(batch, len(ids), batch):
        out += generate(model, ids[i:i + batch], sampling)
    return out, first, time.perf_counter() - t0


def run_transformers(folder: Path, ids: list[list[int]], batch: int, new: int, dtype: str, pad: int
                     ) -> tuple[list, float, float]:
    import torch
    import transformers

    torch.set_num_threads(max(1, torch.get_num_threads()))
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, torch_dtype=getattr(torch, dtype)).eval()
    out, times = [], []
    with torch.inference_mode():
        for i in range(0, len(ids), batch):
            rows = ids[i:i + batch]
            width = max(map(len, rows))
            x = torch.tensor([[pad] * (width - len(r)) + r for r in rows])
            mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
            t0 = time.perf_counter()
            y = model.generate(input_ids=x, attention_mask=mask, max_new_tokens=new, min_new_tokens=new,
                               do_sample=False, pad_token_id=pad)
            times.append(time.perf_counter() - t0)
            out += y[:, width:].tolist()
    return out, times[0], sum(times[1:])


def agreement(a: list[list[int]], b: list[list[int]], eos: tuple[int, ...]) -> float:
    """Share of rows whose greedy tokens are equal up to the first stop token (min_new_tokens bans it in
    transformers, so only the part before it is comparable)."""
    def cut(r):
        return next((r[:i] for i, t in enumerate(r) if t in eos), r)
    return float(np.mean([cut(x) == cut(y)[:len(cut(x))] for x, y in zip(a, b)]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="models/gemma-3-270m-q4_k_m.gguf")
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "banking77" / "train.csv"))
    p.add_argument("--rows", type=int, default=128)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--new_tokens", type=int, default=16)
    p.add_argument("--out", default="runs/generation")
    a = p.parse_args()
    out = Path(a.out)
    folder = model_folder(a.model, out)
    tok = load_tokenizer(folder)
    ids = [tok(t, add_special_tokens=True)["input_ids"] for t in prompts(Path(a.data), a.rows)]
    cfg = from_hf(hf_config(folder))
    pad = padding_id(tok)
    peak = {d: cpu_matmul_peak(jnp.dtype(d)) for d in ("float32", "bfloat16")}
    params = nnx.to_flat_state(nnx.state(from_pretrained(folder), nnx.Param))
    weights = sum(int(np.prod(v.shape)) for path, v in params if str(path[-1]) == "kernel")
    flops_per_token = 2 * (weights + cfg.hidden_size * cfg.vocab_size)  # decode: every weight once + the head
    rows, tokens = [], {}
    new_total = len(ids) * a.new_tokens
    for name, fn in (("ftjax float32", lambda: run_ftjax(folder, ids, a.batch, a.new_tokens, jnp.float32)),
                     ("ftjax bfloat16", lambda: run_ftjax(folder, ids, a.batch, a.new_tokens, jnp.bfloat16)),
                     ("transformers float32", lambda: run_transformers(folder, ids, a.batch, a.new_tokens,
                                                                       "float32", pad)),
                     ("transformers bfloat16", lambda: run_transformers(folder, ids, a.batch, a.new_tokens,
                                                                        "bfloat16", pad))):
        toks, first, rest = fn()
        tokens[name] = toks
        later = new_total - a.batch * a.new_tokens
        dtype = name.split()[1]
        rows.append({"run": name, "first_batch_s": first, "later_batches_s": rest,
                     "new_tokens_per_s": later / rest, "roof_tokens_per_s": peak[dtype] / flops_per_token})
        print(f"{name}: first batch {first:.1f} s, then {later / rest:,.1f} new tokens/s "
              f"(roof {peak[dtype] / flops_per_token:,.0f})", flush=True)
    eos = tuple(cfg.eos_ids)
    same = {d: agreement(tokens[f"ftjax {d}"], tokens[f"transformers {d}"], eos) for d in ("float32", "bfloat16")}
    meta = {"date": time.strftime("%Y-%m-%d", time.gmtime()), "device": jax.devices()[0].device_kind,
            "jax": jax.__version__, "model": a.model, "rows": a.rows, "batch": a.batch, "new_tokens": a.new_tokens,
            "matmul_peak_gflops": {d: v / 1e9 for d, v in peak.items()}, "greedy_rows_equal": same}
    out.mkdir(parents=True, exist_ok=True)
    (out / "generation.json").write_text(json.dumps({**meta, "rows": rows}, indent=1))
    lines = [f"{meta['date']}, {meta['device']}, jax {meta['jax']}: {a.rows} Banking77 prompts, batch {a.batch}, "
             f"{a.new_tokens} new tokens each, greedy; rows with equal tokens ftjax vs transformers: float32 "
             f"{same['float32']:.0%}, bfloat16 {same['bfloat16']:.0%}", "",
             "| run | first batch (s) | later batches: new tokens/s | matmul roof tokens/s |", "|---|---|---|---|"]
    lines += [f"| {r['run']} | {r['first_batch_s']:.1f} | {r['new_tokens_per_s']:,.1f} | "
              f"{r['roof_tokens_per_s']:,.0f} |" for r in rows]
    (out / "generation.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
