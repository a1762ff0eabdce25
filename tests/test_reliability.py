"""Never destroy a run, refuse what would silently corrupt one, give every bad input a one-line answer
(docs/reliability.md lists what each case now gets)."""

from __future__ import annotations

import json
import math
import os
import signal
import stat
import subprocess
import sys
import time

import numpy as np
import pytest

import ftjax.models as M
from conftest import ROOT, run_ftjax, sft_config, write_rows
from ftjax.train import loop
from ftjax.train.guard import RunLock
from ftjax.workdir import Workdir, read_metrics


def rows(rng, n):
    out = []
    for _ in range(n):
        a = rng.randint(10, 100)
        out.append({"prompt": f"w3 w{a} w{a + 1}", "completion": f" w{a % 7 + 1} w5"})
    return out


@pytest.fixture(scope="module")
def data(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("reliability")
    rng = np.random.RandomState(0)
    return {"model.path": str(tiny_model_dir), "data.train": write_rows(root / "train.jsonl", rows(rng, 32)),
            "data.validation": write_rows(root / "val.jsonl", rows(rng, 8))}


def train(data, workdir, **overrides):
    return loop.main(sft_config(**{**data, **overrides}), workdir)


def losses(workdir) -> dict[int, float]:
    return {m["step"]: m["loss"] for m in read_metrics(workdir)}


def snapshot(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --- resume: refuse what changes the run, allow what does not, record every start ---------------------------

@pytest.fixture(scope="module")
def finished(data, tmp_path_factory):
    """A finished 8-step run (checkpoints at 4 and 8), and a byte-for-byte snapshot of its folder."""
    wd = tmp_path_factory.mktemp("finished")
    train(data, wd)
    return wd, snapshot(wd)


@pytest.mark.parametrize("overrides, shown", [
    ({"peft.rank": 8}, "peft.rank: 4 -> 8"),
    ({"train.learning_rate": 0.5}, "train.learning_rate: 0.01 -> 0.5"),
    ({"train.seed": 3}, "train.seed: 0 -> 3"),
    ({"model.dtype": "bfloat16"}, "model.dtype: 'float32' -> 'bfloat16'"),
])
def test_resume_with_another_run_is_refused_and_touches_nothing(data, finished, overrides, shown):
    wd, before = finished
    with pytest.raises(ValueError, match="holds a run with another config") as e:
        train(data, wd, **overrides)
    assert shown in str(e.value)
    assert snapshot(wd) == before  # config.json, metrics, checkpoints, summary: all as they were


def test_rerunning_a_finished_run_keeps_its_results(data, finished, tmp_path):
    import shutil

    wd = tmp_path / "copy"  # a copy: the other tests compare the shared run with its snapshot
    shutil.copytree(finished[0], wd)
    before = snapshot(wd)
    summary = train(data, wd)
    assert summary["final"]["loss"] > 0 and summary["steps"] == 8
    after = snapshot(wd)
    assert {k: v for k, v in after.items() if k != "starts.jsonl"} == \
           {k: v for k, v in before.items() if k != "starts.jsonl"}


def test_safe_changes_resume_and_are_recorded(data, tmp_path):
    train(data, tmp_path, **{"train.steps": 4})
    summary = train(data, tmp_path, **{"train.steps": 6, "train.eval_every": 3, "checkpoint.every": 3})
    assert summary["steps"] == 6 and sorted(losses(tmp_path)) == list(range(1, 7))
    starts = [json.loads(line) for line in Workdir(tmp_path).starts.read_text().splitlines()]
    assert [s["resume"] for s in starts] == [False, True]
    assert starts[1]["changed"]["train.steps"] == [4, 6] and "train.eval_every" in starts[1]["changed"]
    assert json.loads(Workdir(tmp_path).config.read_text())["train"]["steps"] == 6
    assert not Workdir(tmp_path).lock.exists()


def test_a_save_cut_short_is_cleared_when_the_run_resumes(data, tmp_path):
    """A kill during a save leaves orbax's temporary folder (the name it had on a real run); the resumed run
    starts from the last whole checkpoint and removes the leftover."""
    train(data, tmp_path, **{"train.steps": 4})
    leftover = tmp_path / "checkpoints" / "6.orbax-checkpoint-tmp"
    (leftover / "trainable").mkdir(parents=True)
    (leftover / "trainable" / "part").write_bytes(b"half written")
    summary = train(data, tmp_path, **{"train.steps": 8})
    assert summary["steps"] == 8 and sorted(losses(tmp_path)) == list(range(1, 9))
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["4", "8"]


def test_a_changed_adapter_shape_is_an_error_not_unreadable(data, tmp_path):
    """Bypassing the config check (a checkpoint of another shape): the checkpoint is kept, never set aside."""
    from ftjax.train.checkpoints import Checkpoints, ShapeMismatch
    from ftjax.train.setup import setup

    train(data, tmp_path, **{"train.steps": 4})
    run = setup(sft_config(**data, **{"peft.rank": 8}), total_steps=4)
    ckpts = Checkpoints(tmp_path / "checkpoints", keep=3, async_save=False)
    from ftjax.train.checkpoints import abstract

    with pytest.raises(ShapeMismatch, match="another shape"):
        ckpts.restore(abstract(run.state.trainable, run.shardings.trainable),
                      abstract(run.state.opt_state, run.shardings.opt_state))
    ckpts.close()
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["4"]
    assert not (tmp_path / "checkpoints.unreadable").exists()


def test_half_written_last_metrics_line_is_repaired(data, tmp_path):
    train(data, tmp_path, **{"train.steps": 4})
    with Workdir(tmp_path).metrics.open("a") as f:
        f.write('{"step": 5, "loss": 0.4')  # a crash in the middle of a write
    summary = train(data, tmp_path, **{"train.steps": 6})
    assert summary["steps"] == 6 and sorted(losses(tmp_path)) == list(range(1, 7))


def test_corrupt_metrics_line_before_the_end_names_file_and_line(data, tmp_path):
    train(data, tmp_path, **{"train.steps": 4})
    path = Workdir(tmp_path).metrics
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], "garbage", *lines[2:]]) + "\n")
    with pytest.raises(ValueError, match=f"{path}:2: not valid JSON"):
        train(data, tmp_path, **{"train.steps": 6})


