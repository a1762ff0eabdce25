"""Beam search equals transformers' beam search token for token (width, length penalty, no-repeat n-grams, EOS)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ftjax.models as M
from conftest import make_hf_model
from ftjax.models.beam import Beam, beam_search


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    hf = make_hf_model("llama")
    with torch.no_grad():  # make EOS (id 2) a likely token, so that beams finish before max_new_tokens
        hf.lm_head.weight[2] = hf.lm_head.weight[2] * 4 + 0.3
    path = tmp_path_factory.mktemp("beam")
    hf.save_pretrained(path)
    return hf, M.from_pretrained(path)


@pytest.mark.parametrize("num_beams, length_penalty, ngram", [(3, 1.0, 0), (4, 0.5, 2), (2, 2.0, 3), (1, 1.0, 0)])
def test_beam_search_equals_transformers(models, num_beams, length_penalty, ngram):
    hf, ours = models
    rng = np.random.RandomState(num_beams)
    prompts = rng.randint(3, 131, (3, 6)).tolist()
    beam = Beam(num_beams=num_beams, max_new_tokens=10, length_penalty=length_penalty, no_repeat_ngram_size=ngram,
                stop_token_ids=(2,))
    got = beam_search(ours, prompts, beam)
    with torch.no_grad():
        out = hf.generate(torch.tensor(prompts), attention_mask=torch.ones(3, 6, dtype=torch.long),
                          num_beams=num_beams, max_new_tokens=10, length_penalty=length_penalty,
                          no_repeat_ngram_size=ngram, do_sample=False, eos_token_id=2, pad_token_id=0,
                          early_stopping=False)
    want = [[t for t in row[6:].tolist()] for row in out]
    want = [row[:row.index(2)] if 2 in row else row for row in want]
    assert got == want
    assert any(len(r) < 10 for r in got) or num_beams == 1  # some beam stopped on EOS


def test_beam_search_on_left_padded_prompts(models):
    hf, ours = models
    prompts = [[5, 9, 31, 7, 22, 40, 41, 42], [17, 3, 8], [60, 61, 62, 63, 64]]
    beam = Beam(num_beams=3, max_new_tokens=8, no_repeat_ngram_size=2, stop_token_ids=(2,))
    got = beam_search(ours, prompts, beam)
    t = 8
    ids = torch.tensor([[0] * (t - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (t - len(p)) + [1] * len(p) for p in prompts])
    with torch.no_grad():
        out = hf.generate(ids, attention_mask=mask, num_beams=3, max_new_tokens=8, no_repeat_ngram_size=2,
                          do_sample=False, eos_token_id=2, pad_token_id=0)
    want = [row[t:].tolist() for row in out]
    assert got == [row[:row.index(2)] if 2 in row else row for row in want]


def test_eval_decodes_with_beam_search_when_asked(tiny_model_dir):
    from conftest import sft_config
    from ftjax.eval.runner import evaluate_split
    from ftjax.models.tokenizer import encode_prompt, load_tokenizer, stop_token_ids

    model, tok = M.from_pretrained(tiny_model_dir), load_tokenizer(tiny_model_dir)
    rows = [{"prompt": "w3 w10 w11", "completion": " w5"}, {"prompt": "w3 w40", "completion": " w6"}]
    config = sft_config(**{"eval.num_beams": 3, "eval.no_repeat_ngram_size": 2, "eval.max_new_tokens": 6})
    report, preds = evaluate_split(model, tok, rows, config, metrics=["exact_match"], n_resamples=0, progress=False)
    beam = Beam(num_beams=3, max_new_tokens=6, no_repeat_ngram_size=2, stop_token_ids=stop_token_ids(tok, (2,)))
    want = tok.batch_decode(beam_search(model, [encode_prompt(tok, r["prompt"]) for r in rows], beam, 0),
                            skip_special_tokens=True)
    assert [p["prediction"] for p in preds] == want
    assert report["settings"]["decoding"].startswith("beam search (width 3")
