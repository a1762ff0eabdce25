"""ftjax generate --model=PATH --prompt=TEXT | --prompts=IN.jsonl --output=OUT.jsonl [sampling flags]

A JSONL row holds `prompt` (text) or `messages` (chat turns); the output repeats each row with `completion`.
"""

from __future__ import annotations

import sys

from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "model folder, hub id or .gguf file", required=True)
flags.DEFINE_multi_string("prompt", [], "a prompt (repeatable)")
flags.DEFINE_string("prompts", None, "JSONL file of prompts: rows with `prompt` or `messages`")
flags.DEFINE_string("output", None, "JSONL file to write (default: print completions)")
flags.DEFINE_bool("chat", False, "wrap plain prompts as a user turn with the tokenizer's chat template")
flags.DEFINE_integer("max_new_tokens", 64, "tokens to generate per prompt")
flags.DEFINE_float("temperature", 0.0, "0 = greedy")
flags.DEFINE_integer("top_k", 0, "sample from the k most likely tokens (0 = off)")
flags.DEFINE_float("top_p", 1.0, "nucleus sampling threshold (1 = off)")
flags.DEFINE_integer("seed", 0, "sampling seed")
flags.DEFINE_integer("num_beams", 1, "beam search with this many beams (1 = greedy or sampling)")
flags.DEFINE_float("length_penalty", 1.0, "beam search: score / generated length ** length_penalty")
flags.DEFINE_integer("no_repeat_ngram_size", 0, "beam search: never repeat an n-gram of this size (0 = off)")
flags.DEFINE_integer("batch_size", 8, "prompts per generation batch")
flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "parameter and compute dtype")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments: {' '.join(argv[1:])}")
    import dataclasses

    import jax.numpy as jnp
    from tqdm import tqdm

    from ftjax.io import check_writable, read_jsonl, write_jsonl
    from ftjax.models import from_pretrained
    from ftjax.models.beam import Beam, beam_search
    from ftjax.models.generate import Sampling, generate
    from ftjax.models.tokenizer import encode_prompt, load_tokenizer, padding_id, stop_token_ids

    if bool(FLAGS.prompt) == bool(FLAGS.prompts):
        raise ValueError("give --prompt (one or more) or --prompts=FILE.jsonl, not both")
    if FLAGS.batch_size < 1:
        raise ValueError(f"--batch_size={FLAGS.batch_size}: must be >= 1")
    sampling = Sampling(FLAGS.max_new_tokens, FLAGS.temperature, FLAGS.top_k, FLAGS.top_p, seed=FLAGS.seed)
    beam = Beam(FLAGS.num_beams, FLAGS.max_new_tokens, FLAGS.length_penalty, FLAGS.no_repeat_ngram_size)
    if beam.num_beams > 1 and FLAGS.temperature:
        raise ValueError("--num_beams searches deterministically; drop --temperature (sampling) or the beams")
    if FLAGS.output:
        check_writable(FLAGS.output)  # before the generation it would hold
    if FLAGS.prompts:
        rows = []
        for n, row in read_jsonl(FLAGS.prompts):
            if not isinstance(row.get("prompt"), str) and not isinstance(row.get("messages"), list):
                raise ValueError(f"{FLAGS.prompts}:{n}: row needs a `prompt` string or a `messages` list")
            rows.append(row)
    else:
        rows = [{"prompt": p} for p in FLAGS.prompt]
    tokenizer = load_tokenizer(FLAGS.model)
    model = from_pretrained(FLAGS.model, dtype=getattr(jnp, FLAGS.dtype))
    encoded = [encode_prompt(tokenizer, r.get("prompt"), r.get("messages"), FLAGS.chat) for r in rows]
    stops = stop_token_ids(tokenizer, model.config.eos_ids)
    sampling, beam = (dataclasses.replace(x, stop_token_ids=stops) for x in (sampling, beam))
    pad = padding_id(tokenizer)
    completions = []
    for i in tqdm(range(0, len(encoded), FLAGS.batch_size), desc="generate", unit="batch", file=sys.stderr,
                  disable=len(encoded) <= FLAGS.batch_size):
        chunk = encoded[i:i + FLAGS.batch_size]
        batch = beam_search(model, chunk, beam, pad) if beam.num_beams > 1 else generate(model, chunk, sampling, pad)
        completions += tokenizer.batch_decode(batch, skip_special_tokens=True)
    out = [dict(r, completion=c) for r, c in zip(rows, completions)]
    if FLAGS.output:
        write_jsonl(FLAGS.output, out)
        print(f"wrote {len(out)} completions to {FLAGS.output}")
    else:
        for r in out:
            print(r["completion"])
