"""ftjax.models.gguf_tokenizer: torch-free GGUF tokenizers, checked id-for-id against transformers' GGUF loader."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import random
import subprocess
import sys
from pathlib import Path

import gguf
import pytest
import transformers
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from ftjax.models.gguf import gguf_tokenizer
from ftjax.models.gguf_tokenizer import SUPPORTED_MODELS, read_gguf_vocab, tokenizer_from_gguf, tokenizer_from_vocab

_HAS_TORCH = importlib.util.find_spec("torch") is not None
# The reference: transformers' own GGUF tokenizer, which needs torch. Before transformers 5 its conversion
# was a different, older one (wrong EOS ids for byte-level files, user-defined tokens not matched whole, ...).
needs_reference = pytest.mark.skipif(
    not _HAS_TORCH or int(transformers.__version__.split(".")[0]) < 5,
    reason="transformers' GGUF tokenizer (the reference) needs torch and transformers >= 5",
)
_REAL = Path(__file__).resolve().parents[1] / "models" / "gemma-3-270m-q4_k_m.gguf"

_CORPUS = [
    "The quick brown fox jumps over the lazy dog. The dog sleeps; the fox runs away.",
    "def main():\n    for i in range(10):\n        print(i, 'hello world')\n    return 42\n",
    "Hello there! How are you doing today? I'm fine, thanks -- and you?",
    "In 1999, 2024 and 31415 numbers were written as digits: 0 1 2 3 4 5 6 7 8 9.",
    "class Fox:\n\tdef run(self):\n\t\treturn 'away'\n",
    "they're we've I'll she'd it's THE QUICK BROWN FOX",
]
TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Hello world",
    " Hello world",
    "  two leading spaces and    four inside   ",
    "def main():\n    return 42\n\n\nclass A:\n\tpass\n",
    "numbers 1234567 and 3.14159, 2024-01-01",
    "unicode: café naïve Москва 東京 日本語 🙂👍🏽 ∑∫",
    "<start_of_turn>user\nhi there<end_of_turn>\n<start_of_turn>model\n",
    "a <tool> call and <|im_start|>, <s> and </s> in text",
    "they're we've I'll",
    "\n",
    "x",
    "",
]


def _write(path: Path, arch: str, tokens: list[str], types: list[int], *, model: str, scores=None, merges=None,
           pre=None, bos=None, eos=None, unk=None, pad=None, add_bos=None, add_eos=None, template=None) -> Path:
    w = gguf.GGUFWriter(path, arch)
    w.add_tokenizer_model(model)
    if pre is not None:
        w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    if scores is not None:
        w.add_token_scores(scores)
    w.add_token_types(types)
    if merges is not None:
        w.add_token_merges(merges)
    for value, add in ((bos, w.add_bos_token_id), (eos, w.add_eos_token_id), (unk, w.add_unk_token_id),
                       (pad, w.add_pad_token_id), (add_bos, w.add_add_bos_token), (add_eos, w.add_add_eos_token),
                       (template, w.add_chat_template)):
        if value is not None:
            add(value)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def _trained_bpe(pre_tokenizer, vocab_size: int) -> tuple[list[str], list[str]]:
    """(tokens in id order, merges best first) of a small BPE trained on _CORPUS."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizer
    alphabet = pre_tokenizers.ByteLevel.alphabet() if isinstance(pre_tokenizer, pre_tokenizers.ByteLevel) else []
    tok.train_from_iterator(_CORPUS, trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=alphabet,
                                                         show_progress=False))
    model = json.loads(tok.to_str())["model"]
    tokens = [t for t, _ in sorted(model["vocab"].items(), key=lambda kv: kv[1])]
    return tokens, [" ".join(m) if isinstance(m, list) else m for m in model["merges"]]


