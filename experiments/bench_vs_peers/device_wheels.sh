#!/usr/bin/env bash
# The wheels the lent GPU machine lacks for gpu_check.sh, fetched here into .whl/ (it has no network). Its image
# has jax with CUDA, optax, orbax-checkpoint, transformers, absl, etils, tensorstore, protobuf and psutil
# (/work/.library/device/KINDS.md lists them); ftjax also needs ml-collections and grain, and flax is pinned to
# the version the tests run, so the NNX API is the one this repository was written against.
#   bash experiments/bench_vs_peers/device_wheels.sh            # then carry .whl (about 5 MB) in the device call
#   PY_VERSION=3.11 bash experiments/bench_vs_peers/device_wheels.sh    # wheels for this machine's Python, to try here
set -euo pipefail
cd "$(dirname "$0")/../.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
dest=${WHEEL_DIR:-.whl}
mkdir -p "$dest"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "${PY_VERSION:-3.12}" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$dest" \
  flax==0.12.8 ml-collections==1.1.0 grain==0.2.18 array-record==0.8.6 portpicker==1.6.0
ls -la "$dest"
