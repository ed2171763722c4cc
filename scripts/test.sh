#!/usr/bin/env bash
# The test command (README, CI): .venv with the package and the CPU build of torch, then the suite.
# pytest's exit code 5 (no tests collected) is a failure, not a pass.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh --cpu
# Style is checked, not argued: lint and formatting (pyproject.toml [tool.ruff]) before the tests.
.venv/bin/ruff check src tests scripts
.venv/bin/ruff format --check src tests scripts
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "error: pytest collected no tests" >&2
  exit 1
fi
exit "$rc"
