#!/usr/bin/env bash
# Run livt-jax on a Cloud TPU VM (single host or a multi-host pod slice).
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: launch/tpu_pod.sh [options] COMMAND [--config.key=value ...]

Commands (each acts on every worker of the slice):
  create   create the TPU VM slice (skipped if one with that name exists),
           directly or as a queued resource (--queued)
  setup    put the tracked source on every worker and make a Python >= 3.11
           environment there with livt-jax installed (launch/worker_setup.sh:
           the images' python3 is 3.10)
  run      check every worker's environment (one line and stop if one is
           wrong), then start the same training command on every worker, in
           the background (log: ~/livt_jax.log on each worker, pid: ~/livt_jax.pid)
  logs     follow worker 0's training log
  stop     stop the training started by `run`: SIGTERM to every worker's
           processes, which agree on a step, save one checkpoint there and
           exit with status 143 (`run` again resumes from it)
  delete   delete the TPU VM slice (with --queued: the queued resource and its slice)
  status   describe the TPU VM slice (with --queued: the queued resource)

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
  --spot                   create a Spot slice (may be preempted at any time)
  --queued                 create/delete/status through a queued resource
                           (`gcloud compute tpus queued-resources`), as the
                           Cloud TPU docs advise for v5p, v6e and Spot
  --no-autocheckpoint      create: leave out --autocheckpoint-enabled, which
                           is otherwise passed on v2-v4 and v5e (the
                           generations that support it; `gcloud alpha`)
  --repo URL               setup: git URL to clone [LIVT_REPO]; without it the
                           files git tracks in this checkout are copied
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
  ~/livt-venv/bin/python -m livt_jax.main --config FILE --workdir gs://... \
      --config.multihost=True [--config.key=value ...]
so jax.distributed.initialize() discovers the slice's hosts by itself. Put the
data on gs:// too, e.g. tfds ArrayRecord files:
  --config.data.source=tfds --config.data.data_dir=gs://bucket/tensorflow_datasets
What stops with a checkpoint: `stop`, and a maintenance event on a slice
created with autocheckpoint (v2-v4, v5e): Cloud TPU sends SIGTERM to the
training process and waits up to 5 minutes; all hosts save one checkpoint at
the same step and exit with status 143; `run` again resumes from it.
What does not: maintenance on v5p/v6e and any Spot preemption give no signal
the docs promise; the run loses the steps since its last periodic checkpoint
(checkpoint.save_every_steps), and `run` resumes from that one.

Example (a 2-host v4-16 slice):
  launch/tpu_pod.sh --name livt --zone us-central2-b --accelerator-type v4-16 create
  launch/tpu_pod.sh --name livt --zone us-central2-b setup
  launch/tpu_pod.sh --name livt --zone us-central2-b run \
      --config configs/imagenet_lt.py --workdir gs://my-bucket/livt/in1k_lt \
      --config.data.source=tfds --config.data.data_dir=gs://my-bucket/tensorflow_datasets
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
QUEUED=0
AUTOCHECKPOINT=1
COMMAND=""
REMOTE_DIR=livt-jax  # relative to the worker's home directory
# shellcheck disable=SC2088  # the tilde expands on the worker
REMOTE_PYTHON='~/livt-venv/bin/python'  # made by launch/worker_setup.sh

# autocheckpoint_supported ACCELERATOR: true for the generations whose maintenance
# events Autocheckpoint turns into a SIGTERM (Cloud TPU docs: v2-v4 and v5e).
autocheckpoint_supported() {
  case "$1" in
    v2-* | v3-* | v4-* | v5litepod-* | v5e-*) return 0 ;;
    *) return 1 ;;
  esac
}

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
      --queued) QUEUED=1; shift ;;
      --no-autocheckpoint) AUTOCHECKPOINT=0; shift ;;
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

# tpus [alpha] GROUP SUBCOMMAND ARG...: run or print `gcloud [alpha] compute tpus
# GROUP SUBCOMMAND ...` (GROUP: tpu-vm or queued-resources).
tpus() {
  local gcloud=(gcloud)
  if [[ "$1" == alpha ]]; then
    gcloud+=(alpha)
    shift
  fi
  local cmd=("${gcloud[@]}" compute tpus "$@" --zone="$ZONE")
  [[ -z "$PROJECT" ]] || cmd+=(--project="$PROJECT")
  run_or_print "${cmd[@]}"
}

