"""The `ftjax` command: `ftjax SUBCOMMAND [--flags]`; each subcommand lives in `ftjax/commands/<name>.py`.

Subcommands use absl flags (and ml-collections config flags where they take a config), so only the chosen
subcommand's module is imported and its flags defined. Bad input ends with one line on stderr and exit 2.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "generate": "generate text with a model, from a prompt or a JSONL of prompts",
    "export": "export adapters as Hugging Face PEFT or a merged transformers model",
    "demo": "the main job on the embedded default (what `make demo` runs)",
}
USER_ERRORS = (ValueError, KeyError, FileNotFoundError, NotADirectoryError, IsADirectoryError)


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
        sys.exit(f"ftjax: unknown subcommand {name!r}; choose from: {', '.join(COMMANDS)}")
    module = importlib.import_module(f"ftjax.commands.{name}")
    from absl import app

    def run(args: list[str]) -> None:
        try:
            module.main(args)
        except USER_ERRORS as e:
            msg = e.args[0] if isinstance(e, KeyError) and e.args else e
            sys.exit(f"ftjax {name}: error: {msg}")

    app.run(run, argv=[f"ftjax {name}", *argv[2:]])
