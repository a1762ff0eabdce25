#!/usr/bin/env bash
# Banking77 with 10 real rows per intent, augmented with Gemma 3 270M's own rows (README.md here): real-only vs
# real + synthetic with the validation filters on and off, the same recipe and budget for each, scored on the
# configs/banking77.py validation holdout (never trained on, and checked for leaks), plus TF-IDF + linear SVM.
#   bash experiments/augment/run.sh             # ~50 min on a 2-core CPU
set -euo pipefail
F=.venv/bin/ftjax
P=.venv/bin/python
D=runs/augment/data
[ -f $D/validation.csv ] || $P experiments/augment/prepare.py --out=$D
# 1. a paraphrase of every real row and 5 new rows per intent, validated (the holdout is the leak check's test)
$F augment --config=configs/augment.py --input=$D/real10.csv --output=runs/augment/filtered.jsonl \
  --config.data.test=$D/validation.csv --config.augment.new=5
# the filters-off arm: the same candidates (copied, not generated again) with only the format check
mkdir -p runs/augment/unfiltered.jsonl.work
cp runs/augment/filtered.jsonl.work/{plan.json,candidates.jsonl,timing.json} runs/augment/unfiltered.jsonl.work/
$F augment --config=configs/augment.py --input=$D/real10.csv --output=runs/augment/unfiltered.jsonl \
  --config.data.test=$D/validation.csv --config.augment.new=5 --config.validate.filters=format
$P experiments/augment/prepare.py --out=$D --combine=runs/augment/filtered.jsonl --name=real10_filtered
$P experiments/augment/prepare.py --out=$D --combine=runs/augment/unfiltered.jsonl --name=real10_unfiltered
# 2. one recipe per arm (configs/banking77.py:few's model, LoRA and head; 40 steps, ~2.9 epochs of the real
#    rows), scored on the holdout at the end
for arm in real10 real10_unfiltered real10_filtered; do
  $F train --config=configs/banking77.py:few --workdir=runs/augment/$arm --config.data.train=$D/$arm.csv \
    --config.data.validation=$D/validation.csv --config.data.per_label=0 --config.train.steps=40 \
    --config.train.eval_every=40 --config.checkpoint.every=40 --config.train.warmup_steps=4
done
# 3. the TF-IDF + linear SVM baseline on the same three training files
$P experiments/augment/baseline.py
