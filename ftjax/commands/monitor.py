"""ftjax monitor drift --current=FILE[,FILE...] [--reference=SPEC] [--workdir=RUN] [--out=DIR]
                    [--config.monitor.KEY=VALUE] [--fail_on_alarm]
ftjax monitor quality --workdir=RUN --labelled=FILE[,FILE...] [--metric=NAME] [--baseline_score=X]
                      [--max_drop=0.02] [--out=DIR]

drift: each current file (one per day or week, inputs only) against the reference (default: the run's
training data): input length PSI, vocabulary Jensen-Shannon distance and out-of-vocabulary rate, and with
--workdir the PSI of the model's predicted labels and an MMD permutation test on its pooled hidden states;
each with its threshold (calibrated on the reference unless set) and verdict. quality: the task metric on
labelled samples of recent traffic against the version's held-out score (WORKDIR/eval/test.json, or
--baseline_score), flagging decay beyond --max_drop. Both append to a history in --out (default
monitor/), skip files already monitored, and redraw report.md, report.html and the plots.
"""

from __future__ import annotations

import sys
from pathlib import Path

import ml_collections
from absl import flags
from ml_collections import config_flags

from ftjax.monitor import drift

FLAGS = flags.FLAGS
flags.DEFINE_list("current", [], "drift: production input files, oldest first (any row format; labels not needed)")
flags.DEFINE_string("reference", None, "drift: the training inputs (default: the --workdir run's data.train)")
flags.DEFINE_string("workdir", None, "the fine-tuned run (drift: adds the label and embedding checks)")
flags.DEFINE_string("checkpoint", "best", "with --workdir: best, last or a step number")
flags.DEFINE_string("columns", "", "field mapping ours=theirs for the data files (default: the run's data.columns)")
flags.DEFINE_list("labelled", [], "quality: labelled samples of recent traffic, oldest first")
flags.DEFINE_string("metric", None, "quality: the metric to track (default: the run's objective metric)")
flags.DEFINE_float("baseline_score", None, "quality: the version's held-out score (default: WORKDIR/eval/test.json)")
flags.DEFINE_float("max_drop", 0.02, "quality: flag decay when the metric falls more than this below the baseline")
flags.DEFINE_string("out", "monitor", "folder for the histories, the report and the plots")
flags.DEFINE_bool("fail_on_alarm", False, "drift: exit 1 when the newest file alarms (for a scheduled job)")
config_flags.DEFINE_config_dict("config", ml_collections.ConfigDict({"monitor": drift.default_config()}),
                                "monitor.* thresholds and settings", lock_config=True)

SUBCOMMANDS = ("drift", "quality")


def main(argv: list[str]) -> None:
    if len(argv) != 2 or argv[1] not in SUBCOMMANDS:
        got = " ".join(argv[1:]) or "nothing"
        raise ValueError(f"usage: ftjax monitor {{{'|'.join(SUBCOMMANDS)}}} [flags] (got: {got})")
    {"drift": _drift, "quality": _quality}[argv[1]]()


def _run():
    """(model, tokenizer, config) of --workdir, or Nones without one."""
    if not FLAGS.workdir:
        return None, None, None
    from ftjax.train.restore import load_run

    model, tokenizer, config, _ = load_run(FLAGS.workdir, FLAGS.checkpoint)
    return model, tokenizer, config


def _columns(config) -> dict[str, str] | None:
    from ftjax.data.sources import parse_columns

    if FLAGS.columns:
        return parse_columns(FLAGS.columns)
    columns = config.data.get("columns", "") if config is not None else ""
    return parse_columns(columns) if columns else None


def _existing(files: list[str], flag: str) -> list[str]:
    if not files:
        raise ValueError(f"--{flag} is required: one or more files, oldest first")
    for f in files:
        if not Path(f).is_file():
            raise FileNotFoundError(f"--{flag}: no such file: {f}")
    return files


