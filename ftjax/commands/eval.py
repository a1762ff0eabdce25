"""ftjax eval --workdir=DIR [--split=test] [--checkpoint=best|last|STEP] [--baseline [--few_shot=K]]
           [--config.data.test=PATH] [--config.eval.KEY=VALUE]   |   --model=PATH [--adapter=DIR] --out=DIR ...

Generates (greedy, batched KV cache) for every prompt of the split, scores the references (perplexity), and
writes <out>/<split>.json (metrics with 95% bootstrap intervals, config, checkpoint, timing) and
<out>/<split>_predictions.jsonl; <out> defaults to DIR/eval. --baseline evaluates the base model without the
adapter on the same prompts too (--few_shot=K prepends K training examples to its prompts), writes
<split>_baseline.json, and adds the gain with a paired significance test to <split>.json.
"""

from __future__ import annotations

import time

import ml_collections
from absl import flags
from ml_collections import config_flags

FLAGS = flags.FLAGS


def _overridable() -> ml_collections.ConfigDict:
    """The config keys `--config.KEY=` may set (on top of the workdir's config), and the defaults used for
    --model runs, which have no config of their own."""
    from ftjax.evaluate import DEFAULTS

    return ml_collections.ConfigDict({
        "data": dict(train="", validation="", test="", format="auto", columns="", labels="", max_length=256),
        "eval": dict(DEFAULTS)})


flags.DEFINE_string("workdir", None, "training run folder (config.json and checkpoints)")
flags.DEFINE_string("checkpoint", "best", "best, last, or a step number (with --workdir)")
flags.DEFINE_string("model", None, "base model folder, hub id or .gguf file (instead of --workdir)")
flags.DEFINE_string("adapter", None, "adapter folder to load onto --model (ftjax or Hugging Face PEFT)")
flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "parameter dtype for --model")
flags.DEFINE_enum("split", "test", ["test", "validation", "train"], "which config.data split to evaluate")
flags.DEFINE_bool("baseline", False, "also evaluate the base model without the adapter, and report the gain")
flags.DEFINE_integer("few_shot", 0, "with --baseline: prepend K training examples to each baseline prompt")
flags.DEFINE_string("out", None, "results folder (default: WORKDIR/eval)")
# Overrides are read from sys.argv when this module is imported; accepting unknown keys here lets main() reject
# them with the CLI's one-line error instead of a traceback from the import.
config_flags.DEFINE_config_dict("config", _overridable(), "data.* and eval.* overrides", lock_config=False,
                                accept_new_attributes=True)


def _overrides() -> dict:
    allowed = _overridable()
    out = {}
    for name in FLAGS:
        if name.startswith("config.") and FLAGS[name].present:
            key = name[len("config."):]
            section, _, leaf = key.partition(".")
            if leaf not in allowed.get(section, {}):
                keys = ", ".join(f"{s}.{k}" for s in allowed for k in allowed[s])
                raise ValueError(f"unknown config key {key!r}; ftjax eval takes {keys}")
            out[key] = FLAGS[name].value
    return out


def _set(config: ml_collections.ConfigDict, dotted: str, value) -> None:
    *parents, leaf = dotted.split(".")
    node = config
    for p in parents:
        node = node[p]
    node[leaf] = value


