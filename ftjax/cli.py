"""The `ftjax` command: `ftjax SUBCOMMAND [--flags]`; each subcommand lives in `ftjax/commands/<name>.py`.

Subcommands use absl flags (and ml-collections config flags where they take a config), so only the chosen
subcommand's module is imported and its flags defined. Bad input ends with one line on stderr and exit 2; a bug
shows its traceback; `--debug` (anywhere on the line) shows the traceback of bad input too.
"""

from __future__ import annotations

import importlib
import re
import sys

from absl import flags

COMMANDS = {
    "train": "fine-tune a model from a config (resumes from the workdir's checkpoints)",
    "generate": "generate text with a model, from a prompt or a JSONL of prompts",
    "eval": "evaluate a run or model on a split: metrics with confidence intervals, gain over the base model",
    "review": "human review: export blinded review sheets (CSV/HTML), import and summarise completed ones",
    "compare": "compare two runs on the same test set: metrics, paired significance test, plots",
    "ensemble": "combine classification/regression runs of one task into one that `ftjax eval` scores",
    "bench": "time the train step: step time, tokens/s, MFU against the device's peak, peak memory",
    "export": "export adapters as Hugging Face PEFT, a merged transformers model or GGUF, with a model card",
    "push": "upload an export folder (with its model card) to a Hugging Face Hub model repository",
    "data": "data tools: curate, split, stats",
    "augment": "synthetic examples from seed rows (model paraphrases and new examples, rule-based noise), validated",
    "audit": "bias audits: group representation in data; per-group and counterfactual fairness of a run",
    "pairs": "metric-ranked preference pairs: sample k outputs per prompt, pair the best with the worst",
    "params": "trainable vs total parameters and adapter size per fine-tuning method",
    "sweep": "hyperparameter sweeps and ablations on Optuna (grid, random, TPE; pruning; resumable, multi-worker)",
    "select-base": "rank candidate base models on a task (zero/few-shot or a short probe run) by quality and cost",
    "monitor": "production monitoring: input drift against the training data, task quality decay over time",
    "registry": "the model registry on MLflow: register, list, show, promote, rollback, pull versions",
    "refresh": "re-fine-tune the champion on old + new data; promote only a measured gain without forgetting",
    "demo": "the main job on the embedded default (what `make demo` runs)",
}
# What bad input raises in ftjax (and in the libraries reading a user's files): one line, exit 2. Anything else
# is a bug and keeps its traceback; --debug keeps the traceback for these too.
USER_ERRORS = (ValueError, KeyError, OSError, FloatingPointError)


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {doc}" for name, doc in COMMANDS.items()]
    return ("usage: ftjax SUBCOMMAND [--flags] [--debug]   (ftjax SUBCOMMAND --help for its flags; --debug shows "
            "the traceback of an error)\n\n" + "\n".join(lines))


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    if len(argv) < 2 or argv[1] in ("-h", "--help", "help"):
        print(_usage())
        sys.exit(0 if len(argv) >= 2 else 2)
    name = argv[1]
    if name not in COMMANDS:
        fail(f"ftjax: unknown subcommand {name!r}; choose from: {', '.join(COMMANDS)}")
    args = argv[2:]
    try:
        # a config flag parses --config.KEY overrides: an unknown key is an AttributeError from ml_collections
        module = importlib.import_module(f"ftjax.commands.{name.replace('-', '_')}")
        if any(a in ("-h", "--help", "--helpshort") for a in args):
            print(f"ftjax {name}: {(module.__doc__ or '').strip()}\n")
            print(flags.FLAGS.module_help(module))
            sys.exit(0)
        rest = flags.FLAGS([f"ftjax {name}", *args])
    except (flags.Error, AttributeError, *USER_ERRORS) as e:
        if debug:
            raise
        fail(f"ftjax {name}: error: {flag_error(e)}")
    try:
        module.main(rest)
    except USER_ERRORS as e:
        if debug:
            raise
        fail(f"ftjax {name}: error: {one_line(e)}")
    except KeyboardInterrupt as e:
        if debug:
            raise
        print(f"ftjax {name}: interrupted" + (f": {e}" if str(e) else ""), file=sys.stderr)
        sys.exit(130)


def fail(message: str) -> None:
    print(message, file=sys.stderr)
    sys.exit(2)


def flag_error(e: BaseException) -> str:
    """A bad flag or config override on one line; ml_collections reports an unknown key as an AttributeError
    (or KeyError) carrying the key and a did-you-mean suggestion."""
    text = one_line(e)
    if not isinstance(e, (AttributeError, KeyError)):
        return text
    suggestion = r' Did you mean "([^"]+)" instead of "[^"]*"\?'
    return "unknown config key " + re.sub(suggestion, r'; did you mean "\1"?', text)


def one_line(e: BaseException) -> str:
    """The innermost message on one line (config overrides wrap errors in layers and tracebacks)."""
    while (e.__cause__ or e.__context__) is not None and not str(e).strip():
        e = e.__cause__ or e.__context__
    msg: object = e
    while isinstance(msg, BaseException):  # AttributeError(KeyError('...')) from config overrides
        if isinstance(msg, (KeyError, AttributeError)) and msg.args:
            msg = msg.args[0]
        else:
            msg = str(msg)
    text = str(msg)
    if "Traceback (most recent call last)" in text or isinstance(e, OSError):  # keep the specific last line
        text = [line for line in text.splitlines() if line.strip()][-1]
    return " ".join(text.split())
