"""A stand-in for `ftjax train` in the sweep tests: the same command line, workdir files (metrics.jsonl,
summary.json) and signals (SIGTERM: save and exit 130; resume from metrics.jsonl), with a validation curve set
by the trial's settings instead of a model, so that a sweep's logic runs in seconds:
val_loss = learning_rate + 0.01 * seed + 1 / step (and val_perplexity its exp), evaluated every 2 of 6 steps. FAKE_FAIL_LR=x fails the
trials at learning rate x."""

import json
import math
import os
import signal
import sys
import time
from pathlib import Path

args = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a)
wd = Path(args["workdir"])
wd.mkdir(parents=True, exist_ok=True)
lr = float(args.get("config.train.learning_rate", "0.1"))
if os.environ.get("FAKE_FAIL_LR") == str(lr):  # a trial whose cause of failure the test then removes
    sys.exit("ftjax train: error: planted failure")
seed = int(args.get("config.train.seed", "0"))
steps, pause = 6, float(os.environ.get("FAKE_STEP_S", "0.05"))
metrics = wd / "metrics.jsonl"
done = [json.loads(line) for line in metrics.read_text().splitlines()] if metrics.exists() else []
start = done[-1]["step"] if done else 0
with (wd / "starts.jsonl").open("a") as f:
    f.write(json.dumps({"from_step": start, "pid": os.getpid()}) + "\n")
stop = []
signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
with metrics.open("a") as f:
    for step in range(start + 1, steps + 1):
        time.sleep(pause)
        row = {"step": step, "loss": lr}
        if step % 2 == 0:
            row["val_loss"] = lr + 0.01 * seed + 1.0 / step
            row["val_perplexity"] = math.exp(row["val_loss"])
        f.write(json.dumps(row) + "\n")
        f.flush()
        if stop:
            sys.exit(130)
evals = [r for r in map(json.loads, metrics.read_text().splitlines()) if "val_loss" in r]
best = min(evals, key=lambda r: r["val_loss"])
(wd / "summary.json").write_text(json.dumps({
    "steps": steps, "metric": "val_loss", "best": best["val_loss"], "best_step": best["step"], "seconds": 6 * pause,
    "final": {"tokens_per_s": 100.0}, "parameters": {"trainable_params": 10}, "peak_memory_gb": 0.1}))
