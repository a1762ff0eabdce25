"""`ftjax generate` end to end on a tiny model folder with a tokenizer and chat template."""

from __future__ import annotations

import json

import pytest

import ftjax.models as M
from conftest import run_ftjax as ftjax
from ftjax.models.generate import Sampling, generate
from ftjax.models.tokenizer import encode_prompt, load_tokenizer, stop_token_ids


@pytest.fixture(scope="module")
def model_dir(tiny_model_dir):
    return tiny_model_dir


def test_chat_template_and_stop_tokens(model_dir):
    tok = load_tokenizer(model_dir)
    ids = encode_prompt(tok, "w1 w2", chat=True)
    assert tok.convert_ids_to_tokens(ids) == ["<user>", "w1", "w2", "<eot>", "<assistant>"]
    assert stop_token_ids(tok, (2,)) == (2,)


@pytest.mark.long
def test_generate_jsonl_matches_library(model_dir, tmp_path):
    prompts = tmp_path / "in.jsonl"
    rows = [{"prompt": "w1 w2 w3", "id": 1}, {"messages": [{"role": "user", "content": "w9"}], "id": 2}]
    prompts.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = tmp_path / "out.jsonl"
    ftjax("generate", f"--model={model_dir}", f"--prompts={prompts}", f"--output={out}", "--max_new_tokens=5")
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert [g["id"] for g in got] == [1, 2]
    tok, model = load_tokenizer(model_dir), M.from_pretrained(model_dir)
    enc = [encode_prompt(tok, "w1 w2 w3"), encode_prompt(tok, messages=rows[1]["messages"])]
    expected = generate(model, enc, Sampling(5, stop_token_ids=stop_token_ids(tok, model.config.eos_ids)))
    assert [g["completion"] for g in got] == tok.batch_decode(expected, skip_special_tokens=True)


@pytest.mark.long
def test_generate_prompt_flag_prints(model_dir):
    proc = ftjax("generate", f"--model={model_dir}", "--prompt=w4 w5", "--max_new_tokens=3")
    assert len(proc.stdout.strip().split()) <= 3


@pytest.mark.parametrize("args, message", [
    (["--prompts=/nonexistent.jsonl"], "no such file: /nonexistent.jsonl"),
    pytest.param(["--prompt=w1", "--top_p=0"], "0 < top_p <= 1", marks=pytest.mark.long),
    pytest.param([], "give --prompt", marks=pytest.mark.long),
])
def test_generate_bad_input_is_one_line(model_dir, args, message):
    proc = ftjax("generate", f"--model={model_dir}", *args, check=False)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("ftjax generate: error:") and message in last


def test_malformed_jsonl_row_names_line(model_dir, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "w1"}\n{"prompt": \n')
    out = tmp_path / "never.jsonl"
    proc = ftjax("generate", f"--model={model_dir}", f"--prompts={bad}", f"--output={out}", check=False)
    assert proc.returncode != 0 and f"{bad}:2: not valid JSON" in proc.stderr
    assert not out.exists()


def test_unknown_subcommand():
    proc = ftjax("frobnicate", check=False)
    assert proc.returncode != 0 and "unknown subcommand 'frobnicate'" in proc.stderr
