"""GGUF export: tiny random models with BPE tokenizers written by write_gguf and read back by ftjax's GGUF loader
(and, for Llama, by transformers' GGUF loader) give the source's logits: exactly in f32, within each format's
rounding in f16/bf16/q8_0; the tokenizer encodes like the source; what llama.cpp cannot state is refused."""

from __future__ import annotations

import numpy as np
import pytest
from flax import nnx

import ftjax.models as M
from conftest import forward_logits, run_ftjax
from ftjax.models.gguf import gguf_tokenizer, read_gguf
from ftjax.models.gguf_export import write_gguf
from test_gguf_tokenizer import TEXTS, _byte_level_file, _sentencepiece_file

torch = pytest.importorskip("torch")
import transformers  # noqa: E402

_SMALL = dict(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-6)
# case -> (transformers config class, kwargs, tokenizer kind)
CASES = {
    # head_dim 32 at theta 5e5 puts some frequencies in llama3's smoothed band
    "llama": ("LlamaConfig", dict(_SMALL, head_dim=32, rope_theta=5e5, tie_word_embeddings=False, rope_scaling=dict(
        rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
        original_max_position_embeddings=8192)), "byte"),
    "qwen3": ("Qwen3Config", dict(_SMALL, head_dim=16, tie_word_embeddings=True), "byte"),
    "gemma3": ("Gemma3TextConfig", dict(_SMALL, num_hidden_layers=3, head_dim=16, query_pre_attn_scalar=16,
                                        sliding_window=4, layer_types=["sliding_attention", "full_attention",
                                                                       "sliding_attention"],
                                        rope_theta=1e4, rope_local_base_freq=100.0), "gemma"),
    # llama.cpp's (and transformers' GGUF reader's) Gemma 3 defaults: every 6th layer global, local base 1e4,
    # query scale 1/sqrt(head_dim) with head_dim 256
    "gemma3_defaults": ("Gemma3TextConfig", dict(_SMALL, num_hidden_layers=7, head_dim=256,
                                                 query_pre_attn_scalar=256, sliding_window=4, rope_theta=1e6,
                                                 rope_local_base_freq=1e4), "gemma"),
}
TRANSFORMERS_READS = ("llama", "gemma3_defaults")  # transformers' GGUF reader cannot state the others
IDS = np.asarray([[5, 9, 31, 7, 22, 40, 41, 3, 19]], np.int32)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """case -> a transformers model folder (random weights, norms off their init) with its BPE tokenizer."""
    made = {}

    def get(case: str):
        if case not in made:
            cls, kwargs, kind = CASES[case]
            tmp = tmp_path_factory.mktemp(case)
            vocab = _byte_level_file(tmp, "v", "llama", "llama-bpe") if kind == "byte" else \
                _sentencepiece_file(tmp, gemma=True)
            tok = gguf_tokenizer(vocab)
            size = -(-len(tok) // 8) * 8  # an embedding padded past the vocabulary, as real models often are
            config = getattr(transformers, cls)(vocab_size=size, bos_token_id=tok.bos_token_id,
                                                eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                                                **kwargs)
            torch.manual_seed(0)
            model = transformers.AutoModelForCausalLM.from_config(config).eval()
            with torch.no_grad():
                for name, p in model.named_parameters():
                    if "norm" in name:
                        p.add_(torch.randn_like(p) * 0.1)
            folder = tmp / "model"
            model.save_pretrained(folder)
            tok.save_pretrained(folder)
            made[case] = (folder, tok, model)
        return made[case]

    return get


@pytest.mark.parametrize("case", [pytest.param(c, marks=pytest.mark.long) if c in ("llama", "qwen3", "gemma3") else c
                                  for c in CASES])
def test_f32_export_reads_back_exactly(source, case, tmp_path):
    folder, tok, hf = source(case)
    model = M.from_pretrained(folder)
    out = write_gguf(model, tmp_path / "m.gguf", tok, "f32")
    back = M.from_pretrained(out)
    np.testing.assert_allclose(forward_logits(back, IDS), forward_logits(model, IDS), atol=1e-5)
    again = gguf_tokenizer(out)
    for text in TEXTS:
        assert again(text)["input_ids"] == tok(text)["input_ids"], text
    assert again.chat_template == tok.chat_template
    if case in TRANSFORMERS_READS:  # transformers' own GGUF loader reads the same model
        theirs = transformers.AutoModelForCausalLM.from_pretrained(out.parent, gguf_file=out.name).eval()
        with torch.no_grad():
            want = hf(torch.tensor(IDS, dtype=torch.long)).logits.numpy()
            got = theirs(torch.tensor(IDS, dtype=torch.long)).logits.numpy()
        np.testing.assert_allclose(got, want, atol=1e-4)


@pytest.mark.parametrize("weights,bound", [("f16", 1e-3), ("bf16", 8e-3), ("q8_0", 1 / 127)])
def test_rounded_types_stay_within_their_precision(source, tmp_path, weights, bound):
    folder, tok, _ = source("llama")
    model = M.from_pretrained(folder)
    _, original = read_gguf(write_gguf(model, tmp_path / "f32.gguf", tok, "f32"))
    _, rounded = read_gguf(write_gguf(model, tmp_path / f"{weights}.gguf", tok, weights))
    for name, w in original.items():
        err = np.abs(rounded[name] - w).max()
        assert err <= bound * np.abs(w).max() + 1e-12, (name, err)
        if w.ndim == 1:
            np.testing.assert_array_equal(rounded[name], w)  # vectors stay float32
    ref = forward_logits(model, IDS)
    got = forward_logits(M.from_pretrained(tmp_path / f"{weights}.gguf"), IDS)
    assert np.abs(got - ref).max() <= 20 * bound * np.abs(ref).max()


@pytest.mark.long
def test_export_command_merges_the_adapter_into_the_gguf(source, tmp_path):
    from ftjax.peft.apply import apply_peft
    from ftjax.peft.files import save_adapter
    from ftjax.peft.merge import merged_model

    folder, _, _ = source("llama")
    model = apply_peft(M.from_pretrained(folder), {"method": "lora", "rank": 4, "init": "gaussian"}, nnx.Rngs(0))
    for _, var in nnx.to_flat_state(nnx.state(model, nnx.LoRAParam)):
        var[...] = var[...] + 0.05  # B off zero, so the merge matters
    save_adapter(model, tmp_path / "adapter")
    run_ftjax("export", f"--model={folder}", f"--adapter={tmp_path / 'adapter'}", "--format=gguf", "--gguf_type=f32",
              f"--out={tmp_path / 'gguf'}")
    assert "## Intended use and limits" in (tmp_path / "gguf" / "README.md").read_text()  # its model card
    back = M.from_pretrained(tmp_path / "gguf" / "model-f32.gguf")
    want = forward_logits(merged_model(model), IDS)
    np.testing.assert_allclose(forward_logits(back, IDS), want, atol=1e-5)
    assert np.abs(want - forward_logits(M.from_pretrained(folder), IDS)).max() > 1e-3


def test_what_llama_cpp_cannot_state_is_refused(source, hf_folder, tiny_model_dir, tmp_path):
    from ftjax.models.tokenizer import load_tokenizer

    folder, tok, _ = source("llama")
    with pytest.raises(ValueError, match="supports BPE tokenizers"):
        write_gguf(M.from_pretrained(folder), tmp_path / "a.gguf", load_tokenizer(tiny_model_dir))
    _, gpt2 = hf_folder("gpt2")
    with pytest.raises(ValueError, match="GGUF export supports .*'gpt2'"):
        write_gguf(M.from_pretrained(gpt2), tmp_path / "b.gguf", tok)
    cls, kwargs, _ = CASES["gemma3"]
    odd = transformers.AutoModelForCausalLM.from_config(getattr(transformers, cls)(
        **dict(kwargs, query_pre_attn_scalar=256, vocab_size=640)))
    odd.save_pretrained(tmp_path / "odd")
    with pytest.raises(ValueError, match="query_pre_attn_scalar=256"):
        write_gguf(M.from_pretrained(tmp_path / "odd"), tmp_path / "c.gguf", tok)
    assert not list(tmp_path.glob("*.gguf")) and not list(tmp_path.glob(".*.gguf"))  # nothing half-written


def test_lora_adapter_gguf_holds_the_factors_llama_cpp_applies(source, tmp_path):
    """adapter.lora.alpha / r x B A of each matrix, with the base's Q/K permutation undone, is the adapter's
    own change to that weight; rsLoRA's scale is folded into alpha; non-LoRA methods are refused."""
    import gguf
    from ftjax.models.gguf import _unpermute_rope
    from ftjax.peft.gguf_lora import write_gguf_lora
    from ftjax.peft.apply import apply_peft, find_targets
    from ftjax.peft.apply import _module as module_at

    folder, _, _ = source("llama")
    model = apply_peft(M.from_pretrained(folder), {"method": "lora", "rank": 4, "alpha": 8.0, "rslora": True,
                                                   "init": "gaussian"}, nnx.Rngs(0))
    for _, var in nnx.to_flat_state(nnx.state(model, nnx.LoRAParam)):
        var[...] = var[...] + 0.05
    out = write_gguf_lora(model, tmp_path / "lora.gguf")
    reader = gguf.GGUFReader(out)
    assert reader.get_field("general.type").contents() == "adapter"
    alpha = reader.get_field("adapter.lora.alpha").contents()
    assert alpha == pytest.approx(8.0 / 2.0 * 4)  # rsLoRA: scale alpha / sqrt(r), written as scale x r
    tensors = {t.name: np.asarray(t.data) for t in reader.tensors}
    cfg = model.config
    for target in find_targets(model, "all-linear"):
        layer = int(target.split(".")[2])
        kind = {"q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output",
                "gate_proj": "ffn_gate", "up_proj": "ffn_up", "down_proj": "ffn_down"}[target.rsplit(".", 1)[1]]
        a, b = tensors[f"blk.{layer}.{kind}.weight.lora_a"], tensors[f"blk.{layer}.{kind}.weight.lora_b"]
        if kind in ("attn_q", "attn_k"):
            b = _unpermute_rope(b, cfg.num_heads if kind == "attn_q" else cfg.num_kv_heads)
        lora = module_at(model, target).adapters["default"]
        np.testing.assert_allclose(alpha / a.shape[0] * (b @ a), np.asarray(lora.delta()).T, atol=1e-6)
    dora = apply_peft(M.from_pretrained(folder), {"method": "dora", "rank": 4}, nnx.Rngs(0))
    with pytest.raises(ValueError, match="plain LoRA factors only, not dora"):
        write_gguf_lora(dora, tmp_path / "dora.gguf")
