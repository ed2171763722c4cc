#!/usr/bin/env bash
# The test command (README, CI): makes .venv, installs the package with the CPU build of torch
# (constraints/ci.txt pins it; GPU users install without it), runs the suite.
# pytest's exit code 5 (no tests collected) is a failure, not a pass.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]' -c constraints/ci.txt
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "error: pytest collected no tests" >&2
  exit 1
fi
exit "$rc"
