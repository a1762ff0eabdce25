"""ftjax export --model=BASE --adapter=DIR --format=peft|merged --out=DIR

`peft`: adapter_config.json + adapter_model.safetensors that Hugging Face PEFT loads onto the transformers
model (`PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(BASE), DIR)`). `merged`: a
transformers model folder with the LoRA/DoRA/(IA)3 adapter folded into the weights. `--adapter` is an ftjax
adapter folder (or a PEFT one, e.g. to merge it). The output appears only when complete (temp dir, rename).
"""

from __future__ import annotations

from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "base model folder, hub id or .gguf file", required=True)
flags.DEFINE_string("adapter", None, "adapter folder (ftjax adapter.json, or PEFT adapter_config.json)",
                    required=True)
flags.DEFINE_enum("format", "peft", ["peft", "merged"], "what to write")
flags.DEFINE_string("out", None, "output folder (replaced if it exists)", required=True)
flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "dtype of the base weights while merging")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments: {' '.join(argv[1:])}")
    import jax.numpy as jnp

    from ftjax.models import from_pretrained, save_pretrained
    from ftjax.peft.adapters import adapter_format, load_adapter
    from ftjax.peft.merge import merged_model
    from ftjax.peft.hf_peft import export_peft

    adapter_format(FLAGS.adapter)  # fail before loading the model
    model = from_pretrained(FLAGS.model, dtype=getattr(jnp, FLAGS.dtype))
    name = load_adapter(model, FLAGS.adapter)
    if FLAGS.format == "peft":
        out = export_peft(model, FLAGS.out, name, base_model_name_or_path=FLAGS.model)
    else:
        out = save_pretrained(merged_model(model, name), FLAGS.out)
    print(f"wrote {out}")
