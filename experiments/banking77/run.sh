#!/usr/bin/env bash
# Banking77 on this CPU: Gemma 3 270M + LoRA r=8 + classification head, per seed, scored on the validation
# holdout (10% of train.csv, never trained on), then the TF-IDF + linear SVM baseline on the same rows.
#   bash experiments/banking77/run.sh few 0 1 2      # variant, then seeds
set -euo pipefail
variant=${1:-few}; shift || true
seeds=${*:-0}
for seed in $seeds; do
  wd=runs/b77_${variant}_s${seed}
  .venv/bin/ftjax train --config=configs/banking77.py:${variant} --workdir=$wd --config.train.seed=$seed
  .venv/bin/ftjax eval --workdir=$wd --split=validation
done
.venv/bin/python experiments/banking77/baseline.py --variant=$variant
