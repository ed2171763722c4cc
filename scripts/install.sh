#!/usr/bin/env bash
# Make .venv and install the package into it (idempotent; a few seconds when already done).
#   scripts/install.sh          torch as pip resolves it: the CUDA build on a GPU machine
#   scripts/install.sh --cpu    torch pinned by constraints/ci.txt (this project's CPU machines and CI)
set -euo pipefail
cd "$(dirname "$0")/.."
constraints=()
if [ "${1:-}" = "--cpu" ]; then
  constraints=(-c constraints/ci.txt)
fi
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]' "${constraints[@]}"
