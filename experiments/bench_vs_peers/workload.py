"""The two workloads every framework trains on, built once as token arrays so all of them see the same rows,
and the timing loop they share.

    all  loss on every token: E2E texts (meaning representation + reference) run together and cut into
         windows of T tokens, batch B x T (default 4 x 256)
    sft  supervised fine-tuning: one E2E row per sequence, prompt "MR\n", loss on the reference and EOS only,
         right-padded to T (default 8 x 96)

Arrays (numpy, per step): input_ids [B, T], attention_mask [B, T], loss_mask [B, T] (token t is a target, i.e.
predicted from t - 1; the first token never is). Tokens per second count real (non-padding) input tokens.
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

WORKLOADS = {"all": (4, 256), "sft": (8, 96)}


def worker_parser(doc: str) -> argparse.ArgumentParser:
    """The arguments every worker takes: MODEL_DIR BATCHES.npz RESULT.json and the shared training settings."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("model"), p.add_argument("batches"), p.add_argument("result")
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--dtype", default="float32")
    return p


def e2e_rows(path: Path) -> list[tuple[str, str]]:
    with open(path, newline="") as f:
        return [(r["mr"], r["ref"]) for r in csv.DictReader(f)]


def build(kind: str, rows: list[tuple[str, str]], tokenizer, steps: int, vocab: int, batch: int | None = None,
          length: int | None = None) -> dict[str, np.ndarray]:
    """`steps` batches [steps, B, T] of workload `kind`; ids are taken modulo `vocab` (a random-weight model with
    another vocabulary still sees the same sequence structure)."""
    b, t = batch or WORKLOADS[kind][0], length or WORKLOADS[kind][1]
    need = steps * b
    eos = tokenizer.eos_token_id
    ids = np.zeros((need, t), np.int64)
    attn = np.zeros((need, t), bool)
    loss = np.zeros((need, t), bool)
    if kind == "all":
        stream: list[int] = []
        for mr, ref in rows:
            stream += tokenizer(f"{mr}\n{ref}", add_special_tokens=False)["input_ids"] + [eos]
            if len(stream) >= need * t:
                break
        if len(stream) < need * t:
            raise ValueError(f"the rows hold {len(stream)} tokens, fewer than {need} x {t}")
        ids[:] = np.asarray(stream[:need * t]).reshape(need, t)
        attn[:], loss[:, 1:] = True, True
    elif kind == "sft":
        i = 0
        for mr, ref in rows:
            p = tokenizer(f"{mr}\n", add_special_tokens=True)["input_ids"]
            c = tokenizer(ref, add_special_tokens=False)["input_ids"] + [eos]
            seq = (p + c)[:t]
            if len(p) >= t:
                continue
            ids[i, :len(seq)], attn[i, :len(seq)], loss[i, len(p):len(seq)] = seq, True, True
            i += 1
            if i == need:
                break
        if i < need:
            raise ValueError(f"only {i} rows fit, need {need}")
    else:
        raise ValueError(f"workload {kind!r}: choose from {', '.join(WORKLOADS)}")
    ids = np.where(attn, ids % vocab, 0)
    shape = (steps, b, t)
    return {"input_ids": ids.reshape(shape).astype(np.int32), "attention_mask": attn.reshape(shape),
            "loss_mask": loss.reshape(shape)}


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def time_steps(step: Callable[[int], tuple[float, float]], arrays: dict[str, np.ndarray], warmup: int
               ) -> dict:
    """Run `step(i) -> (loss, grad_norm)` over every batch; the first `warmup` are not timed. Checks that the
    gradient is non-zero and finite and reports whether the loss fell (last two steps vs first two)."""
    n = arrays["input_ids"].shape[0]
    losses, norms, times = [], [], []
    for i in range(n):
        t0 = time.perf_counter()
        loss, norm = step(i)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
        losses.append(loss)
        norms.append(norm)
    if not all(np.isfinite(losses)) or not all(np.isfinite(norms)) or min(norms) <= 0:
        raise FloatingPointError(f"bad losses {losses} or gradient norms {norms}")
    tokens = int(arrays["attention_mask"][warmup:].sum())
    return {"losses": losses, "grad_norms": norms, "step_s": times, "step_s_median": statistics.median(times),
            "tokens_per_s": tokens / sum(times), "targets_per_step": float(arrays["loss_mask"].sum() / n),
            "loss_fell": float(np.mean(losses[-2:])) < float(np.mean(losses[:2])), "peak_rss_bytes": peak_rss()}


def load(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as f:
        return dict(f)


def write_result(path: Path, result: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(path)
