"""The side-by-side benchmark and the accelerator check run end to end on tiny models (their timings are
recorded in experiments/bench_vs_peers/README.md, never asserted here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT

HERE = ROOT / "experiments" / "bench_vs_peers"


def test_the_bench_feeds_the_trainers_batch_layout():
    """ftjax_lora.ftjax_batch (the side-by-side's and gpu_check's batches) has every key of the trainer's own
    step_batch, with the same dtypes and the same target positions and weights: a key the trainer gains (as
    `weight` did) fails here, not only in the long runs of the benchmark."""
    import numpy as np

    sys.path.insert(0, str(HERE))
    from ftjax_lora import ftjax_batch

    from ftjax.train.batches import step_batch

    ids = np.random.default_rng(0).integers(1, 50, (1, 2, 16)).astype(np.int32)  # [steps, batch, length]
    attn = np.ones(ids.shape, bool)
    attn[0, 1, 12:] = False
    labels = attn.copy()  # the workload's mask marks label positions (Hugging Face's convention)
    labels[..., :5] = False
    ours = ftjax_batch({"input_ids": ids, "attention_mask": attn, "loss_mask": labels}, 0)
    loss = np.zeros_like(attn[0])
    loss[:, :-1] = labels[0][:, 1:]  # the trainer marks the position before each target
    micro = {"inputs": ids[0], "targets": np.roll(ids[0], -1, 1), "positions": np.zeros_like(ids[0]),
             "attention_mask": attn[0], "segment_ids": attn[0].astype(np.int32),
             "values": np.zeros((2, 16), np.float32), "loss_mask": loss, "weights": np.ones((2, 16), np.float32)}
    theirs = step_batch(iter([micro]), 1)
    assert sorted(ours) == sorted(theirs)
    for key in ("index", "valid", "weight"):
        assert ours[key].dtype == theirs[key].dtype and np.array_equal(ours[key], theirs[key]), key


def test_packed_bench_rows_keep_every_token_and_target_in_its_own_segment():
    """ftjax_lora.pack (the side-by-side's `--ftjax_packed` run): each row's tokens and target marks land in one
    segment whose positions restart at 0, nothing is lost or repeated, and the steps share one, smaller shape."""
    import numpy as np

    sys.path.insert(0, str(HERE))
    from ftjax_lora import ftjax_batch, pack

    rng = np.random.default_rng(0)
    steps, b, t = 3, 6, 16
    lengths = rng.integers(2, 9, (steps, b))
    attn = np.arange(t)[None, None] < lengths[..., None]
    ids = np.where(attn, rng.integers(1, 50, (steps, b, t)), 0).astype(np.int32)
    loss = attn & (np.arange(t) >= 2)  # the first two tokens of each row are its prompt
    packed = pack({"input_ids": ids, "attention_mask": attn, "loss_mask": loss})
    assert packed["input_ids"].shape[0] == steps and packed["input_ids"].shape[1] < b
    for step in range(steps):
        got = []
        for row in range(packed["input_ids"].shape[1]):
            seg = packed["segment_ids"][step, row]
            assert np.array_equal(seg > 0, packed["attention_mask"][step, row])
            for s in set(seg[seg > 0].tolist()):
                at = seg == s
                assert np.array_equal(packed["positions"][step, row][at], np.arange(at.sum()))
                got.append((tuple(packed["input_ids"][step, row][at]), tuple(packed["loss_mask"][step, row][at])))
        want = [(tuple(ids[step, r, :n]), tuple(loss[step, r, :n])) for r, n in enumerate(lengths[step])]
        assert sorted(got) == sorted(want)
    batch = ftjax_batch(packed, 0)
    assert batch["valid"].sum() == loss[0].sum()  # the same targets, none across a segment boundary


@pytest.mark.long
def test_peft_and_ftjax_train_the_same_rows_to_the_same_first_loss(tiny_model_dir, tmp_path):
    """Both frameworks see identical batches and the same masked loss: their first losses (before any update)
    agree, both fall, and both report non-zero gradients. Tunix is skipped when its venv is absent."""
    pytest.importorskip("peft")
    data = tmp_path / "e2e.csv"  # short rows, so that the packed run has rows to pack
    data.write_text("mr,ref\n" + "".join(f'"name[w{i}], area[w{i + 1}]","w{i} is in w{i + 1} w9 w7 ."\n'
                                         for i in range(10, 130)))
    out = tmp_path / "bench"
    done = subprocess.run([sys.executable, str(HERE / "run.py"), f"--model={tiny_model_dir}", f"--data={data}",
                           "--frameworks=peft,tunix,ftjax", "--steps=4", "--warmup=1", "--batch=4", "--length=32",
                           "--lr=1e-2", "--ftjax_packed", f"--out={out}", f"--tunix_python={tmp_path / 'none'}"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads((out / "results.json").read_text())["results"]
    for kind in ("all", "sft"):
        peft, tunix, ours = (next(r for r in results if r["workload"] == kind and r["framework"] == f)
                             for f in ("peft", "tunix", "ftjax"))
        assert tunix["error"].startswith("not installed")
        assert ours["losses"][0] == pytest.approx(peft["losses"][0], rel=1e-4)
        assert ours["trainable_params"] == peft["trainable_params"]
        for r in (peft, ours):
            assert r["loss_fell"] and min(r["grad_norms"]) > 0 and r["tokens_per_s"] > 0
    packed = next(r for r in results if r["framework"] == "ftjax (packed)")  # sft only: `all` has no padding
    assert packed["losses"][0] == pytest.approx(peft["losses"][0], rel=1e-4) and packed["loss_fell"]
    assert int(packed["shape"].split("x")[0]) < 4 and packed["targets_per_step"] == ours["targets_per_step"]
    assert "| sft | ftjax | float32 | 4x32 |" in (out / "results.md").read_text()
    from ftjax.hardware import host_cpu

    assert f"host: {host_cpu()}" in (out / "results.md").read_text()  # the seconds compare within one host


@pytest.mark.long
def test_gpu_check_runs_on_cpu_with_tiny_shapes(tmp_path):
    done = subprocess.run(["bash", str(HERE / "gpu_check.sh"), str(tmp_path)], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "GPU_CHECK_ARGS": "--tiny",
                                            "PYTHON": sys.executable}, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["attention_max_abs_diff"] < 0.05
    run = report["runs"]["tiny-llama"]
    assert run["loss_fell"] and 0 < run["mfu"] < 1 and run["lora_params"] > 0


@pytest.mark.long
def test_generation_benchmark_runs_both_and_they_agree_in_float32(tiny_model_dir, tmp_path):
    """ftjax's KV-cache generate and transformers' generate decode the same prompts; greedy float32 tokens are
    equal row for row on the tiny model."""
    pytest.importorskip("torch")
    data = tmp_path / "banking.csv"
    data.write_text("text,category\n" + "".join(f"w{i} w{i + 3} w{i + 7},c{i % 3}\n" for i in range(10, 16)))
    done = subprocess.run([sys.executable, str(HERE / "generation.py"), f"--model={tiny_model_dir}",
                           f"--data={data}", "--rows=6", "--batch=2", "--new_tokens=4", f"--out={tmp_path}"],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "generation.json").read_text())
    assert [r["run"] for r in report["rows"]] == ["ftjax float32", "ftjax bfloat16", "transformers float32",
                                                  "transformers bfloat16"]
    assert report["greedy_rows_equal"]["float32"] == 1.0
    assert all(r["new_tokens_per_s"] > 0 for r in report["rows"])


def test_matmul_bench_reports_every_shape_and_the_compiled_root(monkeypatch, capsys):
    """matmul.py prints one row per shape with XLA's time and the compiled module's root op (so a flag that
    changes nothing shows it); PyTorch's columns when torch is installed."""
    sys.path.insert(0, str(HERE))
    import matmul

    monkeypatch.setattr(matmul, "SHAPES", [(8, 16, 4), (4, 8, 2)])
    monkeypatch.setattr(sys, "argv", ["matmul.py", "--reps=1"])
    matmul.main()
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith(("| 8 x", "| 4 x"))]
    assert len(rows) == 2
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert float(cells[1]) > 0 and "dot" in cells[3]
