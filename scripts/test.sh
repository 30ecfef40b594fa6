#!/usr/bin/env bash
# Installs jaxrec into .venv and runs the test suite on the CPU, on 2 workers
# (most of the time is XLA compilation, which is single-threaded per program).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
JAX_PLATFORMS=${JAX_PLATFORMS:-cpu} .venv/bin/python -m pytest -n 2 --durations=15 "$@"