# --- one writer per workdir -----------------------------------------------------------------------------------

def test_a_live_lock_refuses_a_second_writer_and_a_stale_one_is_taken_over(data, tmp_path):
    import socket

    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        tmp_path.mkdir(exist_ok=True)
        lock = Workdir(tmp_path).lock
        lock.write_text(json.dumps({"host": socket.gethostname(), "pid": sleeper.pid, "since": "then"}))
        with pytest.raises(FileExistsError, match=f"in use by ftjax train .*pid {sleeper.pid}"):
            train(data, tmp_path, **{"train.steps": 2})
        assert sorted(p.name for p in tmp_path.iterdir()) == ["train.lock"]  # nothing else written
    finally:
        sleeper.kill()
        sleeper.wait()
    assert train(data, tmp_path, **{"train.steps": 2})["steps"] == 2  # the holder died: its lock is stale
    assert not lock.exists()


def test_lock_on_another_host_is_respected(tmp_path):
    (tmp_path / "train.lock").write_text(json.dumps({"host": "elsewhere", "pid": 1, "since": "then"}))
    with pytest.raises(FileExistsError, match="host elsewhere"):
        RunLock(tmp_path / "train.lock").acquire()


def test_a_rejected_run_leaves_no_folder_behind(data, tmp_path, monkeypatch):
    def fails(*args):
        raise ValueError("simulated failure before the first step")

    monkeypatch.setattr(loop, "resume", fails)
    with pytest.raises(ValueError, match="simulated"):
        train(data, tmp_path / "new")
    assert not (tmp_path / "new").exists()


