#!/usr/bin/env bash
# The device command (docs/gpu.md; `make gpu-check-command` prints it): run as is on the lent GPU machine, in
# the repository's root, with .whl/ carried (`make gpu-wheels` beforehand). scripts/gpu_check.sh installs the
# wheels into /tmp/site and runs the check; a SIGTERM cuts it at GPU_CHECK_CUT_S (default 400 s: the check
# itself ends within 360 s of its start); then, whether it passed, failed or was cut, gpu_check.json,
# gpu_check.md, its output (gpu_check.log) and the smoke runs' logs are copied to $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
: "${OUT:?set OUT to the directory the results go to (the device sets it)}"
results=${GPU_CHECK_OUT:-runs/gpu_check}
PYTHONUNBUFFERED=1 timeout -k 10 "${GPU_CHECK_CUT_S:-400}" scripts/gpu_check.sh --out_dir "$results" "$@" 2>&1 |
  tee "$OUT/gpu_check.log"
rc=${PIPESTATUS[0]}
cp "$results/gpu_check.json" "$results/gpu_check.md" "$OUT/" || echo "no results were written (exit $rc)" >&2
(cd "$results" && [ -d work/runs/logs ] && tar -czf "$OUT/gpu_check_logs.tar.gz" work/runs/logs) # the runs' logs
echo "gpu-check exit $rc; in \$OUT: $(ls "$OUT" | tr '\n' ' ')"
exit "$rc"
