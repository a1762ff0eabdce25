"""ftjax audit data --input=FILE [--groups=GROUPS.yaml] --out=DIR
ftjax audit model --workdir=RUN --test=FILE [--groups=GROUPS.yaml] [--out=DIR] [--positive=LABEL]
ftjax audit compare --before=AUDIT_DIR --after=AUDIT_DIR --out=DIR

Bias audits against a group lexicon (default: ftjax/data/starter_groups.yaml, which documents the format).
`data`: how often each group is mentioned in inputs and targets, the labels per group, representation and
sensitive-term flags. `model`: the run's task metric per group, fairness metrics through fairlearn
(demographic parity difference, disparate impact with the four-fifths rule, equalized odds difference) with
bootstrap intervals, and counterfactual tests (swap the group terms, count changed outputs); written to
RUN/audit/ by default, where `ftjax export` puts it in the model card. `compare`: two model audits side by
side (before and after a mitigation). Each writes audit.json, report.md and report.html (plots embedded).
"""

from __future__ import annotations

import json
from pathlib import Path

from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_string("input", None, "data: the rows to audit (JSONL/CSV/Parquet, hf: or tfds:)")
flags.DEFINE_string("columns", "", "data: field mapping ours=theirs (e.g. label=category)")
flags.DEFINE_string("format", "auto", "data: row format (auto, classification, prompt_completion, ...)")
flags.DEFINE_string("groups", "", "group lexicon YAML (default: the starter set)")
flags.DEFINE_string("workdir", None, "model: the training run")
flags.DEFINE_string("checkpoint", "best", "model: best, last or a step number")
flags.DEFINE_string("task", None, "model: which task of a multi-task run")
flags.DEFINE_string("test", None, "model: the held-out rows to audit on (the run's data.test when not given)")
flags.DEFINE_string("positive", None, "model: audit only this label against the rest (default: every label)")
flags.DEFINE_integer("bootstrap", 1000, "bootstrap resamples for the intervals")
flags.DEFINE_integer("min_group_rows", 10, "model: fairness metrics compare only groups with this many items")
flags.DEFINE_integer("examples", 5, "examples to show per group / swap")
flags.DEFINE_string("before", None, "compare: the audit folder before")
flags.DEFINE_string("after", None, "compare: the audit folder after")
flags.DEFINE_string("out", None, "the report folder (model: default RUN/audit)")
flags.DEFINE_bool("overwrite", False, "replace an existing report folder")

SUBCOMMANDS = ("data", "model", "compare")


def main(argv: list[str]) -> None:
    if len(argv) != 2 or argv[1] not in SUBCOMMANDS:
        raise ValueError(f"usage: ftjax audit {{{'|'.join(SUBCOMMANDS)}}} [flags] (got: {' '.join(argv[1:]) or 'nothing'})")
    what = argv[1]
    need = {"data": ("input", "out"), "model": ("workdir",), "compare": ("before", "after", "out")}[what]
    for name in need:
        if not FLAGS[name].value:
            raise ValueError(f"audit {what} needs --{name}")
    from ftjax.audit import report as R
    from ftjax.data.groups import load_lexicon
    from ftjax.io import check_new_dir

    out = Path(FLAGS.out or f"{FLAGS.workdir}/audit")
    check_new_dir(out, FLAGS.overwrite)  # before any work
    if what == "compare":
        before, after = (_read_audit(FLAGS.before), _read_audit(FLAGS.after))
        sections = R.compare_sections(before, after, (Path(FLAGS.before).name, Path(FLAGS.after).name))
        R.write(out, "Audit: before and after", sections, {}, {"before": before, "after": after}, FLAGS.overwrite)
        print("\n".join(" | ".join(str(x) for x in row) for row in [sections[0][2], *sections[0][3]]))
    elif what == "data":
        from ftjax.audit.data import audit_data
        from ftjax.data.sources import load_rows, parse_columns

        lexicon = load_lexicon(FLAGS.groups)
        rows = load_rows(FLAGS.input, parse_columns(FLAGS.columns))
        if not rows:
            raise ValueError(f"{FLAGS.input}: no rows")
        report = audit_data(rows, lexicon, FLAGS.format, FLAGS.examples)
        report["source"] = FLAGS.input
        sections, plots = R.data_sections(report)
        R.write(out, f"Data audit: {FLAGS.input}", sections, plots, report, FLAGS.overwrite)
        print("\n".join(report["flags"]) or "nothing flagged")
    else:
        report = _model(load_lexicon(FLAGS.groups))
        sections, plots = R.model_sections(report)
        R.write(out, f"Bias audit: {FLAGS.workdir}", sections, plots, report, FLAGS.overwrite)
        print("\n".join(R.findings(report)))
    print(f"wrote {out}/report.md, report.html, audit.json")


def _read_audit(folder: str) -> dict:
    p = Path(folder) / "audit.json"
    if not p.is_file():
        raise FileNotFoundError(f"no audit at {folder} (no audit.json; run ftjax audit model first)")
    report = json.loads(p.read_text())
    if "task" not in report or "attributes" not in report:
        raise ValueError(f"{p}: not a model audit (ftjax audit model writes one)")
    return report


def _model(lexicon) -> dict:
    from ftjax.audit.model import audit_model
    from ftjax.data.config import label_set, rows_of
    from ftjax.eval.config import eval_settings
    from ftjax.eval.items import eval_items
    from ftjax.models.heads import head_type
    from ftjax.tasks import pick_task, task_config
    from ftjax.train.restore import load_run
    from ftjax.workdir import read_config

    config = read_config(FLAGS.workdir)
    config = task_config(config, pick_task(config, FLAGS.task, FLAGS.workdir))
    config.eval = eval_settings(config)
    if head_type(config) == "regression":
        raise ValueError("audit model compares labels or generated texts; a regression run has neither")
    if FLAGS.test:
        config.data.test = FLAGS.test
    if not config.data.test:
        raise ValueError("give --test=FILE (held-out rows; the run's config has no data.test)")
    rows = rows_of(config.data, "test")
    if not rows:
        raise ValueError(f"{config.data.test}: no rows")
    eval_items(rows, config.data.format, label_set(config.data))  # every row checked before the model loads
    model, tokenizer, _, step = load_run(FLAGS.workdir, FLAGS.checkpoint)
    report = audit_model(model, tokenizer, config, rows, lexicon, n_resamples=FLAGS.bootstrap,
                         positive=FLAGS.positive, examples=FLAGS.examples, min_rows=FLAGS.min_group_rows)
    return report | {"workdir": FLAGS.workdir, "step": step, "test": config.data.test}
