#!/usr/bin/env bash
# The GPU check on a machine whose own python3 holds torch (CUDA) but not this package, nor pydantic/datasets:
# wheels from .whl/ (`make gpu-wheels`, copied along) go to /tmp/site when those are missing; the package runs
# from src/.
#   scripts/gpu_check.sh                  GPU mode, within 6 minutes of its start on one H200 (docs/gpu.md)
#                                         -> runs/gpu_check/gpu_check.{json,md}, rewritten after every part
#   scripts/gpu_check.sh --mode cpu       the same on CPU with tiny models (tests/test_gpu_check.py runs this)
# Any arguments go to `chinchilla gpu-check` (--out_dir, --settings, --deadline_s). On the lent GPU machine
# run scripts/gpu_check_device.sh instead: it also copies the results to $OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c "import pydantic, datasets" 2> /dev/null && compgen -G ".whl/*.whl" > /dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
elif ! "$PY" -c "import pydantic, datasets" 2> /dev/null; then
  echo "error: $PY lacks pydantic/datasets and there is no .whl/: run 'make gpu-wheels' where PyPI is reachable" \
    "and bring .whl/ along" >&2
  exit 2
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" -m chinchilla_pipeline.cli gpu-check "$@"
