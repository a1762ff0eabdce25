"""Preference tuning: DPO, IPO, ORPO and SimPO against their papers' formulas, the reference model is the base
with the adapter off, pair data errors, and a few steps on planted pairs raising the chosen-vs-rejected margin."""

import json

import jax.numpy as jnp
import numpy as np
import pytest

from conftest import forward_logits, sft_config, write_rows
from ftjax.loss import preference_losses


def _logsig(x):
    return -np.log1p(np.exp(-x))


def test_each_loss_equals_its_formula():
    rng = np.random.default_rng(0)
    pc, pr, rc, rr = (rng.normal(-20, 5, 6) for _ in range(4))
    lc, lr = rng.integers(3, 12, 6).astype(float), rng.integers(3, 12, 6).astype(float)
    b, e, g, w = 0.3, 0.1, 0.5, 0.7
    args = [jnp.asarray(a) for a in (pc, pr, rc, rr, lc, lr)]
    h = (pc - rc) - (pr - rr)
    want = {"dpo": -(1 - e) * _logsig(b * h) - e * _logsig(-b * h),
            "ipo": (h - 1 / (2 * b)) ** 2}
    mc, mr = pc / lc, pr / lr
    odds = lambda m: m - np.log(1 - np.exp(m))
    want["orpo"] = -mc - w * _logsig(odds(mc) - odds(mr))
    z = b * (mc - mr) - g
    want["simpo"] = -(1 - e) * _logsig(z) - e * _logsig(-z)
    for kind, expected in want.items():
        loss, c, r = preference_losses(kind, *args[:2], *args[2:4], *args[4:], b, e, g, w)
        np.testing.assert_allclose(np.asarray(loss), expected, rtol=1e-5, err_msg=kind)
        if kind in ("dpo", "ipo"):
            np.testing.assert_allclose(np.asarray(c), b * (pc - rc), rtol=1e-5)
        else:
            np.testing.assert_allclose(np.asarray(r), b * mr, rtol=1e-5)
    with pytest.raises(ValueError, match="unknown preference loss"):
        preference_losses("kto", *args[:2], None, None, *args[4:], b)


def _pairs(n, rng):
    # the planted preference: chosen answers say w10 w11, rejected ones w12 w13, after a random prompt
    return [{"prompt": " ".join(f"w{rng.integers(20, 60)}" for _ in range(3)), "chosen": "w10 w11",
             "rejected": "w12 w13"} for _ in range(n)]


def test_reference_log_probs_are_the_base_model_with_the_adapter_off(tiny_model_dir):
    import jax
    from flax import nnx

    from ftjax.data.pairs import PairBatches, encode_pair
    from ftjax.loss import target_positions
    from ftjax.models import from_pretrained
    from ftjax.models.tokenizer import load_tokenizer
    from ftjax.peft.apply import apply_peft
    from ftjax.peft.config import default_config as peft_default
    from ftjax.peft.state import use_adapter
    from ftjax.train.step import sequence_logprobs

    tok = load_tokenizer(tiny_model_dir)
    pairs = [encode_pair(r, tok, 32) for r in _pairs(3, np.random.default_rng(1))]
    batch = next(PairBatches(pairs, batch_size=3, seq_len=32, seed=0, shuffle=False))
    batch["index"], batch["valid"] = target_positions(batch.pop("loss_mask"))
    logprobs = nnx.jit(sequence_logprobs, static_argnums=2)  # the active adapter is static: each one traced anew
    base = from_pretrained(tiny_model_dir, dtype=jnp.float32)
    plain, _ = logprobs(base, batch, 8)
    model = from_pretrained(tiny_model_dir, dtype=jnp.float32)
    cfg = peft_default()
    apply_peft(model, cfg)
    for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):  # a trained-looking adapter: B != 0
        if "lora_b" in "/".join(map(str, path)):
            var.value = jax.random.normal(jax.random.key(0), var.value.shape) * 0.5
    tuned, _ = logprobs(model, batch, 8)
    with use_adapter(model, None):
        off, _ = logprobs(model, batch, 8)
    np.testing.assert_allclose(np.asarray(off), np.asarray(plain), atol=1e-5)
    assert np.abs(np.asarray(tuned) - np.asarray(plain)).max() > 1e-3
    # and the summed log-probs equal a direct log-softmax over the full logits
    logits = forward_logits(base, batch["inputs"], batch["attention_mask"])
    lp = np.asarray(jax.nn.log_softmax(logits.astype(jnp.float32), -1))
    mask = np.zeros(batch["inputs"].shape, bool).reshape(-1)
    mask[batch["index"][batch["valid"]]] = True
    direct = (np.take_along_axis(lp, batch["targets"][..., None], -1)[..., 0] * mask.reshape(lp.shape[:2])).sum(1)
    np.testing.assert_allclose(np.asarray(plain), direct, rtol=1e-4, atol=1e-4)


