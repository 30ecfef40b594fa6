#!/usr/bin/env bash
# Creates .venv (Python 3.11+) and installs jaxrec with its test extras. Idempotent: once
# installed, a run with pyproject.toml unchanged installs (and prints) nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
# What was installed: pyproject.toml's hash and this checkout (an editable install points here).
STAMP=.venv/jaxrec-installed
WANT="$(sha256sum pyproject.toml | cut -d' ' -f1) $(pwd)"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# -I: the import must come from the install, not from the checkout in the current directory.
if [ "$(cat "$STAMP" 2>/dev/null)" = "$WANT" ] && .venv/bin/python -I -c "import jaxrec" 2>/dev/null; then
  exit 0
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[test]"
echo "$WANT" > "$STAMP"