# tpu_vm SUBCOMMAND ARG...: run or print `gcloud compute tpus tpu-vm ...`.
tpu_vm() {
  tpus tpu-vm "$@"
}

# on_workers WORKER REMOTE_SHELL_COMMAND: run a command on worker(s) over ssh.
on_workers() {
  tpu_vm ssh "$NAME" --worker="$1" --command "$2"
}

# group: the gcloud command group that owns the slice.
group() {
  if [[ "$QUEUED" == 1 ]]; then echo queued-resources; else echo tpu-vm; fi
}

slice_exists() {
  [[ "$DRY_RUN" != 1 ]] && tpus "$(group)" describe "$NAME" >/dev/null 2>&1
}

cmd_create() {
  if slice_exists; then
    echo "TPU '$NAME' already exists in $ZONE; reusing it." >&2
    return
  fi
  local version=$VERSION
  # A plain assignment, so that `set -e` stops on default_version's error.
  [[ -n "$version" ]] || version=$(default_version "$ACCELERATOR")
  local args=(--accelerator-type="$ACCELERATOR") alpha=()
  if [[ "$QUEUED" == 1 ]]; then
    args=(--node-id="$NAME" "${args[@]}" --runtime-version="$version")
  else
    args+=(--version="$version")
  fi
  [[ "$SPOT" == 0 ]] || args+=(--spot)
  if [[ "$AUTOCHECKPOINT" == 1 ]] && autocheckpoint_supported "$ACCELERATOR"; then
    alpha=(alpha)  # a preview flag: only `gcloud alpha` has it
    args+=(--autocheckpoint-enabled)
  elif [[ "$AUTOCHECKPOINT" == 1 ]]; then
    echo "note: no autocheckpoint on $ACCELERATOR (Cloud TPU supports it on v2-v4 and v5e):" \
      "maintenance there stops the VMs without a signal; steps since the last periodic" \
      "checkpoint (checkpoint.save_every_steps) are lost." >&2
  fi
  [[ "$DRY_RUN" != 1 ]] || echo "# (skipped when '$NAME' already exists)"
  tpus "${alpha[@]}" "$(group)" create "$NAME" "${args[@]}"
}

# copy_local_tree: ship the files git tracks in this checkout (as they are in the
# work tree, uncommitted edits included; not runs/, venvs or wheelhouses) to every worker.
copy_local_tree() {
  local root archive
  root=$(cd "$LAUNCH_DIR/.." && pwd)
  git -C "$root" rev-parse --is-inside-work-tree >/dev/null 2>&1 ||
    die "$root is not a git checkout: pass --repo URL to clone one on the workers"
  archive=${TMPDIR:-/tmp}/livt-jax-$$.tar.gz
  if [[ "$DRY_RUN" == 1 ]]; then
    echo "git -C $(quote_words "$root") ls-files -z | tar -czf $(quote_words "$archive")" \
      "--null --ignore-failed-read -C $(quote_words "$root") -T -"
  else
    git -C "$root" ls-files -z | tar -czf "$archive" --null --ignore-failed-read -C "$root" -T -
  fi
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
  on_workers all "set -e; $fetch; cd $REMOTE_DIR && bash launch/worker_setup.sh install"
}

cmd_run() {
  [[ "$WORKDIR" == gs://* ]] || die "--workdir must be a gs:// path shared by all workers, got '$WORKDIR'"
  main_command PYTHON --config.multihost=True
  local train
  train=$(quote_words "${MAIN_CMD[@]}")
  train=$REMOTE_PYTHON${train#PYTHON}
  on_workers all "cd $REMOTE_DIR && bash launch/worker_setup.sh check && { setsid nohup $train > ~/livt_jax.log 2>&1 < /dev/null & echo \$! > ~/livt_jax.pid; }"
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
    delete)
      if [[ "$QUEUED" == 1 ]]; then
        tpus queued-resources delete "$NAME" --force --quiet
      else
        tpu_vm delete "$NAME" --quiet
      fi ;;
    status) tpus "$(group)" describe "$NAME" ;;
  esac
}

main "$@"
