#!/usr/bin/env bash
# Run one ftjax command as several local processes forming one JAX job: the multi-host code path on one machine.
#
#   launch/local.sh [-n PROCESSES] [-d CPU_DEVICES_EACH] [-g] [-p PORT] [-l LOG_DIR] -- ftjax COMMAND [FLAGS...]
#
# Each process gets FTJAX_COORDINATOR/FTJAX_NUM_PROCESSES/FTJAX_PROCESS_ID (read by ftjax/distributed.py).
# By default every process runs on the CPU with -d fake devices; -g gives process i GPU i instead. Process 0
# prints to the terminal, the others to LOG_DIR/process_<i>.log; if one fails, the others are stopped.
set -euo pipefail

processes=2 devices=4 gpus=0 port=12355 logs=runs/launch-logs
while getopts "n:d:gp:l:h" opt; do
  case "$opt" in
    n) processes=$OPTARG ;;
    d) devices=$OPTARG ;;
    g) gpus=1 ;;
    p) port=$OPTARG ;;
    l) logs=$OPTARG ;;
    *) sed -n '2,9p' "$0"; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
[[ "${1:-}" == "--" ]] && shift
if [[ $# -eq 0 ]]; then
  echo "launch/local.sh: give the command after --, e.g. -- ftjax train --config=configs/sft.py:tiny ..." >&2
  exit 2
fi
if [[ "$1" == "ftjax" && ! -x "$(command -v ftjax)" ]]; then
  set -- "$(dirname "$0")/../.venv/bin/ftjax" "${@:2}"  # the project's virtual environment
fi

mkdir -p "$logs"
pids=()
stop() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap stop INT TERM
for ((i = 0; i < processes; i++)); do
  env=(FTJAX_COORDINATOR="127.0.0.1:$port" FTJAX_NUM_PROCESSES="$processes" FTJAX_PROCESS_ID="$i")
  if ((gpus)); then
    env+=(CUDA_VISIBLE_DEVICES="$i")
  else
    env+=(JAX_PLATFORMS=cpu XLA_FLAGS="--xla_force_host_platform_device_count=$devices ${XLA_FLAGS:-}")
  fi
  if ((i == 0)); then
    env "${env[@]}" "$@" &
  else
    env "${env[@]}" "$@" >"$logs/process_$i.log" 2>&1 &
  fi
  pids+=($!)
done

status=0
for _ in "${pids[@]}"; do  # as each process ends; the first failure stops the rest (they would wait for it)
  if ! wait -n; then
    status=1
    stop
  fi
done
((status == 0)) || echo "launch/local.sh: a process failed; see $logs/process_*.log" >&2
exit "$status"
