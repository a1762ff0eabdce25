"""ftjax sweep on Optuna: grids run every point once, pruning, resuming a killed sweep, workers sharing one
storage, reproducible random/TPE sweeps, reports, and bad sweep configs. The sweep logic runs against
tests/fake_train.py (same command line, files and signals as `ftjax train`, a curve set by the settings); one
test runs real `ftjax train` trials end to end."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("optuna")

from conftest import ROOT, run_ftjax, write_rows  # noqa: E402

from ftjax.io import write_json  # noqa: E402
from ftjax.sweep import config as sweep_config  # noqa: E402
from ftjax.sweep import trial as trials  # noqa: E402
from ftjax.sweep.study import sweep  # noqa: E402
from ftjax.workdir import read_metrics  # noqa: E402

FAKE = Path(__file__).with_name("fake_train.py")


@pytest.fixture(scope="module")
def overrides(tiny_model_dir, tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("sweep_data")
    rng = np.random.RandomState(0)
    rows = [{"prompt": f"w3 w{a} w{a + 1}", "completion": f" w{a % 7 + 1} w5"} for a in rng.randint(10, 100, 40)]
    return (f"model.path={tiny_model_dir} data.train={write_rows(root / 'train.jsonl', rows[:32])} "
            f"data.validation={write_rows(root / 'val.jsonl', rows[32:])}")


def block(overrides: str, **kw):
    b = sweep_config.default_config()
    b.update(base=str(ROOT / "configs" / "sft.py:tiny"), overrides=overrides, **kw)
    return b


@pytest.fixture
def fake(monkeypatch):
    monkeypatch.setattr(trials, "command", fake_command)


def fake_command(base, workdir, settings):
    return [sys.executable, str(FAKE), f"--workdir={workdir}", *(f"--config.{k}={v}" for k, v in settings.items())]


def worker(overrides: str, space: str, folder: Path) -> str:
    """A `python -c` sweep worker on the fake trainer that writes the report when it is done."""
    return textwrap.dedent(f"""
        import sys; sys.path.insert(0, {str(ROOT / 'tests')!r})
        from pathlib import Path
        from test_sweep import block, fake_command
        from ftjax.sweep import trial; trial.command = fake_command
        from ftjax.sweep.report import write_report
        from ftjax.sweep.study import sweep
        b = block({overrides!r}, space={space!r})
        write_report(*sweep(b, {str(folder)!r})[:1], b, Path({str(folder)!r}), "loss", "minimize")
    """)


def results(folder: Path) -> list[dict]:
    with (folder / "results.csv").open() as f:
        return list(csv.DictReader(f))


def starts(workdir: Path) -> list[dict]:
    return [json.loads(line) for line in (workdir / "starts.jsonl").read_text().splitlines()]


def test_a_grid_runs_every_point_once_and_prunes_the_worse(fake, overrides, tmp_path, monkeypatch):
    from ftjax.sweep.report import write_report

    monkeypatch.setenv("FAKE_STEP_S", "0.3")  # slow enough for the sweep to see each evaluation while it runs
    b = block(overrides, space="train.learning_rate=0.1|0.2|0.3", pruner="median", startup_trials=1)
    study, metric, direction = sweep(b, tmp_path)
    assert (metric, direction) == ("loss", "minimize")  # the base config's early-stopping metric
    states = [t.state.name for t in study.trials]
    assert states == ["COMPLETE", "PRUNED", "PRUNED"]  # each worse than the first at its first evaluation
    assert [t.user_attrs["pruned_at"] for t in study.trials[1:]] == [2, 2]
    assert [t.params["train.learning_rate"] for t in study.trials] == [0.1, 0.2, 0.3]
    assert study.trials[0].value == pytest.approx(0.1 + 1 / 6)  # at the best checkpoint
    assert sweep(b, tmp_path)[0].trials == study.trials  # rerun: nothing left to run
    paths = write_report(study, b, tmp_path, metric, direction)
    assert {p.name for p in paths} >= {"results.csv", "results.md", "best_config.py", "best.json", "slice.png"}
    assert [r["state"] for r in results(tmp_path)] == ["complete", "pruned", "pruned"]
    from ftjax.config import load_config_file

    best = load_config_file(tmp_path / "best_config.py")  # runnable: the base config with the best setting
    assert best.train.learning_rate == 0.1 and best.train.steps == 8 and str(best.model.path) in overrides


def test_also_tables_more_metrics_read_at_each_trials_best_checkpoint(fake, overrides, tmp_path):
    """sweep.also (a mixture's other task, say): each named metric as logged at the step the trial is judged
    at, per trial in results.csv and as mean and std per setting in results.md; a name training does not log
    is a one-line error before any trial runs."""
    import math

    from ftjax.sweep.report import write_report

    b = block(overrides, space="train.learning_rate=0.1|0.2 train.seed=0|1", also="perplexity")
    study, metric, direction = sweep(b, tmp_path)
    write_report(study, b, tmp_path, metric, direction)
    rows = results(tmp_path)
    assert len(rows) == 4
    for r in rows:  # best step = the last (6), where val_perplexity = exp(val_loss)
        assert float(r["perplexity"]) == pytest.approx(math.exp(float(r["value"])))
    table = (tmp_path / "results.md").read_text()
    assert "| train.learning_rate | loss | std | n | perplexity | perplexity std |" in table
    low = [math.exp(0.1 + 0.01 * seed + 1 / 6) for seed in (0, 1)]
    assert f"| 0.1 | {0.1 + 0.005 + 1 / 6:.4g} | " in table and f"| 2 | {sum(low) / 2:.4g} | " in table
    with pytest.raises(ValueError, match="sweep.also='bleu': training does not log val_bleu"):
        sweep(block(overrides, space="train.learning_rate=0.1|0.2", also="perplexity,bleu"), tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


@pytest.mark.long
def test_a_killed_sweep_resumes_without_rerunning_finished_trials(overrides, tmp_path):
    """Kill the sweep process (SIGKILL) during its second trial; the rerun resumes that trial in its workdir
    from where it stopped and runs the third; the first ran once."""
    script = worker(overrides, "train.learning_rate=0.1|0.2|0.3", tmp_path)
    env = {"FAKE_STEP_S": "0.3", "PATH": "/usr/bin:/bin"}
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    second = tmp_path / "trials" / "0001" / "metrics.jsonl"
    deadline = time.time() + 120
    while not (second.is_file() and second.read_text().count("\n") >= 2) and time.time() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, check=True, timeout=120)
    rows = results(tmp_path)  # the queued third trial first, then the killed one queued again (trial 3)
    assert [(r["trial"], r["state"], r["train.learning_rate"], r["workdir"]) for r in rows] == [
        ("0", "complete", "0.1", "trials/0000"), ("2", "complete", "0.3", "trials/0002"),
        ("3", "complete", "0.2", "trials/0001")]
    assert len(starts(tmp_path / "trials" / "0000")) == 1
    again = starts(tmp_path / "trials" / "0001")
    assert len(again) == 2 and again[1]["from_step"] >= 2  # resumed where the killed process stopped


def test_two_workers_share_one_study_without_duplicates(overrides, tmp_path):
    script = worker(overrides, "train.learning_rate=0.1|0.2|0.3 train.seed=0|1", tmp_path)
    workers = [subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stderr=subprocess.PIPE, text=True)
               for _ in range(2)]
    for w in workers:
        assert w.wait(timeout=180) == 0, w.stderr.read()
    import optuna

    study = optuna.load_study(study_name=tmp_path.name, storage=f"sqlite:///{tmp_path / 'study.db'}")
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    points = [(t.params["train.learning_rate"], t.params["train.seed"]) for t in done]
    assert sorted(points) == [(a, s) for a in (0.1, 0.2, 0.3) for s in (0, 1)]
    assert len({t.user_attrs["workdir"] for t in done}) == 6
    assert all(len(starts(tmp_path / t.user_attrs["workdir"])) == 1 for t in done)


@pytest.mark.parametrize("sampler", [pytest.param("random", marks=pytest.mark.long), "tpe"])
def test_random_and_tpe_sweeps_repeat_by_seed(fake, overrides, tmp_path, sampler):
    def params(folder, seed):
        b = block(overrides, space="train.learning_rate=logfloat:0.01:1 train.seed=0|1|2", sampler=sampler,
                  trials=4, seed=seed)
        return [t.params for t in sweep(b, folder)[0].trials]

    first, again, other = params(tmp_path / "a", 3), params(tmp_path / "b", 3), params(tmp_path / "c", 4)
    assert first == again and first != other and len(first) == 4


def test_the_report_averages_over_seeds(fake, overrides, tmp_path):
    from ftjax.sweep.report import write_report

    b = block(overrides, space="train.learning_rate=0.1|0.3 train.seed=0|1")
    study, metric, direction = sweep(b, tmp_path)
    paths = write_report(study, b, tmp_path, metric, direction)
    table = (tmp_path / "results.md").read_text()
    assert "| train.learning_rate | loss | std | n |" in table and "ablation.png" in {p.name for p in paths}
    best = json.loads((tmp_path / "best.json").read_text())
    assert best["train.learning_rate"] == 0.1 and best["n"] == 2
    assert best["mean"] == pytest.approx(0.1 + 0.005 + 1 / 6) and best["std"] == pytest.approx(0.01 / 2 ** 0.5)


def test_the_data_plot_pools_each_arms_seeds_across_sweeps(tmp_path):
    """experiments/sweeps/data_plot.py: seed 0's sweep (no seed column) and seeds 1-2's pool per arm."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("data_plot", ROOT / "experiments" / "sweeps" / "data_plot.py")
    data_plot = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(data_plot)
    key = data_plot.KEY
    for folder, header, rows in (
            ("s0", ["trial", "state", key, "value", "steps"], [[0, "complete", "10,0", 67.5, 60],
                                                                 [1, "complete", "30,0.4", 30.0, 60]]),
            ("s12", ["trial", "state", key, "train.seed", "value", "steps"],
             [[0, "complete", "10,0", 1, 69.5, 60], [1, "failed", "10,0", 2, "", 60],
              [2, "complete", "30,0.4", 1, 32.0, 60], [3, "complete", "30,0.4", 2, 34.0, 60]])):
        (tmp_path / folder).mkdir()
        with open(tmp_path / folder / "results.csv", "w", newline="") as f:
            csv.writer(f).writerows([header, *rows])
    arms, steps = data_plot.trials_by_arm([str(tmp_path / "s0"), str(tmp_path / "s12")])
    assert arms == {"10,0": [67.5, 69.5], "30,0.4": [30.0, 32.0, 34.0]} and steps == 60  # the failed trial left out
    with open(tmp_path / "s12" / "results.csv", "a", newline="") as f:
        csv.writer(f).writerow([4, "complete", "30,0", 1, 77.0, 120])
    with pytest.raises(ValueError, match="trials of different lengths"):
        data_plot.trials_by_arm([str(tmp_path / "s0"), str(tmp_path / "s12")])
    with pytest.raises(FileNotFoundError, match="run the sweep first"):
        data_plot.trials_by_arm([str(tmp_path / "none")])


@pytest.mark.long
def test_studies_of_other_seeds_report_together(fake, overrides, tmp_path):
    """experiments/multitask/mixture_table.py: a seed added in a study of its own (a grid cannot grow) averages
    with the first study's seeds as one study over both would."""
    from ftjax.sweep.report import write_report

    for seeds, folder in (("0|1", "a"), ("2", "b")):
        b = block(overrides, space=f"train.seed={seeds} train.learning_rate=0.1|0.3", also="perplexity")
        write_report(*sweep(b, tmp_path / folder)[:1], b, tmp_path / folder, "loss", "minimize")
        for row in results(tmp_path / folder):  # what a later `ftjax eval` of each trial would have written
            bleu = {"value": 50 + int(row["train.seed"]) + 10 * float(row["train.learning_rate"])}
            write_json(tmp_path / folder / row["workdir"] / "eval" / "v.json", {"metrics": {"bleu": bleu}})
    script = ROOT / "experiments" / "multitask" / "mixture_table.py"
    out = subprocess.run([sys.executable, str(script), str(tmp_path / "a"), str(tmp_path / "b"),
                          f"--plot={tmp_path / 'p.png'}", "--eval=eval/v.json:bleu"],
                         capture_output=True, text=True, check=True).stdout
    assert "| train.learning_rate | loss | perplexity | bleu | n | minutes |" in out
    mean = 0.1 + 0.01 + 1 / 6  # the fake trainer's loss: rate + seed / 100 + 1/6 at its best checkpoint, seeds 0-2
    assert f"| 0.1 | {mean:.2f} ± 0.01 |" in out and out.count(" | 3 | ") == 2 and (tmp_path / "p.png").is_file()
    assert "| 52.000 ± 1.000 | 3 |" in out and "| 54.000 ± 1.000 | 3 |" in out  # seeds 0-2, rates 0.1 and 0.3
    missing = subprocess.run([sys.executable, str(script), str(tmp_path / "a"), "--eval=eval/v.json:rouge"],
                             capture_output=True, text=True)
    assert missing.returncode != 0 and "no metric 'rouge' (it has bleu)" in missing.stderr
    twice = subprocess.run([sys.executable, str(script), str(tmp_path / "a"), str(tmp_path / "a")],
                           capture_output=True, text=True)
    assert twice.returncode != 0 and "a folder is given twice" in twice.stderr


def test_linked_keys_set_each_key_of_a_choice(fake, overrides, tmp_path):
    from ftjax.sweep.report import write_report

    b = block(overrides, space="train.learning_rate,train.seed=0.1,1|0.3,0")
    study, metric, direction = sweep(b, tmp_path)
    assert [t.value for t in study.trials] == pytest.approx([0.1 + 0.01 + 1 / 6, 0.3 + 1 / 6])
    paths = write_report(study, b, tmp_path, metric, direction)
    assert "| train.learning_rate,train.seed | loss |" in (tmp_path / "results.md").read_text()
    assert "ablation.png" in {p.name for p in paths}  # choices, not numbers: drawn as bars
    assert "SETTINGS = " in (best := (tmp_path / "best_config.py").read_text())
    assert "'train.learning_rate': 0.1, 'train.seed': 1}" in best


def test_failed_trials_stay_failed_unless_retried(fake, overrides, tmp_path, monkeypatch):
    b = block(overrides, space="train.learning_rate=0.1|0.2")
    monkeypatch.setenv("FAKE_FAIL_LR", "0.2")
    study = sweep(b, tmp_path)[0]
    assert [t.state.name for t in study.trials] == ["COMPLETE", "FAIL"]
    assert "planted failure" in study.trials[1].user_attrs["error"]
    monkeypatch.delenv("FAKE_FAIL_LR")
    assert len(sweep(b, tmp_path)[0].trials) == 2  # a plain rerun: nothing left to run
    study = sweep(b, tmp_path, retry=True)[0]
    assert [t.state.name for t in study.trials] == ["COMPLETE", "FAIL", "COMPLETE"]
    assert study.trials[2].params == study.trials[1].params and study.trials[2].user_attrs["retry_of"] == 1
    assert study.trials[2].user_attrs["workdir"] == "trials/0002"  # fresh, not the failed trial's
    assert len(sweep(b, tmp_path, retry=True)[0].trials) == 3  # nothing failed is left to retry
    from ftjax.sweep.report import write_report

    write_report(study, b, tmp_path, "loss", "minimize")
    assert [r["state"] for r in results(tmp_path)] == ["complete", "complete"]  # the retry replaces the failure


@pytest.mark.long
def test_real_trials_end_to_end_through_the_command(overrides, tmp_path):
    """A configs/sweeps/*.py-style file through the command: a real `ftjax train` trial of the tiny model (the
    first point of the grid, sweep.trials=1), judged on a metric other than the early-stopping one, and the
    report with its costs."""
    config = tmp_path / "rank.py"
    config.write_text(textwrap.dedent(f"""
        from ftjax.sweep import config
        def get_config():
            c = config.default_config()
            c.update(base={str(ROOT / 'configs' / 'sft.py:tiny')!r}, overrides={overrides!r},
                     space="peft.rank=4|2", trials=1, metric="token_accuracy", direction="maximize")
            return c
    """))
    out = run_ftjax("sweep", f"--config={config}", f"--workdir={tmp_path / 's'}", timeout=600).stdout
    rows = results(tmp_path / "s")
    assert [(r["state"], r["peft.rank"]) for r in rows] == [("complete", "4")]
    second = tmp_path / "s" / "trials" / "0000"
    summary = json.loads((second / "summary.json").read_text())
    assert json.loads((second / "config.json").read_text())["peft"]["rank"] == 4
    at_best = [r for r in read_metrics(second) if r["step"] == summary["best_step"] and "val_loss" in r]
    assert summary["metric"] == "val_loss"  # the base config's early stopping picks the checkpoint
    assert float(rows[0]["value"]) == pytest.approx(at_best[0]["val_token_accuracy"])
    assert "best: token_accuracy=" in out and (tmp_path / "s" / "plots" / "slice.png").is_file()
    assert all(float(r["trainable"]) > 0 and float(r["minutes"]) > 0 for r in rows)


@pytest.mark.parametrize("kw,message", [
    ({"space": "peft.rnak=2|4"}, "sweep.space: peft.rnak is not a key of the base config"),
    ({"space": "train.learning_rate=logfloat:0:1"}, "LOW > 0 on a log scale"),
    ({"space": "train.learning_rate=float:0.1:1"}, "grid takes choices only"),
    ({"space": "peft.rank=2|2"}, "a value is repeated"),
    ({"space": "peft.rank=2|x"}, "sweep.space: peft.rank='x'"),
    ({"space": "peft.rank"}, "cannot read 'peft.rank'"),
    ({"space": "train.steps=2|4"}, "both in overrides and in space"),
    ({"space": "peft.rank,train.learning_rate=2,0.1|4"}, "each choice needs 2 values"),
    ({"space": "peft.rank,train.learning_rate=2,0.1|4,0.2 peft.rank=8"}, "'peft.rank' is given twice"),
    ({"space": "peft.rnak,train.learning_rate=2,0.1"}, "peft.rnak is not a key"),
    ({"space": "peft.rank=2|4", "sampler": "tpe"}, "needs sweep.trials >= 1"),
    ({"space": "peft.rank=2|4", "metric": "bleu"}, "training does not log val_bleu"),
])
def test_bad_sweeps_are_one_line_errors(overrides, tmp_path, kw, message):
    b = block(overrides + " train.steps=4", **kw)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("|", r"\|")):
        sweep(b, tmp_path / "s")
    assert not (tmp_path / "s").exists()  # nothing written


