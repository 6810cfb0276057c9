# shellcheck shell=bash disable=SC2034  # the globals are read by the launchers
# Helpers shared by the livt-jax launchers (sourced, never executed).
#
# Each launcher parses its own options and collects the training command's
# pieces into CONFIG, WORKDIR and the OVERRIDES array; `main_command` turns
# them into MAIN_CMD. With DRY_RUN=1, `run_or_print` prints a command (quoted
# so it can be pasted into a shell) instead of running it.

DRY_RUN=${DRY_RUN:-0}
CONFIG=""
WORKDIR=""
OVERRIDES=()
MAIN_CMD=()

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
    --config.*) die "config override $1 needs the form --config.key=value" ;;
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
