#!/usr/bin/env bash
# The Banking77 bias audit (experiments/audit/README.md): the training data, a fine-tune on its held-out test
# split, and a mitigation (counterfactual data augmentation) before/after. About 40 minutes on a 2-core CPU.
set -euo pipefail
cd "$(dirname "$0")/../.."
F=".venv/bin/ftjax"; P=".venv/bin/python"; G=experiments/audit/groups.yaml; D=runs/audit
mkdir -p $D
# 1. the data: Banking77's training file
$F audit data --input=../shared/data/banking77/train.csv --columns=label=category --groups=$G --out=$D/data --overwrite
# 2. the lifecycle experiment's v1 (LoRA + head, 67 intents) on its held-out test split
$F audit model --workdir=runs/lifecycle/v1 --test=runs/lifecycle/data/old_test.csv --groups=$G --out=$D/v1 --overwrite
# 3. mitigation on the augment experiment's 10-rows-per-intent arm: add every real row's counterfactual versions
$F augment --config=configs/augment.py:counterfactual --input=runs/augment/data/real10.csv \
  --output=$D/cda.jsonl --config.data.columns=label=category --config.rules.groups=$G \
  --config.data.test=runs/augment/data/validation.csv
$P experiments/augment/prepare.py --out=$D --combine=$D/cda.jsonl --name=real10_cda
$F train --config=configs/banking77.py:few --workdir=$D/real10_cda --config.data.train=$D/real10_cda.csv \
  --config.data.validation=runs/augment/data/validation.csv --config.data.per_label=0 --config.train.steps=40 \
  --config.train.eval_every=40 --config.checkpoint.every=40 --config.train.warmup_steps=4
for arm in runs/augment/real10 $D/real10_cda; do
  $F audit model --workdir=$arm --test=runs/augment/data/validation.csv --groups=$G --out=$D/$(basename $arm) --overwrite
done
$F audit compare --before=$D/real10 --after=$D/real10_cda --out=$D/mitigation --overwrite
