#!/usr/bin/env bash
# Worker side of `launch/tpu_pod.sh setup` and `run`, executed on every TPU VM
# worker from the unpacked source folder:
#   worker_setup.sh install   make the virtual environment and install livt-jax
#   worker_setup.sh check     one line and exit 1 unless the environment works
#
# Python: the TPU images the launcher names (tpu-ubuntu2204-base, v2-alpha-*)
# are Ubuntu 22.04 with Python 3.10, and livt-jax (like current JAX) needs
# >= 3.11. The first python3.13 / python3.12 / python3.11 / python3 on PATH
# that is >= 3.11 is used; if there is none, `uv` (one static binary on PyPI,
# installed with the image's own pip into ~/.local, no root) downloads a
# managed CPython 3.12 into ~/.local/share/uv. uv rather than the deadsnakes
# PPA: no root or apt, no PPA to reach, the same on every image and release.
#
# Environment: LIVT_VENV (default ~/livt-venv), LIVT_EXTRAS (default [tpu]),
# LIVT_PIP_ARGS and LIVT_VENV_ARGS (extra arguments to `pip install` and
# `python -m venv`, e.g. an offline wheel folder).
set -euo pipefail

VENV=${LIVT_VENV:-$HOME/livt-venv}
EXTRAS=${LIVT_EXTRAS-[tpu]}
MANAGED_PYTHON=3.12

die() {
  echo "error: worker $(hostname): $*" >&2
  exit 1
}

# python_ok PYTHON: true if PYTHON runs and is >= 3.11.
python_ok() {
  "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1
}

# find_python: print the first Python >= 3.11 on PATH.
find_python() {
  local candidate
  for candidate in python3.13 python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null && python_ok "$candidate"; then
      command -v "$candidate"
      return 0
    fi
  done
  return 1
}

# managed_python: install uv if needed, then a managed CPython; print its path.
managed_python() {
  local uv
  uv=$(command -v uv || echo "$HOME/.local/bin/uv")
  if [[ ! -x "$uv" ]]; then
    python3 -m pip install --user --quiet uv >&2 || return 1
  fi
  "$uv" python install "$MANAGED_PYTHON" >&2 || return 1
  "$uv" python find "$MANAGED_PYTHON"
}

cmd_install() {
  local python
  python=$(find_python) || python=$(managed_python) ||
    die "no Python >= 3.11 on PATH and uv could not install one (python3 is $(python3 --version 2>&1 || echo missing)); install python3.11+ or uv and rerun setup"
  echo "worker $(hostname): $("$python" --version) from $python -> $VENV" >&2
  rm -rf "$VENV"
  # shellcheck disable=SC2086  # LIVT_VENV_ARGS / LIVT_PIP_ARGS are lists of words
  "$python" -m venv ${LIVT_VENV_ARGS:-} "$VENV"
  # shellcheck disable=SC2086
  "$VENV/bin/python" -m pip install --quiet ${LIVT_PIP_ARGS:-} -e ".$EXTRAS"
  cmd_check
}

cmd_check() {
  [[ -x "$VENV/bin/python" ]] || die "no environment at $VENV; run launch/tpu_pod.sh setup"
  local problem
  # From $HOME, so that the source folder cannot stand in for the installed package.
  problem=$(cd "$HOME" && "$VENV/bin/python" - 2>&1 <<'EOF'
import sys
if sys.version_info < (3, 11):
    sys.exit(f"{sys.executable} is Python {sys.version.split()[0]}, livt-jax needs >= 3.11")
try:
    import jax
    import livt_jax
except Exception as e:
    sys.exit(f"{type(e).__name__}: {e}")
print(f"ok: Python {sys.version.split()[0]}, jax {jax.__version__}, livt_jax from {livt_jax.__file__}")
EOF
  ) || die "$VENV is not usable ($(tail -n 1 <<<"$problem")); run launch/tpu_pod.sh setup"
  echo "worker $(hostname): $problem"
}

case "${1:-}" in
  install) cmd_install ;;
  check) cmd_check ;;
  *) echo "usage: $0 install|check" >&2; exit 2 ;;
esac
