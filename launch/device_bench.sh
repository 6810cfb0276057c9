#!/usr/bin/env bash
# The GPU measurement in one call, on a bare machine that cannot reach a package index.
#
# usage: launch/device_bench.sh OUT_DIR [--size full|tiny] [--budget-s S] [--only A,B]
#
# 1. installs the wheelhouse (`make wheelhouse`, carried beside the checkout) offline into
#    $LIVT_SITE with --no-index --no-deps: only what the image lacks, never its jax or torch;
# 2. runs `python -m livt_jax.device_bench run` (checks, then every lever, then PyTorch),
#    which rewrites OUT_DIR/results.json and OUT_DIR/results.md after each section;
# 3. the whole output also goes to OUT_DIR/log.txt.
# PYTHON picks the interpreter (default python3: the image's, with jax and torch);
# WHEELHOUSE the wheels (default <checkout>/wheelhouse).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
USAGE="usage: $0 OUT_DIR [--size full|tiny] [--budget-s S] [--only A,B]
  installs the wheelhouse offline, then runs 'python -m livt_jax.device_bench run --out OUT_DIR'
  with the options given (python -m livt_jax.device_bench run --help lists them).
  Environment: PYTHON (default python3), WHEELHOUSE (default <checkout>/wheelhouse),
  LIVT_SITE (default /tmp/livt_site)."
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
LIVT_SITE=${LIVT_SITE:-/tmp/livt_site}
if [[ ! -f "$WHEELHOUSE/requirements.txt" ]]; then
  echo "error: no wheelhouse at $WHEELHOUSE (run 'make wheelhouse' where there is network," \
    "then carry the folder)" >&2
  exit 2
fi
mkdir -p "$OUT_DIR"
exec > >(tee -a "$OUT_DIR/log.txt") 2>&1

versions() {
  "$PYTHON" - <<'EOF'
import importlib.metadata as m
for name in ("jax", "jaxlib", "torch"):
    try:
        print(name, m.version(name))
    except m.PackageNotFoundError:
        print(name, "absent")
EOF
}

start=$SECONDS
before=$(versions)
echo "== install: $(wc -l <"$WHEELHOUSE/requirements.txt") wheels from $WHEELHOUSE into $LIVT_SITE"
rm -rf "$LIVT_SITE"
"$PYTHON" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir \
  --disable-pip-version-check --target "$LIVT_SITE" --find-links "$WHEELHOUSE" \
  -r "$WHEELHOUSE/requirements.txt"
export PYTHONPATH="$ROOT:$LIVT_SITE${PYTHONPATH:+:$PYTHONPATH}"
after=$(versions)
if [[ "$before" != "$after" ]]; then
  echo "error: the install changed jax/torch: ${before//$'\n'/, } -> ${after//$'\n'/, }" >&2
  exit 1
fi
echo "== kept the image's ${after//$'\n'/, }; pip check (a mismatch is reported, not fatal):"
"$PYTHON" -m pip check --disable-pip-version-check || true
"$PYTHON" -c "import grain, ml_collections, tensorflow_datasets, livt_jax.train"
echo "== installed and imported in $((SECONDS - start)) s"

cd "$ROOT"
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-/tmp/livt_jax_cache}
export PYTHONUNBUFFERED=1
"$PYTHON" -m livt_jax.device_bench run --out "$OUT_DIR" "$@"
echo "== done in $((SECONDS - start)) s"
