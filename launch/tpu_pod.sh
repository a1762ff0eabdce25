#!/usr/bin/env bash
# Cloud TPU VM pod slice: create it, put this checkout on every worker, run an ftjax command on all of them.
#
#   launch/tpu_pod.sh create                 # gcloud compute tpus tpu-vm create
#   launch/tpu_pod.sh setup                  # copy the checkout to every worker, pip install -e '.[tpu]'
#   launch/tpu_pod.sh mount                  # gcsfuse-mount gs://$BUCKET at /mnt/ftjax on every worker
#   launch/tpu_pod.sh run ftjax train --config=configs/sft.py --workdir=/mnt/ftjax/runs/sft
#   launch/tpu_pod.sh ssh                    # a shell on worker 0
#   launch/tpu_pod.sh stop                   # end the ftjax processes on every worker
#   launch/tpu_pod.sh delete
#
# Settings (environment): TPU_NAME, ZONE, ACCELERATOR (e.g. v5p-16, v4-32, v5litepod-16, v6e-16), VERSION (TPU
# software image), PROJECT (optional, else gcloud's default), BUCKET (for `mount`). Every worker runs the same
# command; ftjax/distributed.py sees a TPU VM and calls jax.distributed.initialize(), which reads the slice's
# workers from the VM metadata. Process 0 alone logs and writes metrics; checkpoints need the shared workdir.
set -euo pipefail

TPU_NAME=${TPU_NAME:-ftjax}
ZONE=${ZONE:-us-east5-a}
ACCELERATOR=${ACCELERATOR:-v5p-16}
VERSION=${VERSION:-v2-alpha-tpuv5}
gcloud_tpu=(gcloud compute tpus tpu-vm)
where=(--zone="$ZONE" ${PROJECT:+--project="$PROJECT"})
on_all() { "${gcloud_tpu[@]}" ssh "$TPU_NAME" "${where[@]}" --worker=all --command="$1"; }

case "${1:-}" in
  create)
    "${gcloud_tpu[@]}" create "$TPU_NAME" "${where[@]}" --accelerator-type="$ACCELERATOR" --version="$VERSION" ;;
  setup)
    root=$(cd "$(dirname "$0")/.." && pwd)
    archive=$(mktemp -d)/ftjax.tar.gz
    tar -czf "$archive" -C "$root" --exclude=.venv --exclude=runs --exclude=.git .
    "${gcloud_tpu[@]}" scp "$archive" "$TPU_NAME":ftjax.tar.gz "${where[@]}" --worker=all
    on_all "mkdir -p ftjax && tar -xzf ftjax.tar.gz -C ftjax && cd ftjax && python3 -m venv .venv \
            && .venv/bin/pip install -q -U pip && .venv/bin/pip install -q -e '.[tpu]'" ;;
  mount)
    : "${BUCKET:?set BUCKET to a gs:// bucket name (without gs://) for the shared workdir}"
    on_all "sudo mkdir -p /mnt/ftjax && sudo chown \$USER /mnt/ftjax && \
            gcsfuse --implicit-dirs --rename-dir-limit=100000 $BUCKET /mnt/ftjax" ;;
  run)
    shift
    [[ $# -gt 0 ]] || { echo "tpu_pod.sh run: give the command, e.g. run ftjax train --config=..." >&2; exit 2; }
    [[ "$1" == "ftjax" ]] && set -- .venv/bin/ftjax "${@:2}"
    on_all "cd ftjax && $(printf '%q ' "$@")" ;;
  stop)
    on_all "pkill -u \$USER -f '.venv/bin/ftjax' || true" ;;
  ssh)
    "${gcloud_tpu[@]}" ssh "$TPU_NAME" "${where[@]}" --worker=0 ;;
  delete)
    "${gcloud_tpu[@]}" delete "$TPU_NAME" "${where[@]}" --quiet ;;
  *)
    sed -n '2,18p' "$0"; exit 2 ;;
esac
