"""One module per `ftjax` subcommand, each with absl flags and `main(argv)`."""

from __future__ import annotations

import logging
from typing import Any


def start_config_command(argv: list[str], config: Any) -> None:
    """Common start of the commands that take --config: no stray arguments, a config given, quiet library logs,
    then join the multi-host job (before anything touches a device)."""
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments: {' '.join(argv[1:])}")
    if config is None:
        raise ValueError("--config is required, e.g. --config=configs/sft.py")
    from absl import logging as absl_logging

    from ftjax import distributed

    absl_logging.set_verbosity(absl_logging.WARNING)  # orbax logs every file it writes at INFO
    logging.getLogger("ftjax").setLevel(logging.INFO)
    distributed.initialize_from_flags()
