#!/usr/bin/env bash
# Preference tuning on E2E from an SFT adapter (experiments/preference/README.md): SFT, metric-ranked pairs that
# prefer outputs without slot errors, then DPO, SimPO and ORPO from the SFT adapter; every model scored on the
# same 54 validation MRs. About an hour on a 2-core CPU.
set -euo pipefail
cd "$(dirname "$0")/../.."
F=".venv/bin/ftjax"; P=".venv/bin/python"; R=runs/preference; D=$R/data
$P experiments/preference/prepare.py --out=$D
# 1. SFT: configs/e2e_nlg.py (LoRA r=8, batch 8, lr 5e-4) for 100 steps
$F train --config=configs/e2e_nlg.py --workdir=$R/sft --config.train.steps=100 --config.train.eval_every=100 \
  --config.checkpoint.every=100
# 2. pairs: 4 samples per training MR (temperature 0.8, top-k 40), best vs worst by slot errors (ROUGE-L ties)
$F pairs --workdir=$R/sft --input=$D/pair_prompts.csv --output=$R/pairs.jsonl --k=4 --score=slot_error \
  --max_new_tokens=48
# 3. one arm per loss, from the SFT adapter (its log-probs are DPO's reference), 40 steps of 4 pairs
common="--config=configs/e2e_nlg.py --config.model.init_from=$R/sft --config.data.train=$R/pairs.jsonl
  --config.data.validation= --config.data.format=auto --config.data.columns= --config.eval.metrics=
  --config.train.steps=40 --config.train.batch_size=4 --config.train.learning_rate=1e-4
  --config.train.warmup_steps=4 --config.checkpoint.every=40"
$F train $common --workdir=$R/dpo --config.train.preference.loss=dpo --config.train.preference.beta=0.1
$F train $common --workdir=$R/simpo --config.train.preference.loss=simpo --config.train.preference.beta=2.0 \
  --config.train.preference.gamma=1.0
$F train $common --workdir=$R/orpo --config.train.preference.loss=orpo --config.train.preference.orpo_weight=0.1
# 4. every model on the validation MRs, greedy decoding (the E2E metrics and the slot error rate)
for arm in sft dpo simpo orpo; do
  $F eval --workdir=$R/$arm --checkpoint=last --split=test --config.data.test=$D/validation.csv \
    --config.data.format=data_to_text --config.data.columns=data=mr,text=ref --config.eval.num_beams=1 \
    --out=$R/eval_$arm
done
$P experiments/preference/table.py