def _print(report: dict) -> None:
    gain = report.get("gain", {})
    for name, v in report["metrics"].items():
        line = f"{name:>12}: {v['value']:8.3f}"
        if "low" in v:
            line += f"  [{v['low']:.3f}, {v['high']:.3f}]"
        if name in gain:
            g = gain[name]
            line += f"   base {g['a']:8.3f}   gain {g['delta']:+.3f}"
            line += f" (p={g['p_value']:.3f})" if "p_value" in g else ""
        print(line)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments: {' '.join(argv[1:])}")
    if bool(FLAGS.workdir) == bool(FLAGS.model):
        raise ValueError("give --workdir=DIR (a training run) or --model=PATH [--adapter=DIR], not both")
    if FLAGS.few_shot and not FLAGS.baseline:
        raise ValueError("--few_shot sets the baseline's prompts; add --baseline")
    if FLAGS.model and not FLAGS.out:
        raise ValueError("--model runs need --out=DIR for the results")
    if FLAGS.baseline and FLAGS.model and not FLAGS.adapter:
        raise ValueError("--baseline needs a fine-tuned model to compare with (--workdir, or --adapter)")
    import jax.numpy as jnp

    from ftjax.compare import paired_metrics
    from ftjax.data.sources import load_rows, parse_columns
    from ftjax.eval_set import eval_items, pick_shots
    from ftjax.evaluate import base_model, eval_settings, evaluate_split, label_set, write_results

    t0 = time.perf_counter()
    # config and rows first: bad input stops the run before a model is loaded or anything is written
    if FLAGS.workdir:
        from ftjax.runs import resolved_config

        config = resolved_config(FLAGS.workdir)
    else:
        config = ml_collections.ConfigDict(_overridable().to_dict() | {
            "model": {"path": FLAGS.model, "dtype": FLAGS.dtype}})
    for key, value in _overrides().items():
        _set(config, key, value)
    config.eval = eval_settings(config)
    spec = config.data.get(FLAGS.split, "")
    if not spec:
        raise ValueError(f"config has no data.{FLAGS.split}; pass --config.data.{FLAGS.split}=PATH")
    columns = parse_columns(config.data.columns)
    rows = load_rows(spec, columns)
    eval_items(rows, config.data.format, label_set(config))  # checks every row
    shots = []
    if FLAGS.few_shot:
        if not config.data.train:
            raise ValueError("--few_shot needs training examples: pass --config.data.train=PATH")
        shots = pick_shots(load_rows(config.data.train, columns), FLAGS.few_shot, config.data.format,
                           label_set(config))
    if FLAGS.workdir:
        from ftjax.runs import load_run

        model, tokenizer, _, step = load_run(FLAGS.workdir, FLAGS.checkpoint)
        source = {"workdir": FLAGS.workdir, "checkpoint": FLAGS.checkpoint, "step": step}
    else:
        from ftjax.models import from_pretrained
        from ftjax.peft.adapters import adapter_format, load_adapter
        from ftjax.tokenizer import load_tokenizer

        if FLAGS.adapter:
            adapter_format(FLAGS.adapter)  # fail before loading the model
        model = from_pretrained(FLAGS.model, dtype=getattr(jnp, FLAGS.dtype))
        tokenizer = load_tokenizer(FLAGS.model)
        if FLAGS.adapter:
            load_adapter(model, FLAGS.adapter)
        source = {"model": FLAGS.model, "adapter": FLAGS.adapter}
    out = FLAGS.out or f"{FLAGS.workdir}/eval"
    meta = {"split": FLAGS.split, "data": spec, **source, "config": config.to_dict()}

    report, predictions = evaluate_split(model, tokenizer, rows, config)
    report |= meta
    if FLAGS.baseline:
        with base_model(model, config.model.path, jnp.dtype(config.model.dtype)) as base:
            base_report, base_predictions = evaluate_split(base, tokenizer, rows, config, shots=shots)
        base_report |= meta | {"baseline": True, "few_shot_sources": [s for shot in shots for s in shot.sources]}
        write_results(out, f"{FLAGS.split}_baseline", base_report, base_predictions)
        n = config.eval.bootstrap
        names = list(report["metrics"])
        classes = report.get("classification", {}).get("labels")
        report["baseline"] = {"result": f"{FLAGS.split}_baseline.json", "few_shot": FLAGS.few_shot,
                              "metrics": base_report["metrics"]}
        report["gain"] = (paired_metrics(base_predictions, predictions, names, config.eval.normalize, classes, n) if n
                          else {k: {"a": base_report["metrics"][k]["value"],
                                    "delta": report["metrics"][k]["value"] - base_report["metrics"][k]["value"]}
                                for k in names})
    report["timing"]["total_s"] = time.perf_counter() - t0
    paths = write_results(out, FLAGS.split, report, predictions)
    _print(report)
    print(f"wrote {', '.join(str(p) for p in paths)}")
