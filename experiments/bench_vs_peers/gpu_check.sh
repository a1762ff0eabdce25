#!/usr/bin/env bash
# The accelerator check (issue: performance), one command, no network, under 8 minutes on one H100/H200:
#   bash experiments/bench_vs_peers/gpu_check.sh [OUT_DIR]          (on CPU: GPU_CHECK_ARGS=--tiny)
# Needs jax with CUDA (pip install 'jax[cuda12]' from wheels carried to the machine), flax, optax,
# transformers (config classes only) and this repository on the path.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-${OUT:-runs/gpu_check}}"
export XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.95}"
python="${PYTHON:-python3}"
[ -x .venv/bin/python ] && python="${PYTHON:-.venv/bin/python}"
"$python" -c "import jax; print('devices:', jax.devices())"
timeout 470 "$python" "$here/gpu_check.py" --out="$out" ${GPU_CHECK_ARGS:-}
