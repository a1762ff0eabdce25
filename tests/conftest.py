"""Tiny random transformers models of every ported family, saved once per session."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

# LLVM at -O0: the tests' programs are tiny, so compiling them costs far more than running them (~30% of the
# suite's time); XLA's own optimisations (fusion, layout) still run, so what is tested is the same program.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0 "
                                   "--xla_llvm_disable_expensive_passes=true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# One persistent compilation cache for the session's processes (xdist workers and the commands tests start):
# tests compile the same tiny steps many times over; the cache key is the program, so results are unchanged.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(Path(__file__).resolve().parents[1] / ".pytest_cache" / "jax"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(2 ** 31))  # a size limit makes JAX lock its files

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

# Prime-ish sizes so that a swapped axis shows up as a shape error; windows shorter than the test sequence.
_COMMON = dict(vocab_size=131, hidden_size=40, intermediate_size=52, num_hidden_layers=3, num_attention_heads=4,
               num_key_value_heads=2, max_position_embeddings=64, pad_token_id=0, bos_token_id=1, eos_token_id=2)
FAMILIES = {
    "llama": ("LlamaConfig", dict(_COMMON)),
    "llama3_tied": ("LlamaConfig", dict(_COMMON, tie_word_embeddings=True, rope_scaling=dict(
        rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
        original_max_position_embeddings=16), attention_bias=True, mlp_bias=True)),
    "mistral": ("MistralConfig", dict(_COMMON, sliding_window=5)),
    "qwen2": ("Qwen2Config", dict(_COMMON)),
    "qwen3": ("Qwen3Config", dict(_COMMON, head_dim=12)),
    "gemma": ("GemmaConfig", dict(_COMMON, head_dim=12)),
    "gemma2": ("Gemma2Config", dict(_COMMON, head_dim=12, sliding_window=5, query_pre_attn_scalar=12,
                                    attn_logit_softcapping=5.0, final_logit_softcapping=3.0)),
    "gemma3_text": ("Gemma3TextConfig", dict(_COMMON, head_dim=12, sliding_window=5, query_pre_attn_scalar=12,
                                             num_hidden_layers=4, sliding_window_pattern=2,
                                             layer_types=["sliding_attention", "full_attention"] * 2,
                                             rope_local_base_freq=10.0, rope_theta=1000.0)),
    "gpt2": ("GPT2Config", dict(vocab_size=131, n_embd=40, n_layer=3, n_head=4, n_positions=64, bos_token_id=1,
                                eos_token_id=2)),
}


def make_hf_model(family: str, seed: int = 0):
    import torch
    import transformers

    cls_name, kwargs = FAMILIES[family]
    config = getattr(transformers, cls_name)(**kwargs)
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation="eager").eval()
    with torch.no_grad():  # random norms and biases, so that a missed one shows in the logits
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith("bias") or "ln_" in name:
                p.add_(torch.randn_like(p) * 0.1)
    return model


@pytest.fixture(scope="session")
def hf_folder(tmp_path_factory):
    """family -> (transformers model, saved folder); built lazily and cached."""
    cache = {}

    def get(family: str):
        if family not in cache:
            model = make_hf_model(family)
            path = tmp_path_factory.mktemp(family)
            model.save_pretrained(path)
            cache[family] = (model, path)
        return cache[family]

    return get


def padded_batch(vocab: int = 131, lengths=(13, 9, 11), seed: int = 0):
    """Left-padded int32 ids, attention mask and positions (counting real tokens only)."""
    rng = np.random.RandomState(seed)
    t = max(lengths)
    ids = np.zeros((len(lengths), t), np.int32)
    mask = np.zeros((len(lengths), t), np.int32)
    for i, n in enumerate(lengths):
        ids[i, t - n:] = rng.randint(3, vocab, n)
        mask[i, t - n:] = 1
    positions = np.maximum(np.cumsum(mask, 1) - 1, 0).astype(np.int32)
    return ids, mask, positions


CHAT_TEMPLATE = ("{% for m in messages %}<{{ m['role'] }}> {{ m['content'] }} <eot> {% endfor %}"
                 "{% if add_generation_prompt %}<assistant> {% endif %}")


def save_tiny_tokenizer(folder, vocab_size: int = 131):
    """A word-level tokenizer over `vocab_size` tokens (specials, chat markers, words w0..wN) with a chat template."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<bos>", "<eos>", "<unk>", "<eot>", "<user>", "<assistant>", "<system>"]
    vocab = {t: i for i, t in enumerate(specials)}
    vocab.update({f"w{i}": len(vocab) + i for i in range(vocab_size - len(vocab))})
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<bos>", eos_token="<eos>",
                                   unk_token="<unk>", chat_template=CHAT_TEMPLATE)
    fast.save_pretrained(folder)
    return fast


ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tiny_model_dir(hf_folder, tmp_path_factory) -> Path:
    """The tiny random llama saved with the tiny tokenizer: a complete model folder for CLI and trainer tests."""
    hf, _ = hf_folder("llama")
    folder = tmp_path_factory.mktemp("llama_with_tokenizer")
    hf.save_pretrained(folder)
    save_tiny_tokenizer(folder)
    return folder


def sft_config(**overrides):
    """configs/sft.py:tiny with dotted-key overrides ("train.steps": 3)."""
    from ftjax.config import load_config_file

    return set_keys(load_config_file(ROOT / "configs" / "sft.py", "tiny"), overrides)


def set_keys(config, overrides: dict):
    """`config` with dotted-key overrides set ("train.steps": 3)."""
    for key, value in overrides.items():
        node = config
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return config


def killed_at_step(monkeypatch, n: int):
    """The trainer's n-th step raises KeyboardInterrupt, as a kill would; returns the undo."""
    from ftjax.train import loop

    real, calls = loop.step_batch, {"n": 0}

    def dies(*args):
        calls["n"] += 1
        if calls["n"] == n:
            raise KeyboardInterrupt("simulated kill")
        return real(*args)

    monkeypatch.setattr(loop, "step_batch", dies)
    return lambda: monkeypatch.setattr(loop, "step_batch", real)


def write_rows(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def write_csv(path: Path, rows: list, header=("text", "category")) -> str:
    """A CSV file of `rows` under `header` (Banking77's text,category by default)."""
    import csv

    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return str(path)


def forward_logits(model, ids, mask=None) -> np.ndarray:
    """The model's logits as one compiled program: called op by op, every primitive and shape compiles on its own.
    A model with another kernel or adapter is traced anew (those are static attributes of its modules)."""
    return np.asarray(_forward(model, jnp.asarray(ids), None if mask is None else jnp.asarray(mask)))


_forward = nnx.jit(lambda model, ids, mask: model(ids, attention_mask=mask))


def run_ftjax(*args: str, check: bool = True, timeout: int = 300) -> subprocess.CompletedProcess:
    """`python -m ftjax ARGS` from the repository root; with `check`, a failure shows the command's stderr."""
    from forked_commands import run_command

    proc = run_command(list(args), ROOT, timeout)
    if check and proc.returncode != 0:
        raise AssertionError(proc.stderr[-3000:])
    return proc
