"""ftjax params --preset=gemma3-270m | --model=PATH [--methods=lora,ia3] [--peft.rank=16 ...] [--json]

Prints trainable vs total parameters and adapter size on disk for each fine-tuning method, computed from the
model's shapes alone (no weights are read). `--peft.*` sets the shared method settings (see ftjax/peft/config.py).
"""

from __future__ import annotations

import json

from absl import flags
from ml_collections import config_flags

from ftjax.peft.config import METHODS, default_config

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "model folder or hub id (only its config.json is read)")
flags.DEFINE_string("preset", None, "a named model shape instead of --model: gemma3-270m, llama3.2-1b, llama3.1-8b")
flags.DEFINE_list("methods", list(METHODS), "methods to report")
flags.DEFINE_enum("dtype", "bfloat16", ["float32", "bfloat16"], "base weight dtype (sets full fine-tuning's size)")
flags.DEFINE_bool("json", False, "print JSON rows instead of a markdown table")
config_flags.DEFINE_config_dict("peft", default_config(), "shared settings of the methods")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments: {' '.join(argv[1:])}")
    import jax.numpy as jnp

    from ftjax.models.config import from_hf
    from ftjax.models.loading import hf_config, resolve
    from ftjax.models.presets import preset_config
    from ftjax.peft.report import markdown, method_table

    if bool(FLAGS.model) == bool(FLAGS.preset):
        raise ValueError("give --model=PATH or --preset=NAME (one of them)")
    unknown = [m for m in FLAGS.methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method {unknown[0]!r}; choose from {', '.join(METHODS)}")
    if FLAGS.preset:
        cfg, label = preset_config(FLAGS.preset), FLAGS.preset
    else:
        path = resolve(FLAGS.model)
        if path.suffix == ".gguf":
            raise ValueError("params reads a config.json; for a .gguf file use its folder or a --preset")
        cfg, label = from_hf(hf_config(path)), FLAGS.model
    overrides = {k: v for k, v in FLAGS.peft.items() if k != "method"}
    rows = method_table(cfg, FLAGS.methods, overrides, getattr(jnp, FLAGS.dtype))
    if FLAGS.json:
        for row in rows:
            print(json.dumps(row | {"model": label}))
    else:
        print(f"{label}: {rows[0]['base_params']:,} base parameters ({FLAGS.dtype})\n")
        print(markdown(rows))
