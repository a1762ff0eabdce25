"""The classification head: it learns, only it and the adapter train, `ftjax eval` scores a labelled CSV it has
never seen, and the merged export loads in transformers' AutoModelForSequenceClassification with equal logits."""

from __future__ import annotations

import csv
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import ftjax.models as M
from conftest import ROOT, run_ftjax, sft_config
from ftjax.models.heads import add_head, classify
from ftjax.train import loop

LABELS = ["alpha", "beta", "gamma"]


def write_csv(path, rng, n):
    """Banking77's layout (text,category): the category is which keyword (w10, w11, w12) the text holds, among
    random filler words."""
    noise = lambda: [f"w{rng.randint(20, 100)}" for _ in range(rng.randint(0, 4))]
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "category"])
        for _ in range(n):
            k = rng.randint(3)
            w.writerow([" ".join(["w3", *noise(), f"w{10 + k}", *noise()]), LABELS[k]])
    return str(path)


@pytest.fixture(scope="module")
def run(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("heads")
    rng = np.random.RandomState(0)
    paths = {"train": write_csv(root / "train.csv", rng, 96), "validation": write_csv(root / "val.csv", rng, 24),
             "test": write_csv(root / "test.csv", rng, 30)}
    config = sft_config(**{"model.path": str(tiny_model_dir), "data.train": paths["train"],
                           "data.validation": paths["validation"], "data.columns": "label=category",
                           "data.format": "classification", "data.labels": ",".join(LABELS),
                           "head.type": "classification", "train.steps": 60, "train.batch_size": 8,
                           "train.learning_rate": 3e-2, "train.eval_every": 20, "checkpoint.every": 20,
                           "train.early_stopping.metric": "val_accuracy", "train.early_stopping.mode": "max"})
    wd = root / "run"
    summary = loop.main(config, wd)
    return wd, summary, paths


def test_head_learns_and_early_stopping_reads_its_accuracy(run):
    wd, summary, _ = run
    rows = [json.loads(line) for line in (wd / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if "val_accuracy" in r]
    assert [r["step"] for r in evals] == [20, 40, 60]
    first, last = np.mean([r["loss"] for r in rows[:10]]), np.mean([r["loss"] for r in rows[-10:]])
    assert last < 0.6 * first
    assert summary["metric"] == "val_accuracy" and summary["best"] >= 80  # percent, as eval reports; chance is 1/3


@pytest.mark.long
def test_eval_scores_a_labelled_csv_with_the_head(run, tmp_path):
    wd, summary, paths = run
    out = run_ftjax("eval", f"--workdir={wd}", f"--config.data.test={paths['test']}", f"--out={tmp_path}",
                    "--config.objective.metric=accuracy", "--config.objective.target=20").stdout
    report = json.loads((tmp_path / "test.json").read_text())
    goal = report["objective"]  # chance is 33%: met, and with the whole interval past 20
    assert goal["value"] == report["metrics"]["accuracy"]["value"] and goal["met"] and goal["confident"]
    assert "objective accuracy >= 20 on test: " in out
    assert report["task"] == "classification" and report["settings"]["decoding"] == "classification head"
    assert set(report["metrics"]) == {"accuracy", "macro_f1"} and report["metrics"]["accuracy"]["value"] >= 70
    assert report["classification"]["labels"] == LABELS
    predictions = [json.loads(line) for line in (tmp_path / "test_predictions.jsonl").read_text().splitlines()]
    assert report["rows"] == 30 and len(predictions) == report["items"]  # rows with equal texts are one item
    assert all(p["prediction"] in LABELS for p in predictions)


def test_only_the_head_and_the_adapter_train(tiny_model_dir):
    from ftjax.peft.apply import apply_peft, trainable_filter
    from ftjax.train.state import TrainState
    from ftjax.train.step import make_train_step
    from ftjax.loss import target_positions

    model = M.from_pretrained(tiny_model_dir)
    apply_peft(model, {"method": "lora", "rank": 2, "init": "gaussian"}, nnx.Rngs(0))
    add_head(model, LABELS)
    graphdef, trainable, rng, frozen = nnx.split(model, trainable_filter({"method": "lora"}), nnx.RngState, ...)
    paths = {".".join(map(str, p)) for p, _ in nnx.to_flat_state(trainable)}
    assert "heads.classification.kernel" in paths and all("lora_" in p or p.startswith("heads.") for p in paths)
    ids = np.asarray([[1, 20, 30, 40, 2], [1, 21, 31, 0, 0]], np.int32)
    mask = np.asarray([[1, 1, 1, 1, 0], [1, 1, 1, 0, 0]], bool)  # label "token" last, never attended
    loss_mask = np.zeros_like(mask)
    loss_mask[0, 2], loss_mask[1, 1] = True, True  # the last text token of each row
    targets = np.zeros_like(ids)
    targets[0, 2], targets[1, 1] = 2, 0
    batch = {"inputs": ids[None], "targets": targets[None], "attention_mask": mask[None],
             "positions": np.maximum(np.cumsum(mask, 1) - 1, 0)[None].astype(np.int32),
             "segment_ids": np.ones_like(ids)[None]}
    batch["index"], batch["valid"] = target_positions(loss_mask[None])
    tx = optax.sgd(0.1)
    step = jax.jit(make_train_step(graphdef, tx, chunk=8, head="classification"))
    new, metrics = step(TrainState(trainable, tx.init(trainable), rng, frozen), batch)
    assert float(metrics["target_tokens"]) == 2
    changed = {".".join(map(str, p)) for (p, a), (_, b) in zip(nnx.to_flat_state(trainable),
                                                                nnx.to_flat_state(new.trainable))
               if not np.allclose(np.asarray(a.get_value()), np.asarray(b.get_value()))}
    assert "heads.classification.kernel" in changed and any("lora_b" in p for p in changed)  # B starts at 0


def test_label_smoothing_matches_optax():
    from ftjax.loss import token_nll

    logits = jax.random.normal(jax.random.key(0), (5, 7))
    labels = jnp.asarray([0, 3, 6, 2, 2])
    want = optax.softmax_cross_entropy(logits, optax.smooth_labels(jax.nn.one_hot(labels, 7), 0.1))
    np.testing.assert_allclose(token_nll(logits, labels, 0.1), want, rtol=1e-5, atol=1e-6)


@pytest.mark.long
def test_merged_export_is_a_transformers_sequence_classifier(run, tmp_path):
    import torch
    import transformers

    from ftjax.models.tokenizer import load_tokenizer
    from ftjax.train.restore import load_run

    wd, _, _ = run
    out = tmp_path / "seqcls"
    run_ftjax("export", f"--workdir={wd}", "--format=merged", f"--out={out}")
    model, tokenizer, _, _ = load_run(wd)
    texts = ["w3 w11 w40", "w3 w52 w10", "w3 w99 w12 w33 w44"]
    prompts = [tokenizer(t)["input_ids"] for t in texts]
    ours = classify(model, prompts, batch_size=4, pad_id=tokenizer.pad_token_id)
    hf = transformers.AutoModelForSequenceClassification.from_pretrained(out).eval()
    assert hf.config.id2label == dict(enumerate(LABELS))
    tok = load_tokenizer(out)
    enc = tok(texts, return_tensors="pt", padding=True)
    with torch.no_grad():
        theirs = hf(**enc).logits.numpy()
    assert np.abs(ours - theirs).max() <= 1e-4


def test_banking77_tiny_config_trains_packed_with_the_head(run, tiny_model_dir, tmp_path):
    """configs/banking77.py:tiny: classification head, holdout validation, packed rows, label smoothing."""
    from ftjax.config import load_config_file, set_dotted

    _, _, paths = run
    config = load_config_file(ROOT / "configs" / "banking77.py", "tiny")
    for key, value in {"model.path": str(tiny_model_dir), "data.train": paths["train"],
                       "data.labels": ",".join(LABELS)}.items():
        set_dotted(config, key, value)
    summary = loop.main(config, tmp_path)
    assert config.data.pack and config.data.validation == "holdout:0.1"
    assert summary["steps"] == 8 and summary["metric"] == "val_accuracy"
    goal = summary["objective"]  # the config's: the published 93.4, judged at the best checkpoint
    assert (goal["metric"], goal["target"], goal["value"]) == ("accuracy", 93.4, summary["best"])
    assert goal["met"] == (summary["best"] >= 93.4) and summary["peak_memory_gb"] > 0
    assert summary["validation_examples"] == 10 and summary["train_examples"] == 86  # 96 rows, 10% held out


def test_e2e_config_is_valid(tiny_model_dir):
    from ftjax.config import load_config_file, set_dotted
    from ftjax.train.config import check

    config = load_config_file(ROOT / "configs" / "e2e_nlg.py", "tiny")
    set_dotted(config, "model.path", str(tiny_model_dir))
    set_dotted(config, "data.train", "rows.csv")
    check(config)
    assert config.data.columns == "data=mr,text=ref" and config.data.format == "data_to_text"


def test_banking77_full_variant_trains_every_weight_in_float32(tiny_model_dir, tmp_path, monkeypatch):
    """configs/banking77.py:full: the default run with full fine-tuning, float32 weights and its own rate."""
    from ftjax.config import load_config_file, set_dotted
    from ftjax.train.config import check

    (tmp_path / "categories.json").write_text(json.dumps(LABELS))  # the data set's folder, as a user points to it
    monkeypatch.setenv("BANKING77_DIR", str(tmp_path))
    default, full = (load_config_file(ROOT / "configs" / "banking77.py", v) for v in (None, "full"))
    set_dotted(full, "model.path", str(tiny_model_dir))
    check(full)
    assert (full.peft.method, full.model.dtype, full.train.learning_rate) == ("full", "float32", 1e-4)
    assert (full.train.steps, full.data.per_label, full.head.type) == (default.train.steps, 0, "classification")


def test_peft_export_carries_the_head_as_modules_to_save(run, tiny_model_dir, tmp_path):
    """--format=peft of a head run: a SEQ_CLS adapter that PEFT loads onto AutoModelForSequenceClassification
    with the same logits as ftjax's head."""
    import peft
    import torch
    import transformers

    from ftjax.models.tokenizer import load_tokenizer
    from ftjax.train.restore import load_run

    wd, _, _ = run
    out = tmp_path / "seqcls_peft"
    run_ftjax("export", f"--workdir={wd}", "--format=peft", f"--out={out}")
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["task_type"] == "SEQ_CLS" and "score" in config["modules_to_save"]
    assert json.loads((out / "labels.json").read_text()) == LABELS
    model, tokenizer, _, _ = load_run(wd)
    texts = ["w3 w11 w40", "w3 w52 w10", "w3 w99 w12 w33 w44"]
    ours = classify(model, [tokenizer(t)["input_ids"] for t in texts], batch_size=4, pad_id=tokenizer.pad_token_id)
    tok = load_tokenizer(tiny_model_dir)
    base = transformers.AutoModelForSequenceClassification.from_pretrained(
        tiny_model_dir, num_labels=len(LABELS), pad_token_id=tok.pad_token_id, torch_dtype=torch.float32)
    hf = peft.PeftModel.from_pretrained(base, out).eval()
    enc = tok(texts, return_tensors="pt", padding=True)
    with torch.no_grad():
        theirs = hf(**enc).logits.numpy()
    assert np.abs(ours - theirs).max() <= 1e-4


@pytest.mark.long
def test_mean_pooling_reads_the_mean_over_each_packed_example(tiny_model_dir):
    """`pooled` at an example's last token is the mean of its hidden states, in packed rows too; a mean-pooling
    head's logits from `classify` equal the head applied to that mean, and it refuses a transformers export."""
    from ftjax.models.heads import pooled

    h = jax.random.normal(jax.random.key(0), (1, 7, 3))
    positions = jnp.asarray([[0, 1, 2, 0, 1, 2, 3]])  # two packed examples: tokens 0-2 and 3-6
    out = pooled(h, positions)
    np.testing.assert_allclose(out[0, 2], h[0, :3].mean(0), rtol=1e-6)
    np.testing.assert_allclose(out[0, 6], h[0, 3:].mean(0), rtol=1e-6)
    np.testing.assert_allclose(out[0, 4], h[0, 3:5].mean(0), rtol=1e-6)

    model = M.from_pretrained(tiny_model_dir)
    add_head(model, LABELS, pooling="mean")
    prompts = [[1, 20, 30, 40], [1, 21]]
    ours = classify(model, prompts, batch_size=2, pad_id=0)
    for p, logits in zip(prompts, ours):
        ids = jnp.asarray([p])
        hidden, _ = model.hidden_states(ids, positions=jnp.arange(len(p))[None], attention_mask=jnp.ones_like(ids))
        np.testing.assert_allclose(logits, model.heads["classification"](hidden[0].mean(0)), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="mean-pooling head has no transformers equivalent"):
        M.save_pretrained(model, "/tmp/never_written_mean_pool")


@pytest.mark.long
def test_mean_pooled_loss_is_the_same_packed_or_not(tiny_model_dir):
    from ftjax.loss import target_positions
    from ftjax.train.step import _loss_sums

    model = M.from_pretrained(tiny_model_dir)
    add_head(model, LABELS, pooling="mean")
    examples = [([1, 20, 30], 1), ([1, 21, 31, 41], 2)]

    def batch(rows):  # rows: [[(ids, label), ...] per row]; the target sits at each example's last token
        width = max(sum(len(i) for i, _ in r) for r in rows)
        out = {k: np.zeros((len(rows), width), np.int32) for k in ("inputs", "targets", "positions", "segment_ids")}
        mask, loss_mask = np.zeros((len(rows), width), bool), np.zeros((len(rows), width), bool)
        for j, r in enumerate(rows):
            t = 0
            for s, (ids, label) in enumerate(r):
                n = len(ids)
                out["inputs"][j, t:t + n], out["positions"][j, t:t + n] = ids, np.arange(n)
                out["segment_ids"][j, t:t + n], mask[j, t:t + n] = s + 1, True
                out["targets"][j, t + n - 1], loss_mask[j, t + n - 1] = label, True
                t += n
        out["attention_mask"] = mask
        out["index"], out["valid"] = target_positions(loss_mask)
        return out

    packed = _loss_sums(model, batch([examples]), 8, "classification", 0.0)
    padded = _loss_sums(model, batch([[e] for e in examples]), 8, "classification", 0.0)
    np.testing.assert_allclose(float(packed[0]), float(padded[0]), rtol=1e-5)
    assert float(packed[1]) == float(padded[1]) == 2
