#!/usr/bin/env bash
# The GPU measurement in one call, on a bare machine that cannot reach a package index.
#
# usage: launch/device_bench.sh OUT_DIR [--size full|tiny] [--budget-s S] [--only A,B]
#
# 1. installs livt-jax's requirements from the wheelhouse (`make wheelhouse`, carried beside
#    the checkout) offline into $LIVT_SITE, a virtual environment over the image's packages:
#    pip keeps every image package that satisfies setup.py's bounds and takes from the
#    wheelhouse only what is missing or too old; jax, jaxlib and torch are pinned to the
#    image's; `pip check` must pass;
# 2. runs `python -m livt_jax.tools.device_bench run` (checks, then every lever, then PyTorch),
#    which rewrites OUT_DIR/results.json and OUT_DIR/results.md after each section;
# 3. the whole output also goes to OUT_DIR/log.txt.
# PYTHON picks the image's interpreter (default python3, with jax and torch);
# WHEELHOUSE the wheels (default <checkout>/wheelhouse).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
USAGE="usage: $0 OUT_DIR [--size full|tiny] [--budget-s S] [--only A,B]
  installs the wheelhouse offline, then runs 'python -m livt_jax.tools.device_bench run --out OUT_DIR'
  with the options given (python -m livt_jax.tools.device_bench run --help lists them).
  Environment: PYTHON (default python3), WHEELHOUSE (default <checkout>/wheelhouse),
  LIVT_SITE (the environment made, default /tmp/livt_env)."
if [[ $# -ge 1 && ( "$1" == -h || "$1" == --help ) ]]; then
  echo "$USAGE"
  exit 0
fi
if [[ $# -lt 1 || "$1" == -* ]]; then
  echo "$USAGE" >&2
  exit 2
fi
OUT_DIR=$1
shift
PYTHON=${PYTHON:-python3}
WHEELHOUSE=${WHEELHOUSE:-$ROOT/wheelhouse}
LIVT_SITE=${LIVT_SITE:-/tmp/livt_env}
if [[ ! -f "$WHEELHOUSE/requirements.txt" ]]; then
  echo "error: no wheelhouse at $WHEELHOUSE (run 'make wheelhouse' where there is network," \
    "then carry the folder)" >&2
  exit 2
fi
mkdir -p "$OUT_DIR"
exec > >(tee -a "$OUT_DIR/log.txt") 2>&1

versions() {
  "$1" - <<'EOF'
import importlib.metadata as m
for name in ("jax", "jaxlib", "torch"):
    try:
        print(f"{name}=={m.version(name)}")
    except m.PackageNotFoundError:
        pass
EOF
}

start=$SECONDS
pins=$(versions "$PYTHON")
echo "== install: livt-jax's requirements from $(find "$WHEELHOUSE" -name '*.whl' | wc -l)" \
  "wheels in $WHEELHOUSE into $LIVT_SITE, over the image's ${pins//$'\n'/, }"
rm -rf "$LIVT_SITE"
# A virtual environment that sees the image's packages after its own (a .pth naming the
# image interpreter's site folders: --system-site-packages would show only those of the
# base interpreter, not of an image whose python is itself a virtual environment).
"$PYTHON" -m venv "$LIVT_SITE"
"$PYTHON" -c 'import sys; print("\n".join(p for p in sys.path if p.endswith("-packages")))' \
  >"$("$LIVT_SITE/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/image.pth"
PYTHON=$LIVT_SITE/bin/python
echo "$pins" >"$LIVT_SITE/image_pins.txt"
# Only what is missing or too old is installed; the pins make a change of jax, jaxlib or
# torch an error.
"$PYTHON" -m pip install --quiet --no-index --no-cache-dir --disable-pip-version-check \
  --find-links "$WHEELHOUSE" -c "$LIVT_SITE/image_pins.txt" -r "$WHEELHOUSE/requirements.txt"
after=$(versions "$PYTHON")
if [[ "$pins" != "$after" ]]; then
  echo "error: the install changed jax/torch: ${pins//$'\n'/, } -> ${after//$'\n'/, }" >&2
  exit 1
fi
echo "== kept the image's ${after//$'\n'/, }; from the wheelhouse:"
"$PYTHON" -m pip list --local --format=freeze --disable-pip-version-check | sed '/^pip==/d'
echo "== pip check:"
"$PYTHON" -m pip check --disable-pip-version-check
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
"$PYTHON" -c "import grain, ml_collections, tensorflow_datasets, livt_jax.train"
echo "== installed and imported in $((SECONDS - start)) s"

cd "$ROOT"
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-/tmp/livt_jax_cache}
export PYTHONUNBUFFERED=1
"$PYTHON" -m livt_jax.tools.device_bench run --out "$OUT_DIR" "$@"
echo "== done in $((SECONDS - start)) s"
