"""What QLoRA's quantised base costs in quality and saves in memory: teacher-forced perplexity of the base model
on held-out text (E2E references after their meaning representations, loss on every token), and the bytes of
its weights, for the full-precision base, int8 and NF4 (ftjax/models/quantize.py).

    python experiments/bench_vs_peers/quantization.py --model=models/gemma-3-270m-q4_k_m.gguf --rows=200
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax.numpy as jnp
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from ftjax.eval.scoring import sequence_nll  # noqa: E402
from ftjax.metrics.bootstrap import ratio_statistic, with_ci  # noqa: E402
from ftjax.models import from_pretrained  # noqa: E402
from ftjax.models.quantize import KINDS, base_nbytes, quantize_base  # noqa: E402
from ftjax.models.tokenizer import load_tokenizer  # noqa: E402
from workload import e2e_rows  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(ROOT / "models" / "gemma-3-270m-q4_k_m.gguf"))
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "e2e" / "devset.csv"))
    p.add_argument("--rows", type=int, default=200, help="the last N rows of the file (never trained on here)")
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--out", default="")
    a = p.parse_args()
    tokenizer = load_tokenizer(a.model)
    texts = [f"{mr}\n{ref}" for mr, ref in e2e_rows(Path(a.data))[-a.rows:]]
    examples = []
    for t in texts:
        ids = tokenizer(t, add_special_tokens=True)["input_ids"]
        examples.append({"input_ids": ids, "loss_mask": [0] + [1] * (len(ids) - 1)})
    results = []
    for kind in KINDS:
        model = quantize_base(from_pretrained(a.model, dtype=jnp.dtype(a.dtype)), kind)
        t0 = time.perf_counter()
        nll, count = sequence_nll(model, examples, batch_size=16, pad_id=tokenizer.pad_token_id or 0)
        ppl = with_ci(ratio_statistic(nll, count, np.exp), n_resamples=1000)
        results.append({"quantize": kind, "perplexity": ppl["value"], "low": ppl["low"], "high": ppl["high"],
                        "base_bytes": base_nbytes(model), "tokens": int(count.sum()),
                        "score_s": time.perf_counter() - t0})
        print(json.dumps(results[-1]), flush=True)
    ref = results[0]
    print("| base | weights | perplexity [95% CI] | change |\n|---|---:|---|---:|")
    for r in results:
        print(f"| {r['quantize'] if r['quantize'] != 'none' else a.dtype} | {r['base_bytes'] / 2 ** 20:.0f} MiB | "
              f"{r['perplexity']:.3f} [{r['low']:.3f}, {r['high']:.3f}] | "
              f"{100 * (r['perplexity'] / ref['perplexity'] - 1):+.2f}% |")
    if a.out:
        Path(a.out).write_text(json.dumps({"args": vars(a), "results": results}, indent=1))


if __name__ == "__main__":
    main()
