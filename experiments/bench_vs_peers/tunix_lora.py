"""Tunix: its own Gemma 3 / Llama 3 model loaded from the same safetensors folder, LoRA on every linear layer of
attention and MLP through qwix, trained by PeftTrainer's jitted train step on the same batches (its default loss:
cross-entropy averaged over target tokens), AdamW after global-norm clipping at 1.0.

    python tunix_lora.py MODEL_DIR BATCHES.npz RESULT.json --rank=16 --warmup=2 --lr=1e-4 --dtype=float32
"""

from __future__ import annotations

import importlib.metadata
import itertools
import json
from pathlib import Path

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import qwix
from flax import nnx
from tunix.models.gemma3 import model as gemma3
from tunix.models.gemma3 import params_safetensors as gemma3_params
from tunix.models.llama3 import model as llama3
from tunix.models.llama3 import params as llama3_params
from tunix.sft import peft_trainer
from tunix.sft import utils as sft_utils

from workload import load, time_steps, worker_parser, write_result

# qwix matches the module path ("layers/3/attn/q_einsum"); Gemma 3 fuses k and v into kv_einsum (one LoRA A shared
# by k and v), and q, k, v into qkv_einsum when every head has its own k/v.
LORA_TARGETS = (".*/(q_einsum|kv_einsum|qkv_einsum|attn_vec_einsum|q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj"
                "|down_proj)")


def rope(hf: dict, layer_type: str | None = None) -> dict:
    """Rope settings (of `layer_type` for Gemma 3): transformers >= 5 writes `rope_parameters`, older configs
    (and ftjax's GGUF conversion) rope_theta / rope_local_base_freq / rope_scaling."""
    if p := hf.get("rope_parameters"):
        return p.get(layer_type, p) if layer_type else p
    if layer_type == "sliding_attention":
        return {"rope_type": "default", "rope_theta": hf.get("rope_local_base_freq", 10000.0)}
    scaling = dict(hf.get("rope_scaling") or {})
    return {"rope_theta": hf.get("rope_theta", 10000.0), **scaling,
            "rope_type": scaling.get("rope_type", scaling.get("type", "default"))}


def require(checks: dict[str, bool], model_type: str) -> None:
    if bad := [k for k, ok in checks.items() if not ok]:
        raise ValueError(f"Tunix's {model_type} model cannot express this config: {', '.join(bad)}")


