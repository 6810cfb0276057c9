#!/usr/bin/env bash
# Train livt-jax on one machine using all of its GPUs (one process; JAX sees
# every local GPU and shards the batch across them).
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: launch/gpu_host.sh [options] --config FILE[:ARGS] --workdir DIR [--config.key=value ...]

Options:
  --config FILE[:ARGS]  config, e.g. configs/cifar_lt.py or configs/demo.py
  --workdir DIR         checkpoints and logs
  --config.key=value    config overrides, passed through unchanged
                        (every option may also be written --option=value, and
                        an override --config.key value)
  --gpus LIST           restrict to these GPUs (sets CUDA_VISIBLE_DEVICES), e.g. 0,1
  --python PYTHON       interpreter [LIVT_PYTHON, default python3]
  --dry-run             print the environment and command instead of running it
  -h, --help            show this help

Environment set for the run (values already in the environment win):
  XLA_FLAGS += --xla_gpu_enable_latency_hiding_scheduler=true
      lets XLA overlap the gradient all-reduce with the backward pass. Only
      flags that exist across jax 0.7-0.11 are used: XLA aborts on an
      unknown flag.
  XLA_PYTHON_CLIENT_MEM_FRACTION=0.90
      JAX preallocates this fraction of each GPU (its default is 0.75).
  TF_CPP_MIN_LOG_LEVEL=1
      hides XLA's informational log lines.

The shell is replaced by the training process (exec), so a SIGTERM sent to
this script's pid reaches it: it saves a checkpoint and exits with status 143;
run the same command again to resume.

Example:
  launch/gpu_host.sh --config configs/cifar_lt.py --workdir /tmp/cifar10_lt \
      --config.stage=finetune --config.finetune.batch_size=256
EOF
}

LAUNCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$LAUNCH_DIR/common.sh"

PYTHON=${LIVT_PYTHON:-python3}
GPUS=""
LATENCY_HIDING=--xla_gpu_enable_latency_hiding_scheduler=true

parse_args() {
  normalize_args "$@"
  set -- "${ARGS[@]}"
  while [[ $# -gt 0 ]]; do
    take_main_arg "$@"
    if [[ $TAKEN -gt 0 ]]; then
      shift "$TAKEN"
      continue
    fi
    case "$1" in
      -h | --help) usage; exit 0 ;;
      --gpus) need_value "$@"; GPUS=$2; shift 2 ;;
      --python) need_value "$@"; PYTHON=$2; shift 2 ;;
      --dry-run) DRY_RUN=1; shift ;;
      *) die "unknown argument '$1' (see --help)" ;;
    esac
  done
  [[ -z "$GPUS" || "$GPUS" =~ ^[0-9]+(,[0-9]+)*$ ]] ||
    die "--gpus must be a comma-separated list of GPU indices, got '$GPUS'"
}

# gpu_env: export the run's environment (see usage).
gpu_env() {
  local flags=${XLA_FLAGS:-}
  [[ "$flags" == *xla_gpu_enable_latency_hiding_scheduler* ]] ||
    flags="${flags:+$flags }$LATENCY_HIDING"
  export XLA_FLAGS=$flags
  export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.90}
  export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-1}
  [[ -z "$GPUS" ]] || export CUDA_VISIBLE_DEVICES=$GPUS
}

main() {
  parse_args "$@"
  main_command "$PYTHON"
  gpu_env
  if [[ "$DRY_RUN" == 1 ]]; then
    local var
    for var in XLA_FLAGS XLA_PYTHON_CLIENT_MEM_FRACTION TF_CPP_MIN_LOG_LEVEL CUDA_VISIBLE_DEVICES; do
      [[ -z "${!var:-}" ]] || echo "export $(quote_words "$var=${!var}")"
    done
  fi
  if [[ "$DRY_RUN" == 1 ]]; then
    quote_words "${MAIN_CMD[@]}"
  else
    exec "${MAIN_CMD[@]}"
  fi
}

main "$@"
