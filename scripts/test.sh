#!/usr/bin/env bash
# Installs jaxrec into .venv and runs the test suite on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
JAX_PLATFORMS=${JAX_PLATFORMS:-cpu} .venv/bin/python -m pytest "$@"
