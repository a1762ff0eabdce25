"""Each format's token ids and loss mask, checked token by token with the tiny word-level tokenizer."""

from __future__ import annotations

import pytest
from tokenizers import processors

from conftest import save_tiny_tokenizer
from ftjax.data.encode import encode, encode_all, truncate


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return save_tiny_tokenizer(tmp_path_factory.mktemp("tok"))


@pytest.fixture(scope="module")
def bos_tok(tmp_path_factory):
    """The tiny tokenizer, but adding <bos> in front like Llama's and Gemma's do."""
    t = save_tiny_tokenizer(tmp_path_factory.mktemp("tok_bos"))
    t._tokenizer.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 1)])
    return t


def view(tok, e):
    """Tokens with the targets starred: ['w1', '*w2', ...]."""
    assert len(e["input_ids"]) == len(e["loss_mask"])
    return [("*" if m else "") + t for t, m in zip(tok.convert_ids_to_tokens(e["input_ids"]), e["loss_mask"])]


def test_prompt_completion_masks_the_completion_and_eos(tok, bos_tok):
    row = {"prompt": "w1 w2", "completion": "w3 w4"}
    assert view(tok, encode(row, tok, "auto", 32)) == ["w1", "w2", "*w3", "*w4", "*<eos>"]
    assert view(bos_tok, encode(row, bos_tok, "prompt_completion", 32)) == ["<bos>", "w1", "w2", "*w3", "*w4",
                                                                            "*<eos>"]


def test_chat_masks_assistant_turns_with_their_end_of_turn(tok):
    row = {"messages": [{"role": "system", "content": "w1"}, {"role": "user", "content": "w2 w3"},
                        {"role": "assistant", "content": "w4 w5"}, {"role": "user", "content": "w6"},
                        {"role": "assistant", "content": "w7"}, {"role": "user", "content": "w8"}]}
    # <eot> is not a stop token generate() knows, so EOS follows it: the fine-tuned model stops either way
    assert view(tok, encode(row, tok, "chat", 64)) == [
        "<system>", "w1", "<eot>", "<user>", "w2", "w3", "<eot>", "<assistant>", "*w4", "*w5", "*<eot>", "*<eos>",
        "<user>", "w6", "<eot>", "<assistant>", "*w7", "*<eot>", "*<eos>", "<user>", "w8", "<eot>"]


def test_chat_prompt_matches_what_generation_feeds(tok):
    from ftjax.models.tokenizer import encode_prompt

    msgs = [{"role": "user", "content": "w2 w3"}, {"role": "assistant", "content": "w4"}]
    e = encode({"messages": msgs}, tok, "auto", 64)
    first = e["loss_mask"].index(1)
    assert e["input_ids"][:first] == encode_prompt(tok, messages=msgs[:1])


def test_classification_label_and_label_set(tok):
    labels = ["w50", "w51", "w52"]
    assert view(tok, encode({"text": "w1 w2", "label": "w51"}, tok, "classification", 16, labels)) == [
        "w1", "w2", "*w51", "*<eos>"]
    assert view(tok, encode({"text": "w1", "label": 2}, tok, "auto", 16, labels)) == ["w1", "*w52", "*<eos>"]
    with pytest.raises(ValueError, match=r"f\.csv:7: label 'w9' is not in the label set \(3 labels"):
        encode({"text": "w1", "label": "w9", "_source": "f.csv", "_line": 7}, tok, "auto", 16, labels)


def test_data_to_text_linearises_the_record(tok):
    row = {"data": {"w1": "w2", "w3": "w4 w5"}, "text": "w6 w7"}
    # `w1[w2], w3[w4 w5]` splits on spaces only, so the word-level tokenizer sees unknown words: check the target
    e = encode(row, tok, "data_to_text", 32)
    assert view(tok, e)[-3:] == ["*w6", "*w7", "*<eos>"] and sum(e["loss_mask"]) == 3
    assert view(tok, encode({"data": "w1 w2", "text": "w3"}, tok, "auto", 32)) == ["w1", "w2", "*w3", "*<eos>"]


def test_truncation_keeps_prompt_end_and_target_start(tok, bos_tok):
    long_prompt = {"prompt": " ".join(f"w{i}" for i in range(10, 30)), "completion": "w1 w2"}
    assert view(tok, encode(long_prompt, tok, "auto", 6)) == ["w27", "w28", "w29", "*w1", "*w2", "*<eos>"]
    assert view(bos_tok, encode(long_prompt, bos_tok, "auto", 6)) == ["<bos>", "w28", "w29", "*w1", "*w2",
                                                                       "*<eos>"]
    long_both = {"prompt": "w1 w2 w3 w4 w5 w6", "completion": "w7 w8 w9 w10 w11 w12"}
    assert view(tok, encode(long_both, tok, "auto", 6)) == ["w4", "w5", "w6", "*w7", "*w8", "*w9"]
    assert truncate([1, 2, 3], [0, 1, 1], 8) == ([1, 2, 3], [0, 1, 1])


@pytest.mark.parametrize("row, fmt, match", [
    ({"prompt": "w1"}, "auto", r"d\.jsonl:3: missing field 'completion' \(format prompt_completion\)"),
    ({"text": "w1"}, "classification", r"d\.jsonl:3: missing field 'label'"),
    ({"messages": [{"role": "user", "content": "w1"}]}, "auto", r"d\.jsonl:3: no assistant turn"),
    ({"messages": [{"role": "bot", "content": "w1"}]}, "auto", r"d\.jsonl:3: messages\[0\] must be"),
    ({"prompt": 3, "completion": "w1"}, "auto", r"d\.jsonl:3: field 'prompt' must be a string"),
    ({"question": "w1"}, "auto", r"d\.jsonl:3: cannot tell the format"),
])
def test_malformed_rows_name_file_line_and_field(tok, row, fmt, match):
    with pytest.raises(ValueError, match=match):
        encode(dict(row, _source="d.jsonl", _line=3), tok, fmt, 16)


def test_encode_all(tok):
    rows = [{"prompt": "w1", "completion": "w2"}, {"text": "w3", "label": "w4"}]
    assert [sum(e["loss_mask"]) for e in encode_all(rows, tok, "auto", 8)] == [2, 2]