def _sentencepiece_file(tmp_path: Path, gemma: bool) -> Path:
    """A SentencePiece-style vocabulary: control/unknown/user-defined tokens, 256 byte tokens, then pieces."""
    pieces, _ = _trained_bpe(pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first"), 300)
    if gemma:
        head = [("<pad>", 3), ("<eos>", 3), ("<bos>", 3), ("<unk>", 2), ("<mask>", 3), ("[multimodal]", 4),
                ("\n", 4), ("\n\n", 4), ("  ", 4), ("   ", 4), ("    ", 4)]
    else:
        head = [("<unk>", 2), ("<s>", 3), ("</s>", 3)]
    head += [("<start_of_turn>", 3), ("<end_of_turn>", 3), ("<tool>", 4)]
    head += [(f"<0x{b:02X}>", 6) for b in range(256)]
    tokens = [t for t, _ in head] + [p for p in pieces if p not in {t for t, _ in head}]
    types = [k for _, k in head] + [1] * (len(tokens) - len(head))
    if gemma:  # Gemma's scores do not follow the merge order; the builder must not trust them
        scores = [float(random.Random(0).randint(-500, 0)) for _ in tokens]
        ids = dict(bos=2, eos=1, unk=3, pad=0)
    else:  # pieces grouped in threes of one score, so that ties are broken the way transformers breaks them
        scores = [0.0] * len(head) + [-float(i // 3) for i in range(len(tokens) - len(head))]
        ids = dict(bos=1, eos=2, unk=0)
    template = "{% for m in messages %}<start_of_turn>{{ m['role'] }}\n{{ m['content'] }}<end_of_turn>\n{% endfor %}"
    return _write(tmp_path / ("gemma.gguf" if gemma else "llama.gguf"), "gemma3" if gemma else "llama", tokens,
                  types, model="llama", scores=scores, template=template, add_bos=True if gemma else None, **ids)


def _byte_level_file(tmp_path: Path, name: str, arch: str, pre: str) -> Path:
    """A byte-level BPE vocabulary with merges, and Qwen/Llama 3 style special tokens at the end."""
    tokens, merges = _trained_bpe(pre_tokenizers.ByteLevel(add_prefix_space=False), 400)
    specials = [("<|endoftext|>", 3), ("<|im_start|>", 3), ("<|im_end|>", 3), ("<tool>", 4)]
    tokens += [t for t, _ in specials]
    types = [1] * (len(tokens) - len(specials)) + [k for _, k in specials]
    end = tokens.index("<|endoftext|>")
    llama3 = arch == "llama"
    return _write(tmp_path / f"{name}.gguf", arch, tokens, types, model="gpt2", merges=merges, pre=pre, bos=end,
                  eos=tokens.index("<|im_end|>"), pad=end, add_bos=llama3, template="{{ messages[0]['content'] }}")


def _reference(path: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)


def _assert_same(mine, ref, texts=TEXTS):
    for text in texts:
        for special in (True, False):
            got = mine(text, add_special_tokens=special).input_ids
            assert got == ref(text, add_special_tokens=special).input_ids, (text, special)
            for skip in (True, False):
                assert mine.decode(got, skip_special_tokens=skip) == ref.decode(got, skip_special_tokens=skip), text
    assert mine(TEXTS).input_ids == ref(TEXTS).input_ids
    for name in ("bos_token_id", "eos_token_id", "pad_token_id", "unk_token_id", "add_bos_token", "add_eos_token"):
        assert getattr(mine, name) == getattr(ref, name), name
    assert mine.get_vocab() == ref.get_vocab()
    assert mine.chat_template == ref.chat_template


def _assert_round_trips(tok, texts=TEXTS):
    """decode(encode(x)) == x, also with the BOS added and skipped when the text names no special token.

    (Not for text starting with a space in a Llama-style SentencePiece vocabulary: there, as in transformers,
    the dummy prefix is not added before a space, but one leading space is still stripped when decoding.)
    """
    specials = [t for t in tok.get_added_vocab() if tok.convert_tokens_to_ids(t) in tok.all_special_ids
                or t.startswith("<") and t.endswith(">")]
    for text in texts:
        assert tok.decode(tok(text, add_special_tokens=False).input_ids) == text, text
        if not any(s in text for s in specials):
            assert tok.decode(tok(text).input_ids, skip_special_tokens=True) == text, text


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gguf_tok")
    return {
        "llama": _sentencepiece_file(tmp, gemma=False),
        "gemma": _sentencepiece_file(tmp, gemma=True),
        "qwen2": _byte_level_file(tmp, "qwen2", "qwen2", "qwen2"),
        "llama3": _byte_level_file(tmp, "llama3", "llama", "llama-bpe"),
        "gpt2_default": _byte_level_file(tmp, "gpt2_default", "gpt2", "default"),
    }


@needs_reference
@pytest.mark.parametrize("case", ["llama", "gemma", "qwen2", "llama3", "gpt2_default"])
def test_matches_transformers_gguf_tokenizer(files, case):
    mine, ref = tokenizer_from_gguf(files[case]), _reference(files[case])
    got, want = (json.loads(t.backend_tokenizer.to_str()) for t in (mine, ref))
    if case == "llama":  # transformers' Llama BPE has no unk token: with byte fallback only a missing byte needs it
        assert (got["model"].pop("unk_token"), want["model"].pop("unk_token")) == ("<unk>", None)
    assert got == want
    _assert_same(mine, ref)


@pytest.mark.parametrize("case", ["llama", "gemma", "qwen2", "llama3", "gpt2_default"])
def test_round_trip_and_special_tokens(files, case):
    tok = gguf_tokenizer(files[case])
    _assert_round_trips(tok, [t for t in TEXTS if case != "llama" or not t.startswith(" ")])
    ids = tok("<start_of_turn>user\nhi<end_of_turn> <|im_start|> <tool>", add_special_tokens=False).input_ids
    vocab = tok.get_vocab()
    for marked in ("<start_of_turn>", "<end_of_turn>", "<|im_start|>", "<tool>"):  # matched whole, never split
        assert marked not in vocab or vocab[marked] in ids, marked
    starts_with_bos = case in ("llama", "gemma", "llama3")
    assert (tok("hi").input_ids[0] == tok.bos_token_id) == starts_with_bos
    assert tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False).startswith(
        "hi" if case in ("qwen2", "llama3", "gpt2_default") else "<start_of_turn>user\nhi")


def test_gemma_spaces_and_scores(files):
    """Runs of spaces use Gemma's space pieces (stored as real spaces in the file), and merges follow file order."""
    tok = gguf_tokenizer(files["gemma"])
    v = read_gguf_vocab(files["gemma"])
    ids = tok("a    b", add_special_tokens=False).input_ids
    assert v.tokens.index("    ") in ids and tok.decode(ids) == "a    b"
    assert tok("", add_special_tokens=True).input_ids == [2]


def test_llama_without_space_prefix(files):
    """A file saying add_space_prefix = false gets no dummy "▁" (llama.cpp honours the flag; transformers ignores it)."""
    v = read_gguf_vocab(files["llama"])
    with_prefix = tokenizer_from_vocab(v)
    without = tokenizer_from_vocab(dataclasses.replace(v, add_space_prefix=False))
    assert with_prefix.tokenize("Hello")[0].startswith("▁") and not without.tokenize("Hello")[0].startswith("▁")
    _assert_round_trips(without)  # now also for text starting with a space


def test_saved_and_reloaded_tokenizer_is_the_same(files, tmp_path):
    """ftjax.models.tokenizer caches the converted tokenizer with save_pretrained; the reload must encode the same."""
    from transformers import AutoTokenizer

    for case in ("gemma", "llama3"):
        tok = gguf_tokenizer(files[case])
        tok.save_pretrained(tmp_path / case)
        again = AutoTokenizer.from_pretrained(tmp_path / case)
        for text in TEXTS:
            assert again(text).input_ids == tok(text).input_ids, (case, text)
        assert again.chat_template == tok.chat_template and again.bos_token_id == tok.bos_token_id


def test_unsupported_tokenizer_model(tmp_path):
    path = _write(tmp_path / "t5.gguf", "t5", ["<pad>", "</s>", "▁a"], [3, 3, 1], model="t5", scores=[0.0] * 3)
    with pytest.raises(ValueError, match=r"'t5'.*supported: gpt2, llama"):
        gguf_tokenizer(path)
    assert SUPPORTED_MODELS == ("gpt2", "llama")


def test_no_torch_import(files):
    """The conversion must work where torch is not installed: hide it and convert."""
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from ftjax.models.gguf import gguf_tokenizer\n"
        f"tok = gguf_tokenizer({str(files['gemma'])!r})\n"
        "print(tok('hello world').input_ids)\n"
        f"tok = gguf_tokenizer({str(files['qwen2'])!r})\n"
        "print(tok('hello world').input_ids)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("[") == 2


@pytest.mark.slow
@needs_reference
@pytest.mark.skipif(not _REAL.is_file(), reason=f"needs {_REAL}")
def test_gemma3_270m_matches_transformers():
    mine, ref = gguf_tokenizer(_REAL), _reference(_REAL)
    assert json.loads(mine.backend_tokenizer.to_str()) == json.loads(ref.backend_tokenizer.to_str())
    texts = TEXTS + _CORPUS + [
        "<bos><start_of_turn>user\nWrite a haiku.<end_of_turn>\n<start_of_turn>model\n",
        "<table><tr><td>1</td></tr></table> [multimodal] <start_of_image>",
        "\t\tindented with tabs\n\n\n\nfour newlines" + " " * 40 + "forty spaces",
        "日本語のテキストと中文文本，还有한국어.",
        "Ünïcödé ẞ ﬁ ½ ² ℃ \u200b zero-width \u00a0 nbsp \r\n crlf",
        "🏳️‍🌈 👨‍👩‍👧‍👦 🇫🇷",
        "".join(chr(c) for c in range(0x20, 0x7F)),
    ]
    _assert_same(mine, ref, texts)
    _assert_round_trips(mine, [t for t in texts if "<" not in t and "[multimodal]" not in t])
    assert (mine.bos_token_id, mine.eos_token_id, mine.pad_token_id, mine.unk_token_id) == (2, 1, 0, 3)
    ids = mine("The capital of France is Paris, and the capital of Germany is").input_ids
    assert ids == [2, 818, 5279, 529, 7001, 563, 9079, 236764, 532, 506, 5279, 529, 9405, 563]
