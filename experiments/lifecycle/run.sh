#!/usr/bin/env bash
# The lifecycle on Banking77 with simulated drift (README.md here): a first version that never saw 10 intents,
# registered and promoted; a control week and a drifted week through the drift and quality monitors; a refresh
# on the newly labelled rows that must gain on the new intents without losing on the old ones.
#   bash experiments/lifecycle/run.sh            # ~35 min on a 2-core CPU (v1 training ~17 min of it)
set -euo pipefail
F=.venv/bin/ftjax
D=runs/lifecycle/data
R=runs/lifecycle/registry
[ -f $D/round1.csv ] || .venv/bin/python experiments/lifecycle/prepare.py --out=$D
# 1. the first version: 30 rows for each of 67 intents, the configs/banking77.py:few recipe
$F train --config=configs/banking77.py:few --workdir=runs/lifecycle/v1 --config.data.train=$D/round1.csv
$F eval --workdir=runs/lifecycle/v1 --config.data.test=$D/old_test.csv        # its held-out score
[ -f $R/mlflow.db ] && $F registry show --registry=$R --name=b77 --version=1 > /dev/null 2>&1 \
  || $F registry register --registry=$R --name=b77 --workdir=runs/lifecycle/v1 --promote
# 2. production: inputs only for drift; the same weeks' labels stand in for a labelled sample for quality
$F monitor drift --workdir=runs/lifecycle/v1 --current=$D/week_control.csv,$D/week_drift.csv \
  --out=runs/lifecycle/monitor
$F monitor quality --workdir=runs/lifecycle/v1 --labelled=$D/week_control.csv,$D/week_drift.csv --max_drop=3 \
  --out=runs/lifecycle/monitor
# 3. refresh from the champion on round1 + the newly labelled rows; the gate: +1 point on the new intents'
#    held-out rows, at most 1 point lost on the old intents' test set
$F refresh --registry=$R --name=b77 --new_data=$D/new_labelled.csv --old_test=$D/old_test.csv \
  --new_test=$D/new_test.csv --margin=1 --tolerance=1 --out=runs/lifecycle/refresh1 \
  --set=train.steps=90,train.eval_every=45,checkpoint.every=45,train.learning_rate=5e-4,train.warmup_steps=10
$F registry list --registry=$R --name=b77
