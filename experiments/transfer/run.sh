#!/usr/bin/env bash
# Transfer both ways at the full single-task schedules (Gemma 3 270M + LoRA r=8), per seed, each run scored on its
# task's validation holdout. The from-scratch runs are the sources and also the comparison arm:
#   runs/b77_few_s<seed>       configs/banking77.py:few from scratch (as in experiments/banking77)
#   runs/e2e_s<seed>           configs/e2e_nlg.py from scratch (as in experiments/e2e_nlg)
#   runs/e2e_from_b77_s<seed>  configs/e2e_nlg.py started from runs/b77_few_s<seed>'s adapter (its 77-way head unused)
#   runs/b77_from_e2e_s<seed>  configs/banking77.py:few started from runs/e2e_s<seed>'s adapter (a fresh head)
# A run whose validation report exists is kept, and an interrupted one resumes from its last checkpoint, so the
# script picks up where it stopped and reuses the single-task experiments' runs. The shorter transferred run
# (Banking77, about 20 min here) goes first. E2E runs keep the 300 steps these results were measured at (the
# config's default is 600 since 2026-12-07).
#   bash experiments/transfer/run.sh 0 1 2        # about 2 h a seed on the 2-core CPU, minutes on a GPU
#   python experiments/transfer/table.py 0 1 2
set -euo pipefail
seeds=${*:-0}
run() {  # workdir, then ftjax train's arguments
  local wd=$1; shift
  [ -f "$wd/eval/validation.json" ] && { echo "kept $wd"; return; }
  .venv/bin/ftjax train --workdir="$wd" "$@"
  .venv/bin/ftjax eval --workdir="$wd" --split=validation
}
for seed in $seeds; do
  run runs/b77_few_s$seed --config=configs/banking77.py:few --config.train.seed=$seed
  run runs/e2e_s$seed --config=configs/e2e_nlg.py --config.train.seed=$seed --config.train.steps=300
  run runs/b77_from_e2e_s$seed --config=configs/banking77.py:few --config.train.seed=$seed \
    --config.model.init_from=runs/e2e_s$seed
  run runs/e2e_from_b77_s$seed --config=configs/e2e_nlg.py --config.train.seed=$seed --config.train.steps=300 \
    --config.model.init_from=runs/b77_few_s$seed
done