def gemma3_model(folder: Path, hf: dict, dtype: jnp.dtype) -> gemma3.Gemma3:
    """Tunix's Gemma3 built from config.json (its presets hard-code the sizes; the per-layer pattern, rms eps 1e-6
    and the tanh GELU are fixed in its code, so configs that differ are refused rather than mis-loaded)."""
    n, heads, head_dim = hf["num_hidden_layers"], hf["num_attention_heads"], hf["head_dim"]
    pattern = ["full_attention" if t == gemma3.AttentionType.GLOBAL else "sliding_attention"
               for _, t in zip(range(n), itertools.cycle(gemma3.GEMMA3_ATTENTION_PATTERN))]
    local, glob = rope(hf, "sliding_attention"), rope(hf, "full_attention")
    norm = gemma3.QueryPreAttentionNormalisation
    scalars = {head_dim: norm.BY_ONE_OVER_SQRT_HEAD_DIM,
               hf["hidden_size"] // heads: norm.BY_ONE_OVER_SQRT_EMBED_DIM_DIV_NUM_HEADS}
    require({"layer_types": hf.get("layer_types", pattern) == pattern,
             "rms_norm_eps": hf.get("rms_norm_eps", 1e-6) == 1e-6,
             "softcapping": not hf.get("attn_logit_softcapping") and not hf.get("final_logit_softcapping"),
             "hidden_activation": hf.get("hidden_activation", "gelu_pytorch_tanh") == "gelu_pytorch_tanh",
             "query_pre_attn_scalar": hf.get("query_pre_attn_scalar", head_dim) in scalars,
             "rope_type": local["rope_type"] == "default" and glob["rope_type"] in ("default", "linear")}, "gemma3")
    config = gemma3.ModelConfig(
        num_layers=n, num_embed=hf["vocab_size"], embed_dim=hf["hidden_size"], hidden_dim=hf["intermediate_size"],
        num_heads=heads, head_dim=head_dim, num_kv_heads=hf["num_key_value_heads"],
        sliding_window_size=hf["sliding_window"], local_base_frequency=local["rope_theta"],
        global_base_frequency=glob["rope_theta"], global_scale_factor=glob.get("factor", 1.0),
        query_pre_attn_norm=scalars[hf.get("query_pre_attn_scalar", head_dim)], param_dtype=dtype)
    return gemma3_params.create_model_from_safe_tensors(str(folder), config, dtype=dtype)


def llama3_inv_freq(hf: dict, head_dim: int) -> np.ndarray:
    """Rope inverse frequencies as transformers computes them, llama3 long-context scaling included."""
    p = rope(hf)
    inv = 1.0 / p["rope_theta"] ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    if p["rope_type"] == "llama3":
        old, low, high = p["original_max_position_embeddings"], p["low_freq_factor"], p["high_freq_factor"]
        wavelen = 2 * np.pi / inv
        smooth = (old / wavelen - low) / (high - low)
        inv = np.where(wavelen > old / low, inv / p["factor"],
                       np.where(wavelen < old / high, inv, (1 - smooth) * inv / p["factor"] + smooth * inv))
    elif p["rope_type"] != "default":
        raise ValueError(f"Tunix's llama3 model cannot express rope_type {p['rope_type']!r}")
    return inv.astype(np.float32)


def llama3_model(folder: Path, hf: dict, dtype: jnp.dtype) -> llama3.Llama3:
    """Tunix's Llama3 built from config.json (so random-weight folders of any size load)."""
    head_dim = hf.get("head_dim") or hf["hidden_size"] // hf["num_attention_heads"]
    require({"hidden_act": hf.get("hidden_act", "silu") == "silu",
             "bias": not hf.get("attention_bias") and not hf.get("mlp_bias")}, "llama")
    inv_freq = llama3_inv_freq(hf, head_dim)

    # Tunix 0.1.7's Llama3 attention calls apply_rope without its config's rope_theta (so always 1e6) and has no
    # llama3 frequency scaling; swap in the checkpoint's frequencies (same rotate-half math, same cost).
    def apply_rope(inputs: jax.Array, positions: jax.Array, head_dim: int, rope_theta: float | None = None
                   ) -> jax.Array:
        angles = positions[..., None, None] * inv_freq  # [B, T, 1, head_dim / 2]
        sin, cos = jnp.sin(angles), jnp.cos(angles)
        first, second = jnp.split(inputs, 2, axis=-1)
        return jnp.concatenate([first * cos - second * sin, second * cos + first * sin], -1).astype(inputs.dtype)

    llama3.apply_rope = apply_rope
    config = llama3.ModelConfig(
        num_layers=hf["num_hidden_layers"], vocab_size=hf["vocab_size"], embed_dim=hf["hidden_size"],
        hidden_dim=hf["intermediate_size"], num_heads=hf["num_attention_heads"], head_dim=head_dim,
        num_kv_heads=hf["num_key_value_heads"], rope_theta=int(rope(hf)["rope_theta"]),
        norm_eps=hf.get("rms_norm_eps", 1e-6), weight_tying=hf.get("tie_word_embeddings", False))
    return llama3_params.create_model_from_safe_tensors(str(folder), config, dtype=dtype)


def load_model(folder: Path, dtype: str) -> nnx.Module:
    """Tunix's implementation of the folder's model_type, weights from its safetensors loader, in `dtype`."""
    hf = json.loads((folder / "config.json").read_text())
    builders = {"gemma3_text": gemma3_model, "llama": llama3_model}
    if hf["model_type"] not in builders:
        raise ValueError(f"model_type {hf['model_type']!r}: Tunix worker supports {', '.join(builders)}")
    return builders[hf["model_type"]](folder, hf, jnp.dtype(dtype))


def add_lora(model: nnx.Module, rank: int) -> nnx.Module:
    """qwix LoRA (alpha = 2 x rank, no dropout) on the attention and MLP projections, traced once on Tunix's
    dummy inputs so the adapters exist."""
    provider = qwix.LoraProvider(module_path=LORA_TARGETS, rank=rank, alpha=2.0 * rank, dropout=0.0)
    return qwix.apply_lora_to_model(model, provider, rngs=nnx.Rngs(0), **model.get_model_input())


def tunix_batch(arrays: dict[str, np.ndarray], i: int) -> dict[str, np.ndarray]:
    """Step i's batch for the trainer. Tunix's default loss reads input_mask[:, 1:] as the target mask, which is our
    loss_mask (token t is predicted from t - 1); the padding mask travels separately."""
    return {"input_tokens": arrays["input_ids"][i], "input_mask": arrays["loss_mask"][i],
            "pad_mask": arrays["attention_mask"][i]}


def model_inputs(x: dict) -> dict:
    """Tunix's peft_main recipe (positions and causal mask from the padding mask, built inside the jitted step),
    given the real padding mask instead of `tokens != 0`."""
    return {"input_tokens": x["input_tokens"], "input_mask": x["input_mask"],
            "positions": sft_utils.build_positions_from_mask(x["pad_mask"]),
            "attention_mask": sft_utils.make_causal_attn_mask(x["pad_mask"])}


def main() -> None:
    p = worker_parser(__doc__)
    a = p.parse_args()
    arrays = load(Path(a.batches))
    steps = arrays["input_ids"].shape[0]
    model = add_lora(load_model(Path(a.model), a.dtype), a.rank)
    optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(a.lr, weight_decay=0.0))
    trainer = peft_trainer.PeftTrainer(model, optimizer, peft_trainer.TrainingConfig(
        eval_every_n_steps=steps + 1, max_steps=steps))
    trainer.with_gen_model_input_fn(model_inputs)
    # The trainer's own nnx.jit step (as train() builds it), driven one batch at a time so each can be timed.
    train_step, _ = trainer.jit_train_and_eval_step(cache_nnx_graph=True)

    def step(i: int) -> tuple[float, float]:
        loss, _, grad_norm = train_step(tunix_batch(arrays, i))
        return float(loss), float(grad_norm)

    result = time_steps(step, arrays, a.warmup)
    trainable = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.LoRAParam)))
    write_result(Path(a.result), result | {
        "framework": "tunix", "trainable_params": int(trainable), "dtype": a.dtype,
        "versions": {"tunix": importlib.metadata.version("google-tunix"), "qwix": importlib.metadata.version("qwix"),
                     "jax": jax.__version__, "flax": flax.__version__}})


if __name__ == "__main__":
    main()
