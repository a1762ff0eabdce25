"""lm-evaluation-harness on ftjax: the same requests scored by ftjax's HarnessLM and by lm-eval's own Hugging Face
backend agree (log-likelihoods, greedy flags, generations, a task's accuracy), and `ftjax eval --harness` runs
a local YAML task on a trained run and its base model (skipped without the harness extra)."""

from __future__ import annotations

import json

import numpy as np
import pytest

lm_eval = pytest.importorskip("lm_eval")
pytest.importorskip("torch")

import ftjax.models as M  # noqa: E402
from conftest import run_ftjax, sft_config, write_rows  # noqa: E402
from ftjax.eval.harness import harness_lm, run_harness  # noqa: E402
from ftjax.models.tokenizer import load_tokenizer  # noqa: E402

YAML = """task: tiny_words
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{question}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: "{{{{label}}}}"
metric_list:
  - metric: acc
"""


@pytest.fixture
def task_dir(tmp_path):
    rng = np.random.RandomState(0)
    rows = [{"question": f"w3 w{a} w{a + 1}", "choices": [f" w{a + 2}", f" w{a + 9} w4", f" w{a % 7 + 1}"],
             "label": int(rng.randint(3))} for a in rng.randint(10, 90, 12)]
    data = tmp_path / "tiny.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    folder = tmp_path / "tasks"
    folder.mkdir()
    (folder / "tiny_words.yaml").write_text(YAML.format(data=data))
    return folder


def test_scores_and_generations_equal_lm_evals_hf_backend(tiny_model_dir, task_dir):
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    ours = harness_lm(M.from_pretrained(tiny_model_dir), load_tokenizer(tiny_model_dir), batch_size=4)
    theirs = HFLM(pretrained=str(tiny_model_dir), batch_size=4, device="cpu", dtype="float32")
    pairs = [("w3 w5", " w7"), ("w3 w5 ", "w7 w8"), ("", "w9 w10"), ("w11", " w12 w13 w14")]
    asks = [Instance("loglikelihood", {}, pair, i) for i, pair in enumerate(pairs)]
    mine, ref = ours.loglikelihood(asks), theirs.loglikelihood(asks)
    np.testing.assert_allclose([m[0] for m in mine], [r[0] for r in ref], atol=1e-4)
    assert [m[1] for m in mine] == [r[1] for r in ref]
    gen = [Instance("generate_until", {}, ("w3 w5 w7", {"until": ["w9"], "max_gen_toks": 6}), 0)]
    assert ours.generate_until(gen) == theirs.generate_until(gen)


@pytest.mark.long
def test_a_tasks_accuracy_equals_lm_evals(tiny_model_dir, task_dir):
    from lm_eval.models.huggingface import HFLM

    ours = harness_lm(M.from_pretrained(tiny_model_dir), load_tokenizer(tiny_model_dir), batch_size=4)
    theirs = HFLM(pretrained=str(tiny_model_dir), batch_size=4, device="cpu", dtype="float32")
    acc = run_harness(ours.model, ours.tokenizer, ["tiny_words"], include=str(task_dir))["tiny_words"]["acc"]
    theirs_acc = lm_eval.simple_evaluate(model=theirs, tasks=["tiny_words"], task_manager=lm_eval.tasks.TaskManager(
        include_path=str(task_dir)))["results"]["tiny_words"]["acc,none"]
    assert acc == pytest.approx(theirs_acc)


@pytest.mark.long
def test_eval_harness_on_a_run_and_its_base(tiny_model_dir, task_dir, tmp_path):
    from ftjax.train import loop

    rows = [{"prompt": f"w3 w{a}", "completion": f" w{a % 7 + 1} w5"} for a in range(10, 30)]
    config = sft_config(**{"model.path": str(tiny_model_dir), "train.steps": 2, "train.eval_every": 2,
                           "data.train": write_rows(tmp_path / "t.jsonl", rows[:16]),
                           "data.validation": write_rows(tmp_path / "v.jsonl", rows[16:])})
    loop.main(config, tmp_path / "run")
    done = run_ftjax("eval", f"--workdir={tmp_path / 'run'}", "--harness=tiny_words", f"--harness_include={task_dir}",
                     "--baseline", "--split=test")
    report = json.loads((tmp_path / "run" / "eval" / "harness.json").read_text())
    assert 0 <= report["tuned"]["tiny_words"]["acc"] <= 1 and "acc" in report["base"]["tiny_words"]
    assert "change" in done.stdout
    with pytest.raises(ValueError, match="'no_such_task' is not an lm-eval task"):
        run_harness(M.from_pretrained(tiny_model_dir), load_tokenizer(tiny_model_dir), ["no_such_task"])
