"""Side by side: the same model, rows, batch and sequence length trained with Hugging Face PEFT, Tunix and
ftjax, one framework after another (each in its own process, so each peak memory is its own).

    python experiments/bench_vs_peers/run.py --model=models/gemma-3-270m-q4_k_m.gguf --out=runs/bench_vs_peers
    python experiments/bench_vs_peers/run.py --model=llama-1b --workloads=sft --steps=4 --out=runs/bench_llama1b

--model: a transformers folder, a .gguf file (converted once to a float32 folder under --out), or `llama-1b`
(Llama 3.2 1B's shapes from ftjax.models.presets, random weights; token ids from --tokenizer modulo its vocabulary). Prints and writes
OUT/results.md and OUT/results.json: step time, tokens/s, ratio to PEFT, peak RSS, first and last loss.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import workload as W

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
WORKERS = {"peft": "peft_lora.py", "tunix": "tunix_lora.py", "ftjax": "ftjax_lora.py"}



def model_folder(spec: str, out: Path) -> Path:
    """A transformers folder for `spec`, written under `out` once (atomic, by ftjax's save_pretrained)."""
    if spec == "llama-1b":
        folder = out / "models" / "llama-1b-random"
        if not (folder / "config.json").is_file():
            import torch
            import transformers

            from ftjax.models.presets import hf_preset

            torch.manual_seed(0)
            hf = transformers.AutoModelForCausalLM.from_config(hf_preset("llama3.2-1b"))
            hf.save_pretrained(folder)
        return folder
    path = Path(spec)
    if path.suffix != ".gguf":
        return path
    folder = out / "models" / path.stem
    if not (folder / "config.json").is_file():
        from ftjax.models import from_pretrained, save_pretrained
        from ftjax.models.tokenizer import load_tokenizer

        save_pretrained(from_pretrained(path), folder, tokenizer=load_tokenizer(path))
    return folder


def interpreter(framework: str, tunix_python: str) -> str | None:
    if framework != "tunix":
        return sys.executable
    return tunix_python if Path(tunix_python).is_file() else None


def table(results: list[dict]) -> str:
    head = ("| workload | framework | dtype | batch x T | step s (median) | tokens/s | vs PEFT | peak RSS GiB | "
            "loss first -> last | trainable |\n|---|---|---|---|---:|---:|---:|---:|---|---:|")
    lines = [head]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['workload']} | {r['framework']} | | | | | | | {r['error']} | |")
            continue
        base = next((p for p in results if p["workload"] == r["workload"] and p["framework"] == "peft"
                     and "error" not in p), None)
        ratio = f"{r['tokens_per_s'] / base['tokens_per_s']:.2f}x" if base else ""
        lines.append(f"| {r['workload']} | {r['framework']} | {r['dtype']} | {r['shape']} | "
                     f"{r['step_s_median']:.2f} | {r['tokens_per_s']:.1f} | {ratio} | "
                     f"{r['peak_rss_bytes'] / 2 ** 30:.2f} | {r['losses'][0]:.3f} -> {r['losses'][-1]:.3f}"
                     f"{'' if r['loss_fell'] else ' (did not fall)'} | {r['trainable_params']:,} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="models/gemma-3-270m-q4_k_m.gguf")
    p.add_argument("--tokenizer", default="", help="default: the model (for llama-1b: the Gemma 3 GGUF)")
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "e2e" / "devset.csv"))
    p.add_argument("--workloads", default="all,sft")
    p.add_argument("--frameworks", default="peft,tunix,ftjax")
    p.add_argument("--steps", type=int, default=6, help="steps per run, warm-up included")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--dtype", default="float32", help="every framework's weights (ftjax also: --ftjax_dtypes)")
    p.add_argument("--ftjax_dtypes", default="", help="extra ftjax runs, e.g. bfloat16")
    p.add_argument("--ftjax_packed", action="store_true",
                   help="one more ftjax run on `sft`: each step's rows packed into fewer rows of the same length")
    p.add_argument("--batch", type=int, default=0, help="override the workload's batch size")
    p.add_argument("--length", type=int, default=0, help="override the workload's sequence length")
    p.add_argument("--tunix_python", default=str(ROOT / "runs" / "tunix-venv" / "bin" / "python"))
    p.add_argument("--out", default=str(ROOT / "runs" / "bench_vs_peers"))
    a = p.parse_args()
    if a.warmup < 1 or a.steps < a.warmup + 2:
        sys.exit("need --warmup >= 1 and --steps >= warmup + 2")
    out = Path(a.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(ROOT))
    folder = model_folder(a.model, out).resolve()
    from transformers import AutoConfig

    from ftjax.hardware import host_cpu
    from ftjax.models.tokenizer import load_tokenizer

    tok_spec = a.tokenizer or (str(ROOT / "models" / "gemma-3-270m-q4_k_m.gguf") if a.model == "llama-1b"
                               else str(folder))
    tokenizer = load_tokenizer(tok_spec)
    vocab = AutoConfig.from_pretrained(folder).vocab_size
    rows = W.e2e_rows(Path(a.data))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), str(ROOT), os.environ.get("PYTHONPATH", "")]))
    results = []
    for kind in a.workloads.split(","):
        arrays = W.build(kind, rows, tokenizer, a.steps, vocab, a.batch or None, a.length or None)
        batches = out / f"{kind}.npz"
        np.savez(batches, **arrays)
        shape = "x".join(map(str, arrays["input_ids"].shape[1:]))
        runs = [(f, a.dtype, []) for f in a.frameworks.split(",")]
        runs += [("ftjax", d, []) for d in a.ftjax_dtypes.split(",") if d and "ftjax" in a.frameworks]
        if a.ftjax_packed and kind == "sft" and "ftjax" in a.frameworks:
            runs.append(("ftjax", a.dtype, ["--pack"]))
        for framework, dtype, extra in runs:
            python = interpreter(framework, a.tunix_python)
            row = {"workload": kind, "framework": framework, "shape": shape, "dtype": dtype}
            if python is None:
                results.append(row | {"error": f"not installed ({a.tunix_python} missing)"})
                continue
            result = out / f"{kind}_{framework}_{dtype}{'_packed' if extra else ''}.json"
            cmd = [python, str(HERE / WORKERS[framework]), str(folder), str(batches), str(result),
                   f"--rank={a.rank}", f"--warmup={a.warmup}", f"--lr={a.lr}", f"--dtype={dtype}", *extra]
            print(f"[{time.strftime('%H:%M:%S')}] {kind}: {framework} ({dtype}) {' '.join(extra)}", flush=True)
            done = subprocess.run(cmd, env=env, cwd=HERE, stderr=subprocess.PIPE, text=True)
            if done.returncode:
                tail = done.stderr.strip().splitlines()[-1:] or ["?"]
                results.append(row | {"error": f"failed: {tail[0][:160]}"})
                print(done.stderr[-3000:], file=sys.stderr)
                continue
            results.append(row | json.loads(result.read_text()))
    host = host_cpu()  # the seconds compare only within one kind of host
    report = table(results)
    print(f"{report}\nhost: {host}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    (out / "results.md").write_text(f"{report}\n\nhost: {host}\n")
    W.write_result(out / "results.json", {"model": a.model, "args": vars(a), "host_cpu": host, "results": results})


if __name__ == "__main__":
    main()
