#!/usr/bin/env bash
# CPU rehearsal of launch/device_bench.sh, the GPU kit, on a machine with a package index.
#
# usage: launch/rehearse_device_bench.sh OUT_DIR
#
# Builds (once) a fresh Python 3.12 virtual environment that stands in for the GPU image:
# CPU jax/jaxlib 0.11.2, torch, timm and every other dependency of livt-jax that the image
# holds (wheelhouse/from_image.txt), from the registry; then drops any distribution the
# wheelhouse provides, so grain, ml-collections, tensorflow-datasets, ... can only come
# from the wheelhouse. Then runs the kit itself
# with --size tiny: the same offline install, the same sections, a 32-wide ViT.
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
# The image's versions where they matter (jax 0.11.2); torch is the newest the index here
# allows. With them, every dependency of livt-jax that the wheelhouse leaves to the image.
STAND_IN=("jax[cpu]==0.11.2" "torch==2.14.1" "torchvision==0.29.1" timm)
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
  "$VENV/bin/python" -m pip install --quiet "${STAND_IN[@]}" -r "$ROOT/wheelhouse/from_image.txt"
  # Whatever the registry brought that the wheelhouse provides must come from the wheelhouse.
  mapfile -t provided < <(sed 's/==.*//' "$ROOT/wheelhouse/requirements.txt")
  "$VENV/bin/python" -m pip uninstall --quiet --yes "${provided[@]}" 2>&1 | grep -v "not installed" || true
  touch "$VENV/.installed"
fi
rm -rf "$OUT_DIR" "$ROOT/.rehearsal/jax_cache"
PYTHON="$VENV/bin/python" LIVT_SITE="$ROOT/.rehearsal/site" \
  JAX_COMPILATION_CACHE_DIR="$ROOT/.rehearsal/jax_cache" \
  bash "$ROOT/launch/device_bench.sh" "$OUT_DIR" --size tiny