# --- every bad config value: a one-line error naming the key, before anything is read -------------------------

@pytest.mark.parametrize("overrides, message", [
    ({"train.steps": -1}, "train.steps=-1: must be a number >= 0"),
    ({"train.steps": 0, "train.epochs": 0}, "nothing to train"),
    ({"train.learning_rate": -1e-3}, "train.learning_rate=-0.001"),
    ({"train.learning_rate": math.nan}, "train.learning_rate=nan"),
    ({"train.batch_size": 0}, "train.batch_size=0: must be a number >= 1"),
    ({"train.batch_size": -4}, "train.batch_size=-4"),
    ({"train.eval_every": 0}, "train.eval_every=0"),
    ({"checkpoint.every": 0}, "checkpoint.every=0"),
    ({"model.dtype": "float8"}, "model.dtype='float8': choose from float32, bfloat16, float16"),
    ({"model.path": ""}, "model.path is empty"),
    ({"train.early_stopping.metric": "val_bleu"}, "train.early_stopping.metric='val_bleu' is not computed"),
    ({"eval.metrics": "rouge_x"}, "unknown metric 'rouge_x'"),
    ({"data.max_length": 1}, "data.max_length=1"),
    ({"data.format": "poetry"}, "data.format='poetry'"),
])
def test_bad_config_values_are_rejected_up_front(data, tmp_path, overrides, message):
    with pytest.raises(ValueError) as e:
        train(data, tmp_path / "w", **overrides)
    assert message in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "w").exists()


def test_learned_positions_limit_max_length(hf_folder, tmp_path):
    from ftjax.models.config import check_limits

    cfg = M.from_pretrained(hf_folder("gpt2")[1]).config
    check_limits(cfg, 64)
    with pytest.raises(ValueError, match="data.max_length=65 exceeds the 64 positions of this gpt2 model"):
        check_limits(cfg, 65)
    with pytest.raises(ValueError, match=r"data.max_length=60 \+ 20 virtual tokens exceeds"):
        check_limits(cfg, 60, 20)


def test_sampling_rejects_nan():
    from ftjax.models.generate import Sampling

    with pytest.raises(ValueError, match="temperature >= 0"):
        Sampling(temperature=math.nan)


# --- bad files: one line naming the file (and line) -----------------------------------------------------------

