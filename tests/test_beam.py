"""Beam search equals transformers' beam search token for token (width, length penalty, no-repeat n-grams, EOS)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ftjax.models as M
from conftest import make_hf_model
from ftjax.models.beam import Beam, beam_candidates, beam_search


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


def test_beam_candidates_are_transformers_n_best(models):
    hf, ours = models
    prompts = np.random.RandomState(7).randint(3, 131, (2, 5)).tolist()
    beam = Beam(num_beams=3, max_new_tokens=8, length_penalty=0.8, stop_token_ids=(2,))
    got = beam_candidates(ours, prompts, beam)
    with torch.no_grad():
        out = hf.generate(torch.tensor(prompts), attention_mask=torch.ones(2, 5, dtype=torch.long), num_beams=3,
                          num_return_sequences=3, max_new_tokens=8, length_penalty=0.8, do_sample=False,
                          eos_token_id=2, pad_token_id=0, output_scores=True, return_dict_in_generate=True)
    want = [row[5:].tolist() for row in out.sequences]
    want = [row[:row.index(2)] if 2 in row else row for row in want]
    assert [toks for hyps in got for toks, _ in hyps] == want
    np.testing.assert_allclose([s for hyps in got for _, s in hyps], out.sequences_scores.numpy(), atol=1e-4)
    assert [hyps[0][0] for hyps in got] == beam_search(ours, prompts, beam)


def test_eval_reranks_the_n_best_by_slot_errors(tiny_model_dir, monkeypatch):
    from conftest import sft_config
    import ftjax.eval.runner as runner
    from ftjax.models.tokenizer import encode_prompt, load_tokenizer, stop_token_ids

    model, tok = M.from_pretrained(tiny_model_dir), load_tokenizer(tiny_model_dir)
    rows = [{"data": {"name": "w20", "food": "w30"}, "text": "w7 w8"}, {"data": {"name": "w21"}, "text": "w9"},
            {"data": {"name": "w20", "food": "w30"}, "text": "w7 w9"}]
    seen = []  # a stand-in checker that records each MR and takes the last hypothesis, so the choice is visible
    monkeypatch.setattr(runner, "fewest_slot_errors", lambda mr, options: seen.append(mr) or len(options) - 1)
    config = sft_config(**{"eval.num_beams": 3, "eval.max_new_tokens": 5, "eval.rerank": "slots",
                           "data.max_length": 24})
    report, preds = runner.evaluate_split(model, tok, rows, config, metrics=["bleu"], n_resamples=0, progress=False)
    assert seen == ["name[w20], food[w30]", "name[w21]"]  # one call per item, its prompt = its MR
    beam = Beam(num_beams=3, max_new_tokens=5, stop_token_ids=stop_token_ids(tok, (2,)))
    n_best = beam_candidates(model, [encode_prompt(tok, mr) for mr in seen], beam)
    assert [p["prediction"] for p in preds] == tok.batch_decode([hyps[-1][0] for hyps in n_best],
                                                                 skip_special_tokens=True)
    assert report["rerank"] == {"by": "slot errors", "outputs_not_the_best_beam": 2}
    assert report["settings"]["decoding"].endswith("reranked by slot errors")
    with pytest.raises(ValueError, match="reranks data-to-text outputs"):
        runner.evaluate_split(model, tok, [{"prompt": "w3", "completion": " w5"}], config, metrics=["bleu"],
                              progress=False)


@pytest.mark.parametrize("settings, message", [({"rerank": "bleu", "num_beams": 4}, "eval.rerank='bleu': choose from"),
                                               ({"rerank": "slots", "num_beams": 1}, "set eval.num_beams >= 2")])
def test_a_bad_rerank_setting_is_a_one_line_error(settings, message):
    from ftjax.eval import config as eval_config

    block = eval_config.default_config()
    block.update(settings)
    with pytest.raises(ValueError, match=message.replace("[", r"\[")):
        eval_config.check(block)