def test_label_noise_flips_the_asked_fraction_the_same_way_every_time():
    import ml_collections

    from ftjax.data.config import default_config, with_label_noise

    rows = [{"text": f"q{i}", "label": "abc"[i % 3]} for i in range(100)]
    noisy = with_label_noise(rows, 0.2, None)
    assert sum(a["label"] != b["label"] for a, b in zip(rows, noisy)) == 20
    assert noisy == with_label_noise(rows, 0.2, None) and rows[0]["label"] == "a"  # seeded; input untouched
    assert isinstance(default_config(), ml_collections.ConfigDict)
    with pytest.raises(ValueError, match="needs classification rows"):
        with_label_noise([{"prompt": "p", "completion": "c"}] * 4, 0.5, None)


@pytest.mark.long
def test_select_base_ranks_a_planted_good_candidate_first(tiny_model_dir, tmp_path):
    """Two candidates: the tiny random model, and the same model fine-tuned on the task and merged (planted
    good); select-base scores both on the validation split and ranks the fine-tuned one first."""
    from conftest import sft_config

    from ftjax.sweep.base import compare
    from ftjax.train import loop

    rng = np.random.RandomState(2)
    rows = [{"prompt": f"w3 w{a} w{a + 1}", "completion": " w5 w6"} for a in rng.randint(10, 100, 40)]
    data = {"data.train": write_rows(tmp_path / "train.jsonl", rows[:32]),
            "data.validation": write_rows(tmp_path / "val.jsonl", rows[32:])}
    loop.main(sft_config(**{"model.path": str(tiny_model_dir), **data, "train.steps": 24}), tmp_path / "run")
    good = tmp_path / "good"
    run_ftjax("export", f"--workdir={tmp_path / 'run'}", "--format=merged", f"--out={good}")
    out = tmp_path / "select"  # what `ftjax select-base --candidates=A,B ...` runs: a process per candidate
    compare([str(tiny_model_dir), str(good)], [f"--config={ROOT / 'configs' / 'sft.py:tiny'}",
                                                *(f"--config.{k}={v}" for k, v in data.items()),
                                                "--metric=exact_match"], out, "exact_match", "maximize")
    ranking = json.loads((out / "select_base.json").read_text())["ranking"]
    assert [r["candidate"] for r in ranking] == [str(good), str(tiny_model_dir)]
    assert ranking[0]["value"] >= 90 > ranking[1]["value"] and ranking[0]["parameters"] == ranking[1]["parameters"]
    assert all(r["tokens_per_s"] > 0 and r["peak_memory_gb"] > 0 for r in ranking)
    assert f"| 1 | {good} |" in (out / "select_base.md").read_text()