def test_pair_rows_are_checked_with_their_line(tiny_model_dir, tmp_path):
    from ftjax.data.pairs import encode_pair
    from ftjax.data.sources import load_rows
    from ftjax.models.tokenizer import load_tokenizer

    tok = load_tokenizer(tiny_model_dir)
    path = write_rows(tmp_path / "p.jsonl", [{"prompt": "w3", "chosen": "w4", "rejected": "w5"},
                                            {"prompt": "w3", "chosen": "w4"},
                                            {"prompt": "w3", "chosen": "w4", "rejected": "w4"}])
    rows = load_rows(path)
    encode_pair(rows[0], tok, 16)
    with pytest.raises(ValueError, match=r"p.jsonl:2: a preference row needs prompt, chosen and rejected; missing rejected"):
        encode_pair(rows[1], tok, 16)
    with pytest.raises(ValueError, match=r"p.jsonl:3: chosen and rejected are the same"):
        encode_pair(rows[2], tok, 16)
    with pytest.raises(ValueError, match=r"'prompt' must be a string or a list of chat turns"):
        encode_pair({"prompt": 3, "chosen": "w4", "rejected": "w5"}, tok, 16)
    chat = encode_pair({"prompt": [{"role": "user", "content": "w3 w4"}], "chosen": "w5", "rejected": "w6"}, tok, 32)
    assert chat[0]["input_ids"][:-3] == chat[1]["input_ids"][:-3] and sum(chat[0]["loss_mask"]) >= 2


@pytest.mark.parametrize("kind", ["dpo", "simpo"])
def test_a_few_steps_on_planted_pairs_raise_the_margin(tiny_model_dir, tmp_path, kind):
    from ftjax.train import loop
    from ftjax.workdir import read_metrics

    rng = np.random.default_rng(0)
    train = write_rows(tmp_path / "train.jsonl", _pairs(32, rng))
    val = write_rows(tmp_path / "val.jsonl", _pairs(8, rng))
    config = sft_config(**{"model.path": str(tiny_model_dir), "data.train": train, "data.validation": val,
                           "data.format": "auto", "data.max_length": 16, "eval.metrics": "",
                           "train.preference.loss": kind, "train.preference.beta": 0.5 if kind == "dpo" else 2.0,
                           "train.steps": 12, "train.batch_size": 4, "train.learning_rate": 1e-2,
                           "train.eval_every": 6, "checkpoint.every": 6})
    summary = loop.main(config, tmp_path / "run")
    evals = [r for r in read_metrics(tmp_path / "run") if "val_reward_margin" in r]
    assert [r["step"] for r in evals] == [6, 12]
    assert evals[-1]["val_reward_margin"] > evals[0]["val_reward_margin"] > 0
    assert evals[-1]["val_reward_accuracy"] == 100.0
    logged = [r for r in read_metrics(tmp_path / "run") if "reward_accuracy" in r]
    assert logged[0]["loss"] > logged[-1]["loss"]
    if kind == "dpo":  # the first step starts at the reference: zero rewards, loss log 2
        assert logged[0]["reward_margin"] == pytest.approx(0.0, abs=1e-5)
        assert logged[0]["loss"] == pytest.approx(np.log(2), abs=1e-4)
    assert summary["metric"] == "val_loss"


def test_slot_error_ranking_prefers_outputs_without_invented_facts():
    from ftjax.eval.items import EvalItem
    from ftjax.eval.ranked_pairs import score_outputs

    mr = "name[The Eagle], eatType[coffee shop], food[French]"
    item = EvalItem(mr, None, ["The Eagle is a coffee shop serving French food."])
    outs = ["The Eagle is a coffee shop serving French food.",
            "The Eagle is a coffee shop serving Italian food.",  # contradicted
            "The Eagle is a family friendly coffee shop serving French food."]  # invented familyFriendly
    s = score_outputs("slot_error", item, outs)
    assert s[0, 0] == 0 and s[1, 0] < 0 and s[2, 0] < 0
    with pytest.raises(ValueError, match="unknown score"):
        score_outputs("meteor", item, outs)


