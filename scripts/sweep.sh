#!/usr/bin/env bash
# Installs jaxrec into .venv and runs a sweep (default: the missing_rates grid).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m experiments.sweep "${@:---grid=missing_rates}"
