"""`ftjax export` end to end, and the trainable-parameter report (on Gemma 3 270M's shapes, without weights)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import run_ftjax
from test_peft import logits, max_diff, randomize
from test_peft_hf import peft_logits

import ftjax.models as M
from ftjax.peft import apply_peft, method_table, parameter_report, save_adapter
from ftjax.models.presets import preset_config


def ftjax(*args):
    return run_ftjax(*args, check=False)


@pytest.mark.long
def test_export_command(hf_folder, tmp_path):
    hf, path = hf_folder("qwen3")
    model = M.from_pretrained(path)
    apply_peft(model, {"method": "dora", "rank": 3, "targets": "q_proj,up_proj"})
    randomize(model)
    adapter = save_adapter(model, tmp_path / "adapter")
    out = tmp_path / "out"
    proc = ftjax("export", f"--model={path}", f"--adapter={adapter}", "--format=peft", f"--out={out}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "adapter_config.json", "adapter_model.safetensors"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp folder left
    assert max_diff(peft_logits(hf, out), logits(model)) <= 1e-4


def test_export_bad_adapter_is_one_line_error(hf_folder, tmp_path):
    proc = ftjax("export", f"--model={hf_folder('llama')[1]}", f"--adapter={tmp_path}", f"--out={tmp_path / 'o'}")
    assert proc.returncode != 0 and not (tmp_path / "o").exists()
    assert proc.stderr.strip().splitlines()[-1].startswith("ftjax export: error: ") and "not an adapter" in proc.stderr


def test_parameter_report_counts(hf_folder):
    model = M.from_pretrained(hf_folder("llama")[1])
    apply_peft(model, {"method": "lora", "rank": 2, "targets": "q_proj"})
    r = parameter_report(model, {"method": "lora", "rank": 2, "targets": "q_proj"})
    assert r["trainable_params"] == 3 * 2 * (40 + 40) and r["base_params"] == 43_880
    assert r["saved_bytes"] == 4 * r["trainable_params"]


def test_gemma3_270m_table():
    rows = {r["method"]: r for r in method_table(preset_config("gemma3-270m"), ["lora", "ia3", "prefix", "full"])}
    per_layer = 8 * ((640 + 1024) * 2 + (640 + 256) * 2 + (640 + 2048) * 3)  # r=8 on q,o; k,v; gate,up,down
    assert rows["lora"]["trainable_params"] == 18 * per_layer == 1_898_496
    assert rows["ia3"]["trainable_params"] == 18 * (256 + 256 + 2048)
    assert rows["prefix"]["trainable_params"] == 18 * 2 * 20 * 256
    assert rows["full"]["trainable_params"] == rows["full"]["base_params"] == 268_098_176
    assert np.isclose(rows["lora"]["trainable_percent"], 100 * 1_898_496 / 268_098_176)
