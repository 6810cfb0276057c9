#!/usr/bin/env bash
# Run livt-jax on a Cloud TPU VM (single host or a multi-host pod slice).
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: launch/tpu_pod.sh [options] COMMAND [--config.key=value ...]

Commands (each acts on every worker of the slice):
  create   create the TPU VM slice (skipped if one with that name exists)
  setup    put the code on every worker and `pip install -e .[tpu]`
  run      start the same training command on every worker, in the
           background (log: ~/livt_jax.log on each worker, pid: ~/livt_jax.pid)
  logs     follow worker 0's training log
  stop     stop the training started by `run`: SIGTERM to every worker's
           processes, which agree on a step, save one checkpoint there and
           exit with status 143 (`run` again resumes from it)
  delete   delete the TPU VM slice
  status   describe the TPU VM slice

Options (environment variable in brackets):
  --name NAME              TPU VM name [TPU_NAME, default livt]
  --zone ZONE              zone, e.g. us-central2-b [TPU_ZONE; required]
  --project PROJECT        GCP project [TPU_PROJECT; default gcloud's]
  --accelerator-type TYPE  slice type, e.g. v4-8, v4-16 (2 hosts), v5p-32,
                           v6e-16 [TPU_ACCELERATOR, default v4-8]
  --version VERSION        TPU software version [TPU_VERSION; default by
                           generation: tpu-ubuntu2204-base (v2-v4),
                           v2-alpha-tpuv5-lite (v5e), v2-alpha-tpuv5 (v5p),
                           v2-alpha-tpuv6e (v6e)]
  --spot                   create a Spot slice
  --repo URL               setup: git URL to clone [LIVT_REPO]; without it the
                           local checkout (minus .git and .venv) is copied
  --branch REF             setup: branch or tag to clone [default main]
  --config FILE[:ARGS]     run: config, e.g. configs/imagenet_lt.py
  --workdir gs://...       run: checkpoints/logs; must be a gs:// path that
                           every worker shares
  --config.key=value       run: config overrides, passed through unchanged
Every option may also be written --option=value, and an override
--config.key value.
  --dry-run                print the commands instead of running them
  -h, --help               show this help

The training command on every worker is
  python3 -m livt_jax.main --config FILE --workdir gs://... \
      --config.multihost=True [--config.key=value ...]
so jax.distributed.initialize() discovers the slice's hosts by itself. Put the
data on gs:// too, e.g. --config.data.data_dir=gs://bucket/imagenet_lt.
A maintenance event or Spot preemption sends SIGTERM to the training process
of the host concerned; JAX's preemption service tells the other hosts, all
save one checkpoint at the same step and exit with status 143 ("preempted:
checkpoint saved at step N" in the log); `run` again resumes from it.

Example (a 2-host v4-16 slice):
  launch/tpu_pod.sh --name livt --zone us-central2-b --accelerator-type v4-16 create
  launch/tpu_pod.sh --name livt --zone us-central2-b setup
  launch/tpu_pod.sh --name livt --zone us-central2-b run \
      --config configs/imagenet_lt.py --workdir gs://my-bucket/livt/in1k_lt \
      --config.stage=livt
EOF
}

LAUNCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$LAUNCH_DIR/common.sh"

NAME=${TPU_NAME:-livt}
ZONE=${TPU_ZONE:-}
PROJECT=${TPU_PROJECT:-}
ACCELERATOR=${TPU_ACCELERATOR:-v4-8}
VERSION=${TPU_VERSION:-}
REPO=${LIVT_REPO:-}
BRANCH=main
SPOT=0
COMMAND=""
REMOTE_DIR=livt-jax  # relative to the worker's home directory

# default_version ACCELERATOR: the TPU software version for its generation.
default_version() {
  case "$1" in
    v2-* | v3-* | v4-*) echo tpu-ubuntu2204-base ;;
    v5litepod-* | v5e-*) echo v2-alpha-tpuv5-lite ;;
    v5p-*) echo v2-alpha-tpuv5 ;;
    v6e-*) echo v2-alpha-tpuv6e ;;
    *) die "no default --version for accelerator type '$1'; pass --version" ;;
  esac
}

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
      --name) need_value "$@"; NAME=$2; shift 2 ;;
      --zone) need_value "$@"; ZONE=$2; shift 2 ;;
      --project) need_value "$@"; PROJECT=$2; shift 2 ;;
      --accelerator-type) need_value "$@"; ACCELERATOR=$2; shift 2 ;;
      --version) need_value "$@"; VERSION=$2; shift 2 ;;
      --repo) need_value "$@"; REPO=$2; shift 2 ;;
      --branch) need_value "$@"; BRANCH=$2; shift 2 ;;
      --spot) SPOT=1; shift ;;
      --dry-run) DRY_RUN=1; shift ;;
      create | setup | run | logs | stop | delete | status)
        [[ -z "$COMMAND" ]] || die "two commands given: '$COMMAND' and '$1'"
        COMMAND=$1; shift ;;
      *) die "unknown argument '$1' (see --help)" ;;
    esac
  done
  [[ -n "$COMMAND" ]] || { usage >&2; die "no command given"; }
  [[ -n "$ZONE" ]] || die "--zone (or TPU_ZONE) is required"
}