def _drift() -> None:
    from ftjax.data.sources import load_rows
    from ftjax.io import file_sha256
    from ftjax.monitor.model_view import ModelView, input_of, input_words_text
    from ftjax.monitor.series import drift_series, write_monitor_report
    from ftjax.workdir import read_config

    block = FLAGS.config.monitor
    drift.check(block)
    files = _existing(FLAGS.current, "current")
    run_config = read_config(FLAGS.workdir) if FLAGS.workdir else None
    reference = FLAGS.reference or (run_config.data.train if run_config is not None else None)
    if not reference:
        raise ValueError("give --reference=FILE (the training inputs) or --workdir=RUN (its data.train)")
    columns = _columns(run_config)

    def load(spec: str) -> tuple[list[str], list]:
        rows = load_rows(spec, columns)
        inputs = [input_of(r) for r in rows]
        return [input_words_text(x) for x in inputs], inputs

    def make_reference() -> drift.Reference:
        texts, inputs = load(reference)
        model, tokenizer, config = _run()
        view = ModelView(model, tokenizer, config) if model is not None else None
        return drift.Reference(texts, block, view, inputs)

    fingerprint = file_sha256(reference) if Path(reference).is_file() else reference
    against = {"reference": reference, "reference_sha256": fingerprint, "model": FLAGS.workdir,
               "checkpoint": FLAGS.checkpoint if FLAGS.workdir else None, "settings": block.to_dict()}
    out = Path(FLAGS.out)
    entries = drift_series(files, load, out, against, make_reference)
    for e in entries:
        flagged = [c["check"] for c in e["checks"] if c["alarm"]]
        print(f"{e['name']:>20}: {'ALARM (' + ', '.join(flagged) + ')' if flagged else 'no drift'}  "
              + "  ".join(f"{c['check']}={c['value']:.4g}/{c['threshold']:.4g}" for c in e["checks"]))
    paths = write_monitor_report(out)
    print(f"wrote {out / 'drift.jsonl'}, {', '.join(map(str, paths))}")
    if FLAGS.fail_on_alarm and entries and entries[-1]["alarm"]:
        sys.exit(1)


def _quality() -> None:
    import json

    from ftjax.data.config import rows_of
    from ftjax.eval.runner import evaluate_split
    from ftjax.monitor.series import quality_series, write_monitor_report
    from ftjax.workdir import Workdir, read_config

    if not FLAGS.workdir:
        raise ValueError("quality needs --workdir=RUN (the version serving the traffic)")
    files = _existing(FLAGS.labelled, "labelled")
    config = read_config(FLAGS.workdir)
    metric = FLAGS.metric or config.get("objective", {}).get("metric") or "accuracy"
    baseline = FLAGS.baseline_score
    if baseline is None:
        held_out = Workdir(FLAGS.workdir).eval / "test.json"
        if not held_out.is_file():
            raise ValueError(f"no held-out score: run `ftjax eval --workdir={FLAGS.workdir}` (writes {held_out}) "
                             "or pass --baseline_score")
        found = json.loads(held_out.read_text())["metrics"]
        if metric not in found:
            raise ValueError(f"{held_out} has no {metric!r}; it has: {', '.join(found)}")
        baseline = found[metric]["value"]
    loaded = []

    def score(file: str) -> dict:
        if not loaded:
            loaded.extend(_run())
        model, tokenizer, run_config = loaded
        run_config = run_config.copy_and_resolve_references()
        run_config.data.test = file
        report, _ = evaluate_split(model, tokenizer, rows_of(run_config.data, "test"), run_config)
        if metric not in report["metrics"]:
            raise ValueError(f"--metric={metric}: this run's evaluation gives {', '.join(report['metrics'])}")
        m = report["metrics"][metric]
        return {"value": m["value"], "low": m.get("low", m["value"]), "high": m.get("high", m["value"]),
                "rows": report["rows"]}

    against = {"model": FLAGS.workdir, "checkpoint": FLAGS.checkpoint, "metric": metric}
    out = Path(FLAGS.out)
    entries = quality_series(files, score, out, against, baseline, FLAGS.max_drop)
    for e in entries:
        print(f"{e['name']:>20}: {metric}={e['value']:.4f} [{e['low']:.4f}, {e['high']:.4f}] vs held-out "
              f"{e['baseline']:.4f}: {'DECAY' if e['alarm'] else 'ok'}")
    paths = write_monitor_report(out)
    print(f"wrote {out / 'quality.jsonl'}, {', '.join(map(str, paths))}")