def test_bad_data_files_name_file_and_line(tmp_path):
    from ftjax.data.sources import load_rows

    deep = tmp_path / "deep.jsonl"
    deep.write_text('{"prompt": "a", "completion": "b"}\n{"x": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    with pytest.raises(ValueError, match=f"{deep}:2: JSON nested too deeply"):
        load_rows(str(deep))
    latin = tmp_path / "latin.csv"
    latin.write_bytes(b"text,label\nhello,a\ncaf\xe9,b\n")
    with pytest.raises(ValueError, match=f"{latin}:3: not UTF-8 text"):
        load_rows(str(latin))
    jsonl = tmp_path / "latin.jsonl"
    jsonl.write_bytes(b'{"prompt": "a", "completion": "b"}\n{"prompt": "caf\xe9", "completion": "b"}\n')
    with pytest.raises(ValueError, match=f"{jsonl}:2: not UTF-8 text"):
        load_rows(str(jsonl))


def test_broken_model_files_are_named(tiny_model_dir, tmp_path):
    import shutil

    from ftjax.models.tokenizer import load_tokenizer

    broken = tmp_path / "model"
    shutil.copytree(tiny_model_dir, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # truncated download
    with pytest.raises(ValueError, match="model.safetensors.*(cannot be read|not a readable safetensors)"):
        M.from_pretrained(broken)
    (broken / "tokenizer.json").write_text('{"version": "1.0", "model": {')
    with pytest.raises(ValueError, match="its tokenizer files cannot be read"):
        load_tokenizer(broken)
    gguf = tmp_path / "garbled.gguf"
    gguf.write_bytes(b"GGUF" + os.urandom(200))
    with pytest.raises(ValueError, match="garbled.gguf: not a readable GGUF file"):
        M.from_pretrained(gguf)
    with pytest.raises(ValueError, match="no model given"):
        M.from_pretrained("")


def test_eval_falls_back_from_a_corrupt_best_checkpoint(data, tmp_path, caplog):
    from ftjax.train.restore import load_run, pick_step

    train(data, tmp_path)  # checkpoints 4 and 8; best by val_loss
    best = json.loads(Workdir(tmp_path).summary.read_text())["best_step"]
    for f in (tmp_path / "checkpoints" / str(best) / "trainable").rglob("*"):
        if f.is_file():
            f.write_bytes(b"garbage")
    _, _, _, step = load_run(tmp_path, "best")
    older = [s for s in (4, 8) if s < best]
    if older:
        assert step == older[-1] and f"checkpoint at step {best}" in caplog.text
    with pytest.raises(ValueError, match=f"the checkpoint at step {best} is unreadable"):
        load_run(tmp_path, str(best))  # asked for by number: no silent substitute
    from ftjax.train.checkpoints import Checkpoints

    ckpts = Checkpoints(tmp_path / "checkpoints", keep=3, async_save=False)
    with pytest.raises(ValueError, match="--checkpoint='latest': use best, last or a step number"):
        pick_step(ckpts, "latest")
    ckpts.close()


# --- export never deletes what it did not make ----------------------------------------------------------------

@pytest.mark.long
def test_export_refuses_sources_and_existing_folders(data, finished, tmp_path):
    wd, before = finished
    proc = run_ftjax("export", f"--workdir={wd}", "--format=adapter", f"--out={wd}", check=False)
    assert proc.returncode == 2 and "would overwrite" in proc.stderr.strip().splitlines()[-1]
    proc = run_ftjax("export", f"--workdir={wd}", "--format=adapter", f"--out={wd / 'checkpoints'}", "--overwrite",
                     check=False)
    assert proc.returncode == 2 and "would overwrite" in proc.stderr
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    proc = run_ftjax("export", f"--workdir={wd}", "--format=merged", f"--out={mine}", check=False)
    assert proc.returncode == 2 and "already exists" in proc.stderr and (mine / "notes.txt").read_text() == "keep me"
    assert snapshot(wd) == before

    run_ftjax("export", f"--workdir={wd}", "--format=merged", f"--out={mine}", "--overwrite")
    assert not (mine / "notes.txt").exists() and (mine / "tokenizer.json").is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    assert stat.S_IMODE(mine.stat().st_mode) == 0o755
    assert all(stat.S_IMODE(p.stat().st_mode) & 0o044 == 0o044 for p in mine.iterdir())  # readable by others
    # the merged folder is a complete model: ftjax generate runs on it
    out = run_ftjax("generate", f"--model={mine}", "--prompt=w3 w10 w11", "--max_new_tokens=2")
    assert out.stdout.strip()


def test_generate_checks_its_output_before_generating(tiny_model_dir, tmp_path):
    (tmp_path / "file").write_text("")
    t = time.perf_counter()
    proc = run_ftjax("generate", f"--model={tiny_model_dir}", "--prompt=w3",
                     f"--output={tmp_path / 'file' / 'o.jsonl'}", check=False)
    assert proc.returncode == 2 and "is a file, not a folder" in proc.stderr.strip().splitlines()[-1]
    proc = run_ftjax("generate", f"--model={tiny_model_dir}", "--prompt=w3", "--temperature=nan", check=False)
    assert proc.returncode == 2 and "temperature" in proc.stderr.strip().splitlines()[-1]
    assert time.perf_counter() - t < 120


# --- errors: one line for bad input, a traceback for bugs, --debug for both -----------------------------------

def test_cli_shows_bugs_with_their_traceback(monkeypatch, capsys):
    import types

    from ftjax import cli

    module = types.ModuleType("ftjax.commands.broken")
    module.main = lambda argv: None.missing  # an AttributeError: a bug, not a config typo
    monkeypatch.setitem(sys.modules, "ftjax.commands.broken", module)
    monkeypatch.setitem(cli.COMMANDS, "broken", "a command with a bug")
    with pytest.raises(AttributeError):
        cli.main(["ftjax", "broken"])
    module.main = lambda argv: (_ for _ in ()).throw(ValueError("bad input"))
    with pytest.raises(SystemExit) as e:
        cli.main(["ftjax", "broken"])
    assert e.value.code == 2 and capsys.readouterr().err.strip() == "ftjax broken: error: bad input"
    with pytest.raises(ValueError, match="bad input"):
        cli.main(["ftjax", "broken", "--debug"])


@pytest.mark.long
def test_ctrl_c_is_one_line(data, tmp_path):
    args = [f"--config.{k}={v}" for k, v in data.items()]
    proc = subprocess.Popen([sys.executable, "-m", "ftjax", "train", "--config=configs/sft.py:tiny",
                             f"--workdir={tmp_path}", "--config.train.steps=100000", "--config.checkpoint.every=1000",
                             *args], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while time.time() < deadline and not (Workdir(tmp_path).metrics.is_file()
                                          and Workdir(tmp_path).metrics.stat().st_size):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    last = err.strip().splitlines()[-1]
    assert proc.returncode == 130 and "Traceback" not in err, err[-3000:]
    assert last.startswith("ftjax train: interrupted: saved step ")
    assert last.endswith("rerun the same command to resume")
    step = int(last.split("saved step ")[1].split(";")[0])
    assert (tmp_path / "checkpoints" / str(step)).is_dir() and max(losses(tmp_path)) == step


# --- fault injection: killed at random points, resumed, equal to one uninterrupted run -------------------------

@pytest.mark.long
def test_random_kills_never_lose_a_step_or_a_file(data, tmp_path):
    overrides = {"train.steps": 12, "checkpoint.every": 2, "checkpoint.async_save": True, "train.eval_every": 3,
                 "peft.dropout": 0.1}
    straight = tmp_path / "straight"
    train(data, straight, **overrides)
    killed = tmp_path / "killed"
    args = [f"--config.{k}={v}" for k, v in {**data, **overrides}.items()]
    command = [sys.executable, "-m", "ftjax", "train", "--config=configs/sft.py:tiny", f"--workdir={killed}", *args]
    rng = np.random.RandomState(7)
    kills = 0
    for attempt in range(12):
        proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if attempt < 2:  # kill at a random point: during a step, a checkpoint save or a metrics write
            metrics = Workdir(killed).metrics
            logged = (metrics.read_text().count("\n") if metrics.is_file() else 0) + rng.randint(1, 4)
            deadline = time.time() + 180
            while proc.poll() is None and time.time() < deadline:
                if metrics.is_file() and metrics.read_text().count("\n") >= logged:
                    time.sleep(rng.uniform(0, 0.05))
                    proc.kill()
                    kills += 1
                    break
                time.sleep(0.002)
        _, err = proc.communicate(timeout=300)
        json.loads(Workdir(killed).config.read_text())  # never half-written
        if proc.returncode == 0:
            break
        assert proc.returncode == -signal.SIGKILL, err[-2000:]
    assert kills >= 2 and proc.returncode == 0
    got, want = losses(killed), losses(straight)
    assert sorted(got) == list(range(1, 13))
    np.testing.assert_allclose([got[s] for s in range(1, 13)], [want[s] for s in range(1, 13)], rtol=1e-6)
    summary = json.loads(Workdir(killed).summary.read_text())
    assert summary["steps"] == 12 and not Workdir(killed).lock.exists()
    for f in killed.rglob("*.json"):
        json.loads(f.read_text())