# tpu_vm SUBCOMMAND ARG...: run or print `gcloud compute tpus tpu-vm ...`.
tpu_vm() {
  local sub=$1
  shift
  local cmd=(gcloud compute tpus tpu-vm "$sub" "$@" --zone="$ZONE")
  [[ -z "$PROJECT" ]] || cmd+=(--project="$PROJECT")
  run_or_print "${cmd[@]}"
}

# on_workers WORKER REMOTE_SHELL_COMMAND: run a command on worker(s) over ssh.
on_workers() {
  tpu_vm ssh "$NAME" --worker="$1" --command "$2"
}

slice_exists() {
  [[ "$DRY_RUN" != 1 ]] && tpu_vm describe "$NAME" >/dev/null 2>&1
}

cmd_create() {
  if slice_exists; then
    echo "TPU VM '$NAME' already exists in $ZONE; reusing it." >&2
    return
  fi
  local version=$VERSION
  # A plain assignment, so that `set -e` stops on default_version's error.
  [[ -n "$version" ]] || version=$(default_version "$ACCELERATOR")
  local args=(--accelerator-type="$ACCELERATOR" --version="$version")
  [[ "$SPOT" == 0 ]] || args+=(--spot)
  [[ "$DRY_RUN" != 1 ]] || echo "# (skipped when '$NAME' already exists)"
  tpu_vm create "$NAME" "${args[@]}"
}

# copy_local_tree: ship this checkout (without .git/.venv) to every worker.
copy_local_tree() {
  local root archive
  root=$(cd "$LAUNCH_DIR/.." && pwd)
  archive=${TMPDIR:-/tmp}/livt-jax-$$.tar.gz
  run_or_print tar -czf "$archive" --exclude=.git --exclude=.venv \
    --exclude=__pycache__ -C "$root" .
  tpu_vm scp "$archive" "$NAME:livt-jax.tar.gz" --worker=all
  rm -f "$archive"
}

# clone_repo: the remote command that clones (or updates) REPO at BRANCH.
clone_repo() {
  local repo branch
  repo=$(quote_words "$REPO")
  branch=$(quote_words "$BRANCH")
  echo "if [ -d $REMOTE_DIR/.git ]; then" \
    "git -C $REMOTE_DIR fetch --depth 1 origin $branch && git -C $REMOTE_DIR checkout -f FETCH_HEAD;" \
    "else git clone --depth 1 --branch $branch $repo $REMOTE_DIR; fi"
}

cmd_setup() {
  local fetch
  if [[ -n "$REPO" ]]; then
    fetch=$(clone_repo)
  else
    copy_local_tree
    fetch="rm -rf $REMOTE_DIR && mkdir -p $REMOTE_DIR && tar -xzf livt-jax.tar.gz -C $REMOTE_DIR"
  fi
  on_workers all "set -e; $fetch; cd $REMOTE_DIR && python3 -m pip install -U pip && python3 -m pip install -e \".[tpu]\""
}

cmd_run() {
  [[ "$WORKDIR" == gs://* ]] || die "--workdir must be a gs:// path shared by all workers, got '$WORKDIR'"
  main_command python3 --config.multihost=True
  local train
  train=$(quote_words "${MAIN_CMD[@]}")
  on_workers all "cd $REMOTE_DIR && setsid nohup $train > ~/livt_jax.log 2>&1 < /dev/null & echo \$! > ~/livt_jax.pid"
}

cmd_stop() {
  # shellcheck disable=SC2016  # $(...) must expand on the worker, not here
  on_workers all 'if [ -f ~/livt_jax.pid ]; then kill -- "-$(cat ~/livt_jax.pid)" || true; rm -f ~/livt_jax.pid; fi'
}

main() {
  parse_args "$@"
  case "$COMMAND" in
    create) cmd_create ;;
    setup) cmd_setup ;;
    run) cmd_run ;;
    logs) on_workers 0 'tail -n 200 -F ~/livt_jax.log' ;;
    stop) cmd_stop ;;
    delete) tpu_vm delete "$NAME" --quiet ;;
    status) tpu_vm describe "$NAME" ;;
  esac
}

main "$@"
