"""The `ftjax` command: `ftjax SUBCOMMAND [--flags]`; each subcommand lives in `ftjax/commands/<name>.py`.

Subcommands use absl flags (and ml-collections config flags where they take a config), so only the chosen
subcommand's module is imported and its flags defined. Bad input ends with one line on stderr and exit 2.
"""

from __future__ import annotations

import importlib
import sys

from absl import flags

COMMANDS = {
    "train": "fine-tune a model from a config (resumes from the workdir's checkpoints)",
    "generate": "generate text with a model, from a prompt or a JSONL of prompts",
    "eval": "evaluate a run or model on a split: metrics with confidence intervals, gain over the base model",
    "review": "human review: export blinded review sheets (CSV/HTML), import and summarise completed ones",
    "compare": "compare two runs on the same test set: metrics, paired significance test, plots",
    "bench": "time the train step: step time, tokens/s, MFU against the device's peak, peak memory",
    "export": "export adapters as Hugging Face PEFT or a merged transformers model",
    "data": "data tools: curate, split, stats",
    "params": "trainable vs total parameters and adapter size per fine-tuning method",
    "demo": "the main job on the embedded default (what `make demo` runs)",
}
USER_ERRORS = (ValueError, KeyError, OSError, FloatingPointError)


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {doc}" for name, doc in COMMANDS.items()]
    return "usage: ftjax SUBCOMMAND [--flags]   (ftjax SUBCOMMAND --help for its flags)\n\n" + "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv if argv is None else argv)
    if len(argv) < 2 or argv[1] in ("-h", "--help", "help"):
        print(_usage())
        sys.exit(0 if len(argv) >= 2 else 2)
    name = argv[1]
    if name not in COMMANDS:
        fail(f"ftjax: unknown subcommand {name!r}; choose from: {', '.join(COMMANDS)}")
    module = importlib.import_module(f"ftjax.commands.{name}")
    args = argv[2:]
    if any(a in ("-h", "--help", "--helpshort") for a in args):
        print(f"ftjax {name}: {(module.__doc__ or '').strip()}\n")
        print(flags.FLAGS.module_help(module))
        sys.exit(0)
    try:
        rest = flags.FLAGS([f"ftjax {name}", *args])
        module.main(rest)
    except (flags.Error, AttributeError, *USER_ERRORS) as e:
        fail(f"ftjax {name}: error: {one_line(e)}")


def fail(message: str) -> None:
    print(message, file=sys.stderr)
    sys.exit(2)


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
    if isinstance(e, AttributeError):
        text = "unknown config key " + text
    return " ".join(text.split())
