#!/usr/bin/env bash
# Ablations on this CPU with ftjax sweep (configs/sweeps/*.py), Gemma 3 270M + LoRA on Banking77, each trial
# scored on the validation holdout at its best checkpoint; tables and plots land in the sweep folder.
#   bash experiments/sweeps/run.sh rank        # LoRA rank 2|8|32 x seeds 0|1, 10 rows per intent, 60 steps
#   bash experiments/sweeps/run.sh transfer    # the same run started from the E2E adapter (needs runs/e2e_s0)
#   bash experiments/sweeps/run.sh full        # LoRA vs full fine-tuning, float32 weights, 60 steps
#   bash experiments/sweeps/run.sh full-seeds  # the same three arms at seeds 1|2 (`full` is seed 0)
#   bash experiments/sweeps/run.sh data        # 10 clean rows per intent vs 30 clean vs 30 with 40% wrong labels
#   bash experiments/sweeps/run.sh data-seeds  # the same three arms at seeds 1|2 (`data` is seed 0)
#   bash experiments/sweeps/run.sh method      # DoRA, (IA)3, prefix and prompt tuning at 10 rows per intent, 60 steps
#   bash experiments/sweeps/run.sh method-seeds  # the same methods at seeds 1|2 (`method` is seed 0)
#   bash experiments/sweeps/run.sh lr          # LoRA learning rate 3e-3|1e-2|1e-3 x seeds 0|1, the same budget
set -euo pipefail
case ${1:?usage: run.sh rank|transfer|full|full-seeds|data|data-seeds|method|method-seeds|lr} in
  rank)
    .venv/bin/ftjax sweep --config=configs/sweeps/lora_rank.py:cpu --workdir=runs/sweeps/lora_rank_cpu ;;
  transfer)  # rank 8 as in the source run; compare with the rank sweep's rank-8 trials (same data and seeds)
    .venv/bin/ftjax sweep --config=configs/sweeps/lora_rank.py:cpu --workdir=runs/sweeps/transfer_e2e_cpu \
      --config.space="model.init_from=runs/e2e_s0 train.seed=0|1" ;;
  full)
    .venv/bin/ftjax sweep --config=configs/sweeps/lora_vs_full.py:cpu --workdir=runs/sweeps/lora_vs_full_cpu ;;
  full-seeds)
    .venv/bin/ftjax sweep --config=configs/sweeps/lora_vs_full.py:cpu_seeds --workdir=runs/sweeps/lora_vs_full_cpu_s12 ;;
  data)
    .venv/bin/ftjax sweep --config=configs/sweeps/data_size.py:cpu --workdir=runs/sweeps/data_size_cpu
    for arm in "10 0" "30 0.4" "30 0"; do  # the linear baseline on each arm's rows
      set -- $arm; .venv/bin/python experiments/banking77/baseline.py --per_label="$1" --label_noise="$2"
    done
    .venv/bin/python experiments/sweeps/data_plot.py --sweeps=runs/sweeps/data_size_cpu ;;  # LoRA beside the baseline per arm
  data-seeds)  # after `data` (its baselines); the plot then pools seeds 0-2
    .venv/bin/ftjax sweep --config=configs/sweeps/data_size.py:cpu_seeds --workdir=runs/sweeps/data_size_cpu_s12
    .venv/bin/python experiments/sweeps/data_plot.py ;;
  method)
    .venv/bin/ftjax sweep --config=configs/sweeps/peft_method.py:cpu --workdir=runs/sweeps/peft_method_cpu ;;
  method-seeds)
    .venv/bin/ftjax sweep --config=configs/sweeps/peft_method.py:cpu_seeds --workdir=runs/sweeps/peft_method_cpu_s12 ;;
  lr)
    .venv/bin/ftjax sweep --config=configs/sweeps/lr_batch.py:cpu --workdir=runs/sweeps/lora_lr_cpu ;;
  *) echo "unknown ablation $1; choose rank, transfer, full, full-seeds, data, data-seeds, method, method-seeds or lr" >&2; exit 2 ;;
esac
