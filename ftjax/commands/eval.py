"""ftjax eval --workdir=DIR [--task=NAME] [--split=test] [--checkpoint=best|last|STEP] [--baseline [--few_shot=K]]
           [--config.data.test=PATH] [--config.eval.KEY=VALUE] [--config.objective.KEY=VALUE]
           |   --model=PATH [--adapter=DIR] --out=DIR ...

Generates (greedy, batched KV cache) for every prompt of the split, scores the references (perplexity), and
writes <out>/<split>.json (metrics with 95% bootstrap intervals, config, checkpoint, timing) and
<out>/<split>_predictions.jsonl; <out> defaults to DIR/eval. --baseline evaluates the base model without the
adapter on the same prompts too (--few_shot=K prepends K training examples to its prompts), writes
<split>_baseline.json, and adds the gain with a paired significance test to <split>.json. The run's objective
(ftjax.objective) is judged on the split: met or not, and whether the whole 95% interval is past the target.
"""

from __future__ import annotations

import math
import time

import ml_collections
from absl import flags
from ml_collections import config_flags

from ftjax import objective
from ftjax.data import config as data_config
from ftjax.eval import config as eval_config

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "training run folder (config.json and checkpoints)")
flags.DEFINE_string("checkpoint", "best", "best, last, or a step number (with --workdir)")
flags.DEFINE_string("task", None, "with --workdir of a multi-task run: which task's data, head and metrics")
flags.DEFINE_string("model", None, "base model folder, hub id or .gguf file (instead of --workdir)")
flags.DEFINE_string("adapter", None, "adapter folder to load onto --model (ftjax or Hugging Face PEFT)")
flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "parameter dtype for --model")
flags.DEFINE_enum("split", "test", ["test", "validation", "train"], "which config.data split to evaluate")
flags.DEFINE_bool("baseline", False, "also evaluate the base model without the adapter, and report the gain")
flags.DEFINE_integer("few_shot", 0, "with --baseline: prepend K training examples to each baseline prompt")
flags.DEFINE_string("out", None, "results folder (default: WORKDIR/eval)")
flags.DEFINE_list("harness", [], "lm-evaluation-harness tasks to run too (e.g. hellaswag,arc_easy); with "
                  "--baseline, also on the base model: the forgetting check. Without the split's data, only these")
flags.DEFINE_string("harness_include", None, "a folder of your own lm-eval task YAML files")
flags.DEFINE_integer("harness_limit", None, "at most this many documents per harness task")
# The same data and eval blocks the experiment configs use: --config.data.* and --config.eval.* override the
# workdir's config (or, for --model runs, these defaults); any other key is an unknown flag.
config_flags.DEFINE_config_dict("config", ml_collections.ConfigDict(
    {"data": data_config.default_config(), "eval": eval_config.default_config(),
     "objective": objective.default_config()}), "data.*, eval.* and objective.* overrides", lock_config=True)


