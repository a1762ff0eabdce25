#!/usr/bin/env bash
# Multi-task vs single-task on this CPU: Gemma 3 270M + LoRA r=8, Banking77 (30 rows per intent, head) and E2E
# NLG (LM head), each scored on its own validation holdout. The single-task Banking77 runs come from
# experiments/banking77/run.sh (runs/b77_few_s<seed>).
#   bash experiments/multitask/run.sh 0 1 2          # seeds: the single-task E2E run, then the multi-task one
#   ARMS=mt bash experiments/multitask/run.sh 1 2    # only the multi-task runs (ARMS=e2e: only the E2E ones)
set -euo pipefail
seeds=${*:-0}
arms=${ARMS:-e2e mt}
for seed in $seeds; do
  if [[ " $arms " == *" e2e "* ]]; then
    e2e=runs/e2e_s${seed}
    # 300 steps of 8 rows: the E2E examples the multi-task run sees (150 steps of 16); the config's default is 600
    .venv/bin/ftjax train --config=configs/e2e_nlg.py --workdir=$e2e --config.train.seed=$seed --config.train.steps=300
    .venv/bin/ftjax eval --workdir=$e2e --split=validation
  fi
  if [[ " $arms " == *" mt "* ]]; then
    mt=runs/mt_s${seed}
    .venv/bin/ftjax train --config=configs/multitask_banking_e2e.py --workdir=$mt --config.train.seed=$seed
    .venv/bin/ftjax eval --workdir=$mt --task=banking77 --split=validation --out=$mt/eval/banking77
    .venv/bin/ftjax eval --workdir=$mt --task=e2e_nlg --split=validation --out=$mt/eval/e2e_nlg
  fi
done