@pytest.mark.parametrize("name", sorted(p.stem for p in (ROOT / "configs" / "sweeps").glob("*.py")))
def test_every_preset_is_a_valid_sweep(name, tmp_path, monkeypatch):
    from ftjax.config import load_config_file
    from ftjax.objective import validation_name
    from ftjax.sweep.space import parse_space
    from ftjax.train.config import logged_metrics
    from ftjax.sweep.study import also, base_config, goal, plan

    (tmp_path / "categories.json").write_text(json.dumps(["card_arrival", "card_linking", "top_up_failed"]))
    monkeypatch.setenv("BANKING77_DIR", str(tmp_path))  # the presets' Banking77 configs read its label set
    path = ROOT / "configs" / "sweeps" / f"{name}.py"
    with pytest.raises(ValueError, match="choose from: ") as unknown:  # the message lists the other variants
        load_config_file(path, "no-such-variant")
    variants = [None] + [v for v in str(unknown.value).rpartition(": ")[2].split(", ") if v != "(none)"]
    for variant in variants:
        b = load_config_file(path, variant)
        sweep_config.check(b)
        config = base_config(b)  # every key and value checked against the base config
        metric, direction = goal(b, config)
        assert metric.rpartition("/")[2] == "accuracy" and direction == "maximize"  # Banking77's objective
        assert all(validation_name(m) in logged_metrics(config) for m in also(b, config))
        if variant is None:  # the full presets: several points, each over seeds (cpu variants may use one)
            assert "train.seed" in parse_space(b.space) and len(plan(b, parse_space(b.space))) >= 6


def test_rank_puts_failures_last_and_breaks_ties_by_size():
    from ftjax.sweep.base import rank

    results = [{"candidate": "big", "value": 80.0, "parameters": 10}, {"candidate": "broken", "value": None},
               {"candidate": "small", "value": 80.0, "parameters": 5}, {"candidate": "best", "value": 90.0,
                                                                        "parameters": 99}]
    assert [r["candidate"] for r in rank(results, "maximize")] == ["best", "small", "big", "broken"]
    assert [r["candidate"] for r in rank(results, "minimize")][:2] == ["small", "big"]
