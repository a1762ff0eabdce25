"""Ensembles of classification-head runs: `ftjax eval` of an ensemble predicts the label with the highest mean
member probability, the command refuses members that cannot be combined, and an ensemble folder is never taken
for a training run."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from conftest import run_ftjax, sft_config, write_csv
from ftjax.eval.ensemble import Ensemble, make_ensemble
from ftjax.workdir import read_config

LABELS = ["alpha", "beta", "gamma"]


def rows(rng: np.random.RandomState, n: int) -> list[tuple[str, str]]:
    """(text, category): the category is which keyword (w10, w11, w12) the text holds, among filler words."""
    out = []
    for _ in range(n):
        k = rng.randint(3)
        noise = [f"w{rng.randint(20, 100)}" for _ in range(rng.randint(0, 4))]
        out.append((" ".join(["w3", *noise, f"w{10 + k}"]), LABELS[k]))
    return out


@pytest.fixture(scope="module")
def members(tiny_model_dir, tmp_path_factory):
    """Two short classification-head runs of one task at seeds 0 and 1 (undertrained on purpose: they disagree)."""
    from ftjax.train import loop

    root = tmp_path_factory.mktemp("ensemble")
    rng = np.random.RandomState(0)
    paths = {name: write_csv(root / f"{name}.csv", rows(rng, n)) for name, n in
             (("train", 64), ("validation", 12), ("test", 40))}
    runs = []
    for seed in (0, 1):
        config = sft_config(**{"model.path": str(tiny_model_dir), "data.train": paths["train"],
                               "data.validation": paths["validation"], "data.columns": "label=category",
                               "data.format": "classification", "data.labels": ",".join(LABELS),
                               "head.type": "classification", "train.steps": 8, "train.batch_size": 8,
                               "train.learning_rate": 3e-2, "train.eval_every": 8, "checkpoint.every": 8,
                               "train.seed": seed})
        loop.main(config, root / f"s{seed}")
        runs.append(str(root / f"s{seed}"))
    return runs, paths


def test_eval_of_an_ensemble_picks_the_highest_mean_member_probability(members, tmp_path):
    from ftjax.models.heads import classify
    from ftjax.train.restore import load_run

    runs, paths = members
    ens = tmp_path / "ens"
    run_ftjax("ensemble", f"--workdir={ens}", f"--members={','.join(runs)}")
    run_ftjax("eval", f"--workdir={ens}", f"--config.data.test={paths['test']}", f"--out={tmp_path / 'out'}")
    report = json.loads((tmp_path / "out" / "test.json").read_text())
    predictions = [json.loads(line) for line in (tmp_path / "out" / "test_predictions.jsonl").open()]
    assert report["ensemble"]["members"] == runs and report["ensemble"]["steps"] == [8, 8]
    # the same by hand: each member's softmax over its head's logits, averaged, argmax
    probs, singles = [], []
    for run in runs:
        model, tokenizer, _, _ = load_run(run)
        prompts = [tokenizer(p["prompt"])["input_ids"] for p in predictions]
        probs.append(np.asarray(jax.nn.softmax(classify(model, prompts, 8, tokenizer.pad_token_id), axis=-1)))
        singles.append([LABELS[i] for i in probs[-1].argmax(-1)])
    want = [LABELS[i] for i in (sum(probs) / 2).argmax(-1)]
    assert [p["prediction"] for p in predictions] == want
    assert singles[0] != singles[1]  # the members disagree somewhere, so the mean decided those rows
    accuracy = np.mean([w == p["label"] for w, p in zip(want, predictions)]) * 100
    assert report["metrics"]["accuracy"]["value"] == pytest.approx(accuracy)


def test_bad_members_are_refused_before_anything_is_written(members, tmp_path):
    runs, _ = members
    with pytest.raises(ValueError, match="at least two member runs"):
        make_ensemble(tmp_path / "e", runs[:1])
    with pytest.raises(ValueError, match="listed twice"):
        make_ensemble(tmp_path / "e", [runs[0], runs[0]])
    with pytest.raises(ValueError, match="has no checkpoint at step 5"):
        make_ensemble(tmp_path / "e", runs, "5")  # the members saved step 8 only
    with pytest.raises(FileNotFoundError, match="no config.json"):
        make_ensemble(tmp_path / "e", [runs[0], str(tmp_path / "missing")])
    other = tmp_path / "other_labels"  # a run of another label set (its config is all the check reads)
    other.mkdir()
    config = read_config(runs[1]).to_dict()
    config["data"]["labels"] = "alpha,beta"
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="has no checkpoints yet"):
        make_ensemble(tmp_path / "e", [runs[0], str(other)])
    (other / "checkpoints" / "8").mkdir(parents=True)
    with pytest.raises(ValueError, match="another label set"):
        make_ensemble(tmp_path / "e", [runs[0], str(other)])
    config["data"]["labels"], config["head"]["type"] = ",".join(LABELS), "lm"
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="predicts with its lm head"):
        make_ensemble(tmp_path / "e", [runs[0], str(other)])
    assert not (tmp_path / "e").exists()
    proc = run_ftjax("ensemble", f"--workdir={runs[0]}", f"--members={','.join(runs)}", check=False)
    assert proc.returncode == 2 and "holds a run already" in proc.stderr  # never overwrites a run


def test_an_ensemble_folder_is_not_a_training_run(members, tmp_path):
    from ftjax.train import loop
    from ftjax.train.restore import load_run

    runs, _ = members
    make_ensemble(tmp_path / "ens", runs, "last")
    assert Ensemble(read_config(tmp_path / "ens"), load_run).checkpoint == "last"
    with pytest.raises(ValueError, match="is an ensemble of 2 runs"):
        load_run(tmp_path / "ens")  # export, generate, transfer: refused with the reason
    with pytest.raises(ValueError, match="holds an ensemble"):
        loop.main(read_config(runs[0]), tmp_path / "ens")


@pytest.mark.long
def test_a_regression_ensemble_predicts_the_mean_value(tiny_model_dir, tmp_path):
    from ftjax.eval.runner import evaluate_split
    from ftjax.models.heads import classify
    from ftjax.train import loop
    from ftjax.train.restore import load_run

    rng = np.random.RandomState(1)
    data = [(f"w3 w{10 + k} w{rng.randint(20, 60)}", 0.5 * k) for k in rng.randint(5, size=48)]
    train = write_csv(tmp_path / "train.csv", data[:40], header=("text", "value"))
    runs = []
    for seed in (0, 1):
        config = sft_config(**{"model.path": str(tiny_model_dir), "data.train": train, "data.validation": train,
                               "data.format": "regression", "head.type": "regression", "train.steps": 4,
                               "train.batch_size": 8, "train.learning_rate": 1e-2, "train.eval_every": 4,
                               "checkpoint.every": 4, "train.early_stopping.metric": "val_mse", "train.seed": seed})
        loop.main(config, tmp_path / f"r{seed}")
        runs.append(str(tmp_path / f"r{seed}"))
    make_ensemble(tmp_path / "ens", runs)
    config = read_config(tmp_path / "ens")
    rows = [{"text": text, "value": value} for text, value in data[40:]]
    _, predictions = evaluate_split(Ensemble(config, load_run), load_run(runs[0])[1], rows, config,
                                    n_resamples=0, progress=False)
    values = []
    for run in runs:
        model, tokenizer, _, _ = load_run(run)
        values.append(classify(model, [tokenizer(r["text"])["input_ids"] for r in rows], 8, tokenizer.pad_token_id,
                               "regression")[:, 0])
    assert values[0] != pytest.approx(values[1])  # the seeds differ, so the mean is not either member's
    np.testing.assert_allclose([float(p["prediction"]) for p in predictions], (values[0] + values[1]) / 2,
                               rtol=1e-6)
