"""ftjax export (--workdir=RUN [--checkpoint=best|last|STEP] [--task=NAME] | --model=BASE --adapter=DIR) --format=FMT
             --out=DIR

`peft`: adapter_config.json + adapter_model.safetensors that Hugging Face PEFT loads onto the transformers
model (`PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(BASE), DIR)`). `gguf`: the merged model
as DIR/model-TYPE.gguf for llama.cpp and Ollama (`--gguf_type` f32, f16, bf16 or q8_0; models/gguf_export.py);
`gguf_lora`: the LoRA alone as DIR/adapter-TYPE.gguf for llama.cpp's `--lora` (f32, f16 or bf16). `merged`: a
transformers model folder with the LoRA/DoRA/(IA)3 adapter folded into the weights. `adapter`: an ftjax
adapter folder (adapter.json + safetensors). A classification-head run exports as a sequence classifier: the
merged folder is a transformers `*ForSequenceClassification` model, the PEFT adapter has task SEQ_CLS with the
head as `modules_to_save` ("score"). A multi-task run exports one task at a time (`--task`). `--workdir` takes
the base model and adapter of a training run from one of its checkpoints; `--adapter` is an ftjax adapter
folder (or a PEFT one, e.g. to merge it). The output appears only when complete (temp dir, rename). An existing
--out is refused unless --overwrite; an --out that is, holds or lies inside the run, the adapter or the base
model is always refused. `merged` includes the base model's tokenizer, so `ftjax generate --model=OUT` and
transformers can use the folder as it is; it merges into the base loaded in `--dtype` (float32 by default), also
for a run trained on a bfloat16 or quantised base, so it equals base + adapter in full precision. Every export
also writes README.md, a Hub model card (ftjax/card.py) from the run's config, summary, eval results and audit.
"""

from __future__ import annotations

from pathlib import Path

from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "training run folder (instead of --model and --adapter)")
flags.DEFINE_string("checkpoint", "best", "with --workdir: best, last or a step number")
flags.DEFINE_string("task", None, "with --workdir of a multi-task run: export this task's head (none for a "
                    "generation task) with the shared adapter")
flags.DEFINE_string("model", None, "base model folder, hub id or .gguf file")
flags.DEFINE_string("adapter", None, "adapter folder (ftjax adapter.json, or PEFT adapter_config.json)")
flags.DEFINE_enum("format", "peft", ["peft", "merged", "adapter", "gguf", "gguf_lora"], "what to write")
flags.DEFINE_enum("gguf_type", "f16", ["f32", "f16", "bf16", "q8_0"], "with --format=gguf: the matrices' type")
flags.DEFINE_string("out", None, "output folder (must not exist, unless --overwrite)", required=True)
flags.DEFINE_bool("overwrite", False, "replace --out if it exists (only once the new export is complete)")
flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "dtype of the base weights while merging (also for "
                  "--workdir: a bfloat16 or quantised run merges into the base loaded in this dtype)")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments: {' '.join(argv[1:])}")
    import jax.numpy as jnp

    from ftjax.card import write_card
    from ftjax.io import check_new_dir, check_outside
    from ftjax.models import from_pretrained, save_pretrained
    from ftjax.models.tokenizer import load_tokenizer
    from ftjax.peft.files import adapter_format, load_adapter, save_adapter
    from ftjax.peft.hf_export import export_peft
    from ftjax.peft.merge import merged_model
    from ftjax.peft.state import active_adapter
    from ftjax.tasks import pick_task
    from ftjax.train.restore import load_run
    from ftjax.workdir import read_config

    if bool(FLAGS.workdir) == bool(FLAGS.model or FLAGS.adapter):
        raise ValueError("give --workdir, or --model and --adapter")
    if FLAGS.task and not FLAGS.workdir:
        raise ValueError("--task picks a task of a multi-task run: give --workdir")
    if FLAGS.adapter:
        adapter_format(FLAGS.adapter)  # fail before loading the model
    # refuse before any work: never the sources, never an existing folder unless asked
    check_outside(FLAGS.out, *[p for p in (FLAGS.workdir, FLAGS.adapter, FLAGS.model) if p and Path(p).exists()])
    check_new_dir(FLAGS.out, FLAGS.overwrite)
    if FLAGS.workdir:
        task = pick_task(read_config(FLAGS.workdir), FLAGS.task, FLAGS.workdir)  # before loading the model
        # merging folds the adapter into the base as it was before any bfloat16 rounding or quantisation
        model, _, config, step = load_run(FLAGS.workdir, FLAGS.checkpoint,
                                          base_dtype=FLAGS.dtype if FLAGS.format in ("merged", "gguf") else None)
        base, name = config.model.path, active_adapter(model)
        if task:
            keep_task_head(model, config, task)
        print(f"checkpoint step {step} of {FLAGS.workdir}")
    else:
        if not (FLAGS.model and FLAGS.adapter):
            raise ValueError("--model and --adapter go together")
        base = FLAGS.model
        model = from_pretrained(base, dtype=getattr(jnp, FLAGS.dtype))
        name = load_adapter(model, FLAGS.adapter)
    if name is None and FLAGS.format != "merged":
        raise ValueError(f"{FLAGS.workdir} is a full fine-tuning run: use --format=merged to write its model")
    if FLAGS.format == "peft":
        out = export_peft(model, FLAGS.out, name, base_model_name_or_path=base, overwrite=FLAGS.overwrite)
    elif FLAGS.format == "adapter":
        out = save_adapter(model, FLAGS.out, name, overwrite=FLAGS.overwrite)
    elif FLAGS.format == "gguf":  # OUT/model-TYPE.gguf for llama.cpp and Ollama (a Modelfile's FROM)
        from ftjax.models.gguf_export import write_gguf

        plain, tokenizer = merged_model(model, name) if name else model, load_tokenizer(base)
        out = gguf_in_folder(f"model-{FLAGS.gguf_type}.gguf",
                             lambda p: write_gguf(plain, p, tokenizer, FLAGS.gguf_type))
    elif FLAGS.format == "gguf_lora":  # OUT/adapter-TYPE.gguf, for llama.cpp's --lora on the base model's GGUF
        from ftjax.peft.gguf_lora import write_gguf_lora

        out = gguf_in_folder(f"adapter-{FLAGS.gguf_type}.gguf",
                             lambda p: write_gguf_lora(model, p, name, FLAGS.gguf_type))
    else:
        out = save_pretrained(merged_model(model, name) if name else model, FLAGS.out,
                              tokenizer=load_tokenizer(base), overwrite=FLAGS.overwrite)
    folder = Path(out).parent if FLAGS.format.startswith("gguf") else Path(out)
    write_card(folder, FLAGS.format, base, FLAGS.workdir, FLAGS.adapter)
    print(f"wrote {out} (and its model card, {folder / 'README.md'})")


def keep_task_head(model, config, task: str) -> None:
    """Drop every task head but `task`'s (a generation task keeps none): an export holds one task."""
    from flax import nnx

    from ftjax.models.heads import head_name
    from ftjax.tasks import task_config

    keep = head_name(task_config(config, task))
    model.heads = nnx.Dict({keep: model.heads[keep]}) if keep != "lm" else None


def gguf_in_folder(filename: str, write) -> Path:
    """--out/filename, written by `write(path)` inside a folder that appears only when complete."""
    from ftjax.io import atomic_dir

    with atomic_dir(FLAGS.out, FLAGS.overwrite) as tmp:
        write(tmp / filename)
    return Path(FLAGS.out) / filename
