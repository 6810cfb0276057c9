# shellcheck shell=bash disable=SC2034  # the globals are read by the launchers
# Helpers shared by the livt-jax launchers (sourced, never executed).
#
# Each launcher puts its arguments in one form with `normalize_args` (every
# option may be written `--option value` or `--option=value`), parses its own
# options and collects the training command's pieces into CONFIG, WORKDIR and
# the OVERRIDES array; `main_command` turns them into MAIN_CMD. With DRY_RUN=1,
# `run_or_print` prints a command (quoted so it can be pasted into a shell)
# instead of running it.
#
# Stopping: the training processes catch SIGTERM together (livt_jax.preemption),
# save one checkpoint at a step they agree on and exit with PREEMPTED_STATUS;
# rerunning the same command resumes.

DRY_RUN=${DRY_RUN:-0}
CONFIG=""
WORKDIR=""
OVERRIDES=()
MAIN_CMD=()
ARGS=()
PREEMPTED_STATUS=143  # livt_jax.preemption.PREEMPTED_EXIT_CODE (128 + SIGTERM)

# die MESSAGE: print an error naming the bad value and exit with status 2.
die() {
  echo "error: $*" >&2
  exit 2
}

# need_value OPTION [VALUE...]: fail unless OPTION is followed by a value.
need_value() {
  if [[ $# -lt 2 || -z "$2" || "$2" == --* ]]; then
    die "option $1 needs a value"
  fi
}

# quote_words WORD...: print the words on one line, single-quoting any word
# that holds characters a shell would interpret.
quote_words() {
  local out=() word
  for word in "$@"; do
    if [[ -n "$word" && "$word" =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then
      out+=("$word")
    else
      out+=("'${word//\'/\'\\\'\'}'")
    fi
  done
  echo "${out[*]}"
}

# normalize_args ARG...: fill ARGS with the arguments in one form:
# `--option=value` becomes `--option value`, and `--config.key value`
# becomes the override `--config.key=value`.
normalize_args() {
  ARGS=()
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --config.*=*) ARGS+=("$1"); shift ;;
      --config.*)
        [[ $# -ge 2 && "$2" != --* ]] ||
          die "config override $1 needs the form --config.key=value or --config.key value"
        ARGS+=("$1=$2"); shift 2 ;;
      --*=*) ARGS+=("${1%%=*}" "${1#*=}"); shift ;;
      *) ARGS+=("$1"); shift ;;
    esac
  done
}

# run_or_print CMD...: run CMD, or print it when DRY_RUN=1.
run_or_print() {
  if [[ "$DRY_RUN" == 1 ]]; then
    quote_words "$@"
  else
    "$@"
  fi
}

# take_main_arg OPTION [VALUE]: record a training-command argument. Returns the
# number of words consumed (1 or 2) through TAKEN; TAKEN=0 if not ours.
take_main_arg() {
  TAKEN=0
  case "$1" in
    --config) need_value "$@"; CONFIG=$2; TAKEN=2 ;;
    --workdir) need_value "$@"; WORKDIR=$2; TAKEN=2 ;;
    --config.*=*) OVERRIDES+=("$1"); TAKEN=1 ;;
  esac
}

# main_command PYTHON [EXTRA_ARG...]: fill MAIN_CMD with the training command.
main_command() {
  [[ -n "$CONFIG" ]] || die "--config is required (e.g. --config configs/imagenet_lt.py)"
  [[ -n "$WORKDIR" ]] || die "--workdir is required"
  local python=$1
  shift
  MAIN_CMD=("$python" -m livt_jax.main --config "$CONFIG" --workdir "$WORKDIR" "$@" "${OVERRIDES[@]}")
}
