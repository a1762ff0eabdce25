#!/usr/bin/env bash
# The accelerator check (issue: performance), one command, no network, under 8 minutes on one H100/H200:
#   bash experiments/bench_vs_peers/gpu_check.sh [OUT_DIR]          (on CPU: GPU_CHECK_ARGS=--tiny)
# Needs jax with CUDA, flax, optax, transformers (config classes only) and this repository on the path; wheels in
# .whl/ (device_wheels.sh fetches the ones the lent GPU machine lacks) are installed first.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-${OUT:-runs/gpu_check}}"
export XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.95}"
python="${PYTHON:-python3}"
[ -x .venv/bin/python ] && python="${PYTHON:-.venv/bin/python}"
wheels="${WHEELS:-.whl}"
if [ -d "$wheels" ] && ! "$python" -c "import ml_collections, grain" 2>/dev/null; then
  # a machine without network and without ftjax's own needs: install the carried wheels (device_wheels.sh)
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/ftjax-site \
    "$wheels"/*.whl
  export PYTHONPATH="/tmp/ftjax-site${PYTHONPATH:+:$PYTHONPATH}"
fi
"$python" -c "import jax, flax, optax; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, 'devices:', jax.devices())"
timeout 470 "$python" "$here/gpu_check.py" --out="$out" ${GPU_CHECK_ARGS:-}
