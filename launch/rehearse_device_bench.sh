#!/usr/bin/env bash
# CPU rehearsal of launch/device_bench.sh, the GPU kit, on a machine with a package index.
#
# usage: launch/rehearse_device_bench.sh OUT_DIR
#
# Builds (once) a fresh Python 3.12 virtual environment that stands in for the GPU image:
# the image's known versions (launch/gpu_image_packages.txt: jax 0.11.2, torch 2.11.0, ...),
# flax, orbax-checkpoint, optax and fsspec OLDER than livt-jax needs (so the kit must
# upgrade them from the wheelhouse), timm, and every other distribution the wheelhouse
# leaves to the image (wheelhouse/from_image.txt), from the registry; then drops the
# carried distributions the image lacks (grain, ml-collections, tensorflow-datasets, ...),
# so they can only come from the wheelhouse. Then runs the kit itself with --size tiny:
# the same offline install, the same sections, a 32-wide ViT.
# PYTHON312 names the interpreter (default python3.12); REHEARSAL_VENV the environment
# (default <checkout>/.rehearsal/venv; delete it to rebuild).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
USAGE="usage: $0 OUT_DIR
  the GPU kit (launch/device_bench.sh --size tiny) on the CPU, in a Python 3.12 stand-in for
  the GPU image (built once from the package index; versions from launch/gpu_image_packages.txt).
  Environment: PYTHON312 (default python3.12), REHEARSAL_VENV (default <checkout>/.rehearsal/venv)."
if [[ $# -eq 1 && ( "$1" == -h || "$1" == --help ) ]]; then
  echo "$USAGE"
  exit 0
fi
if [[ $# -ne 1 || "$1" == -* ]]; then
  echo "$USAGE" >&2
  exit 2
fi
OUT_DIR=$1
PYTHON312=${PYTHON312:-python3.12}
VENV=${REHEARSAL_VENV:-$ROOT/.rehearsal/venv}
IMAGE_LIST=$ROOT/launch/gpu_image_packages.txt
# Below setup.py's lower bounds (flax>=0.10, optax>=0.2.5, orbax-checkpoint>=0.11.30) or the
# carried gcsfs's fsspec pin: the upgrade path the real image may need.
OLDER=("flax==0.9.0" "orbax-checkpoint==0.11.28" "optax==0.2.4" "fsspec==2024.12.0")
if ! "$PYTHON312" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then
  echo "error: PYTHON312='$PYTHON312' is not a working Python 3.12 (set PYTHON312)" >&2
  exit 2
fi
if [[ ! -f "$ROOT/wheelhouse/from_image.txt" ]]; then
  echo "error: no wheelhouse at $ROOT/wheelhouse (run 'make wheelhouse')" >&2
  exit 2
fi

if [[ ! -f "$VENV/.installed" ]]; then
  echo "== building the stand-in for the GPU image in $VENV"
  rm -rf "$VENV"
  "$PYTHON312" -m venv "$VENV"
  mapfile -t known < <(grep -E '^[a-z0-9-]+==' "$IMAGE_LIST")
  "$VENV/bin/python" -m pip install --quiet "${known[@]}" "${OLDER[@]}" timm \
    -r "$ROOT/wheelhouse/from_image.txt"
  # What the wheelhouse carries and the image lacks must come from the wheelhouse.
  image_names=$(sed 's/#.*//; s/==.*//; /^[[:space:]]*$/d' "$IMAGE_LIST" | sort -u)
  carried=$(find "$ROOT/wheelhouse" -name '*.whl' -printf '%f\n' | cut -d- -f1 \
    | tr 'A-Z_.' 'a-z--' | sort -u)
  mapfile -t lacking < <(comm -23 <(echo "$carried") <(echo "$image_names"))
  "$VENV/bin/python" -m pip uninstall --quiet --yes "${lacking[@]}" 2>&1 \
    | sed '/not installed/d'
  touch "$VENV/.installed"
fi
rm -rf "$OUT_DIR" "$ROOT/.rehearsal/jax_cache"
PYTHON="$VENV/bin/python" LIVT_SITE="$ROOT/.rehearsal/site" \
  JAX_COMPILATION_CACHE_DIR="$ROOT/.rehearsal/jax_cache" \
  bash "$ROOT/launch/device_bench.sh" "$OUT_DIR" --size tiny