def _config() -> ml_collections.ConfigDict:
    """The run's config (or the defaults for --model) with the --config.* overrides applied."""
    from ftjax.config import set_dotted
    from ftjax.tasks import pick_task, task_config
    from ftjax.workdir import read_config

    if FLAGS.workdir:
        config = read_config(FLAGS.workdir)
        task = pick_task(config, FLAGS.task, FLAGS.workdir)
        config = task_config(config, task)
        config.eval = eval_config.eval_settings(config)
        config.objective = objective.objective_block(config)
        mine = config.objective.metric.rpartition("/")  # a multi-task objective names its task: keep this task's
        config.objective.metric = mine[2] if mine[0] in ("", task) else ""
    else:
        config = ml_collections.ConfigDict(FLAGS.config.to_dict() | {"model": {"path": FLAGS.model,
                                                                               "dtype": FLAGS.dtype}})
    for name in FLAGS:
        if name.startswith("config.") and FLAGS[name].present:
            set_dotted(config, name[len("config."):], FLAGS[name].value)
    return config


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
    if FLAGS.task and not FLAGS.workdir:
        raise ValueError("--task picks a task of a multi-task run: give --workdir")
    if FLAGS.model and not FLAGS.out:
        raise ValueError("--model runs need --out=DIR for the results")
    if FLAGS.baseline and FLAGS.model and not FLAGS.adapter:
        raise ValueError("--baseline needs a fine-tuned model to compare with (--workdir, or --adapter)")
    import jax.numpy as jnp

    from ftjax.data.config import label_set, rows_of
    from ftjax.eval.baseline import add_baseline
    from ftjax.eval.ensemble import Ensemble
    from ftjax.eval.items import eval_items, pick_shots
    from ftjax.eval.runner import evaluate_split, write_results
    from ftjax.models.heads import head_type
    from ftjax.workdir import is_ensemble

    t0 = time.perf_counter()
    # config and rows first: bad input stops the run before a model is loaded or anything is written
    config = _config()
    eval_config.check(config.eval)
    objective.check(config.objective)
    if FLAGS.baseline and head_type(config) != "lm":
        raise ValueError("--baseline compares generated answers; the base model of a classification-head run has "
                         "no head to compare (score a simple baseline on the same split instead)")
    spec = config.data.get(FLAGS.split, "")
    if not spec and not FLAGS.harness:
        raise ValueError(f"config has no data.{FLAGS.split}; pass --config.data.{FLAGS.split}=PATH")
    rows = rows_of(config.data, FLAGS.split) if spec else []
    if spec and not rows:
        raise ValueError(f"{spec}: no rows")
    if rows:
        _, task = eval_items(rows, config.data.format, label_set(config.data))  # checks every row
        eval_config.check_decoding(eval_config.eval_settings(config), task, head_type(config),
                                   label_set(config.data))
    shots = []
    if FLAGS.few_shot:
        if not config.data.train:
            raise ValueError("--few_shot needs training examples: pass --config.data.train=PATH")
        shots = pick_shots(rows_of(config.data, "train"), FLAGS.few_shot, config.data.format,
                           label_set(config.data))
    if FLAGS.workdir and is_ensemble(config):
        from ftjax.models.tokenizer import load_tokenizer
        from ftjax.train.restore import load_run

        if FLAGS.baseline or FLAGS.harness or FLAGS.checkpoint != "best":
            raise ValueError(f"{FLAGS.workdir} is an ensemble: it is scored on a split, at the checkpoint it was "
                             "made with (no --baseline, --harness or --checkpoint)")
        model, tokenizer = Ensemble(config, load_run), load_tokenizer(config.model.path)
        source = {"workdir": FLAGS.workdir}
    elif FLAGS.workdir:
        from ftjax.train.restore import load_run

        model, tokenizer, _, step = load_run(FLAGS.workdir, FLAGS.checkpoint)
        source = {"workdir": FLAGS.workdir, "checkpoint": FLAGS.checkpoint, "step": step}
    else:
        from ftjax.models import from_pretrained
        from ftjax.models.tokenizer import load_tokenizer
        from ftjax.peft.files import adapter_format, load_adapter

        if FLAGS.adapter:
            adapter_format(FLAGS.adapter)  # fail before loading the model
        model = from_pretrained(FLAGS.model, dtype=getattr(jnp, FLAGS.dtype))
        tokenizer = load_tokenizer(FLAGS.model)
        if FLAGS.adapter:
            load_adapter(model, FLAGS.adapter)
        source = {"model": FLAGS.model, "adapter": FLAGS.adapter}
    out = FLAGS.out or f"{FLAGS.workdir}/eval"
    meta = {"split": FLAGS.split, "data": spec, **source, "config": config.to_dict()}
    if FLAGS.harness:
        _harness(model, tokenizer, out, config.train.seed if "train" in config else 0)
    if not rows:
        return

    report, predictions = evaluate_split(model, tokenizer, rows, config)
    report |= meta
    if FLAGS.baseline:
        report = add_baseline(report, predictions, model, tokenizer, rows, config, out, FLAGS.split, meta, shots)
    report["timing"]["total_s"] = time.perf_counter() - t0
    goal = config.objective
    if goal.metric in report["metrics"] or goal.metric and not math.isnan(goal.target):
        found = report["metrics"].get(goal.metric, {})
        report["objective"] = objective.judge(config.objective, found.get("value"), found.get("low"),
                                              found.get("high"), split=FLAGS.split)
    paths = write_results(out, FLAGS.split, report, predictions)
    _print(report)
    if "objective" in report:
        print(objective.describe(report["objective"]))
    print(f"wrote {', '.join(str(p) for p in paths)}")


def _harness(model, tokenizer, out: str, seed: int) -> None:
    """lm-eval tasks on the model (and, with --baseline, on the base model: the forgetting check), to
    OUT/harness.json and a printed table."""
    from ftjax.eval.harness import run_harness
    from ftjax.io import write_json
    from ftjax.peft.state import use_adapter

    run = lambda: run_harness(model, tokenizer, FLAGS.harness, FLAGS.harness_include, FLAGS.harness_limit, seed=seed)
    results = {"tuned": run()}
    if FLAGS.baseline:
        with use_adapter(model, None):
            results["base"] = run()
    for task, metrics in results["tuned"].items():
        for name, value in metrics.items():
            line = f"{task:>20} {name:>12}: {value:8.4f}"
            if "base" in results:
                base = results["base"][task][name]
                line += f"   base {base:8.4f}   change {value - base:+.4f}"
            print(line)
    path = write_json(f"{out}/harness.json", {"tasks": FLAGS.harness, "limit": FLAGS.harness_limit, **results})
    print(f"wrote {path}")
