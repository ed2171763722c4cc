#!/usr/bin/env bash
# The wheels a GPU machine without network lacks (constraints/gpu-wheels.txt) for its Python 3.12 on x86-64,
# downloaded where a package index is reachable: scripts/gpu_wheels.sh [DIR] (default .whl/; `make gpu-wheels`).
# tests/test_gpu_wheels.py runs this into a temporary directory and installs the result offline.
set -euo pipefail
cd "$(dirname "$0")/.."
"${PYTHON:-python3}" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "${1:-.whl}" -r constraints/gpu-wheels.txt
