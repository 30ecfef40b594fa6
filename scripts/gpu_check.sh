#!/usr/bin/env bash
# The GPU check in one call (benchmarks/gpu.py): run from a fresh checkout on a GPU
# machine, or with --dry-run anywhere (CPU, tiny sizes, under 3 minutes).
#
#   bash scripts/gpu_check.sh                 # on the device: writes into $OUT
#   bash scripts/gpu_check.sh --dry-run --out /tmp/dry
#
# Writes OUT/summary.md, OUT/summary.json and OUT/gpu_check.tar.gz (every log,
# table and the sweep's results): three files, since the device tool returns at
# most 8. The unpacked folder is kept beside it, in OUT.d. Python: $PYTHON, else
# .venv/bin/python if present, else python3 (the GPU image's, with jax and flax).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${OUT:-gpu_check_out}
ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT_DIR=$2; shift 2 ;;
    *) ARGS+=("$1"); shift ;;
  esac
done
if [ -n "${PYTHON:-}" ]; then PY=$PYTHON
elif [ -x .venv/bin/python ]; then PY=.venv/bin/python
else PY=python3; fi
mkdir -p "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)
WORK="$OUT_DIR.d"
rm -rf "$WORK"
"$PY" -m benchmarks.gpu --out "$WORK" --python "$PY" "${ARGS[@]}"
rc=$?
cp "$WORK/summary.md" "$WORK/summary.json" "$OUT_DIR/" 2>/dev/null
tar -czf "$OUT_DIR/gpu_check.tar.gz" -C "$(dirname "$WORK")" "$(basename "$WORK")"
cat "$OUT_DIR/summary.md" 2>/dev/null
exit $rc