@pytest.mark.long
def test_ranked_pairs_command_pairs_best_with_worst(tiny_model_dir, tmp_path):
    from conftest import run_ftjax
    from ftjax.train import loop

    rows = [{"prompt": f"w3 w{20 + i}", "completion": f"w{30 + i} w{31 + i}"} for i in range(6)]
    data = write_rows(tmp_path / "d.jsonl", rows)
    config = sft_config(**{"model.path": str(tiny_model_dir), "data.train": data, "data.validation": "",
                           "eval.metrics": "", "train.steps": 2})
    loop.main(config, tmp_path / "sft")
    out = tmp_path / "pairs.jsonl"
    proc = run_ftjax("pairs", f"--workdir={tmp_path / 'sft'}", f"--input={data}", f"--output={out}", "--k=4",
                     "--temperature=1.5", "--top_k=0", "--max_new_tokens=4")
    assert "pairs from 6 prompts" in proc.stdout
    pairs = [json.loads(line) for line in out.read_text().splitlines()]
    report = json.loads((tmp_path / "pairs.jsonl.report.json").read_text())
    assert report["pairs"] == len(pairs) and report["pairs"] + report["no_difference"] == 6
    from ftjax.metrics.text import rouge

    for p in pairs:
        ref = [next(r["completion"] for r in rows if r["prompt"] == p["prompt"])]
        got = rouge([p["chosen"], p["rejected"]], [ref, ref])["rouge_l"].items[:, 0]
        assert got[0] == pytest.approx(p["score_chosen"]) and got[1] == pytest.approx(p["score_rejected"])
        assert p["score_chosen"] >= p["score_rejected"] and p["chosen"] != p["rejected"]
    # random samples of four tokens differ: pairs exist, and they train a preference run from the SFT adapter
    assert pairs
    config = sft_config(**{"model.path": str(tiny_model_dir), "data.train": str(out), "data.validation": str(out),
                           "data.format": "auto", "eval.metrics": "", "train.preference.loss": "dpo",
                           "train.steps": 2, "train.batch_size": 1, "model.init_from": str(tmp_path / "sft")})
    summary = loop.main(config, tmp_path / "dpo")
    assert summary["init_from"] and "val_reward_accuracy" in summary["final"]


def test_initial_reference_equals_the_adapter_off_reference_from_a_fresh_adapter(tiny_model_dir, tmp_path):
    """A fresh LoRA adapter starts as the base model (B = 0): the precomputed initial reference and the
    in-step adapter-off reference must give the same losses at every step."""
    from ftjax.train import loop
    from ftjax.workdir import read_metrics

    train = write_rows(tmp_path / "train.jsonl", _pairs(16, np.random.default_rng(2)))
    losses = {}
    for ref in ("initial", "adapter_off"):
        config = sft_config(**{"model.path": str(tiny_model_dir), "data.train": train, "data.validation": "",
                               "data.format": "auto", "data.max_length": 16, "eval.metrics": "",
                               "train.preference.loss": "dpo", "train.preference.reference": ref,
                               "train.steps": 4, "train.batch_size": 4, "train.learning_rate": 1e-2})
        loop.main(config, tmp_path / ref)
        losses[ref] = [r["loss"] for r in read_metrics(tmp_path / ref) if "loss" in r]
    np.testing.assert_allclose(losses["initial"], losses["adapter_off"], rtol=2e-4, atol=1e-5)
    assert losses["initial"][-1] < losses["initial"][0]


@pytest.mark.parametrize("key, value, says", [
    ("data.group_balance", "reweight", "data.group_balance do not apply"),
    ("data.synthetic_weight", 0.5, "data.synthetic_weight do not apply"),
    ("data.pack", True, "pairs are not packed"),
    ("eval.metrics", "bleu", "leave eval.metrics empty"),
    ("head.type", "classification", "language-model head")])
def test_options_that_preference_pairs_ignore_are_refused(key, value, says):
    from ftjax.train.config import check_preference

    config = sft_config(**{"train.preference.loss": "dpo", "eval.metrics": "", "data.group_attribute": "gender",
                           key: value})
    with pytest.raises(ValueError, match=says):
        check_preference(config)
