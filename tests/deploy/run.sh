#!/bin/bash
# run.sh - the deployment tests that need podman, for tests/run_all.sh. Runs test_container.sh,
# passes its TAP lines through, and prints one "N passed, N failed" line of its own (the inner
# summary is dropped so the integrator's sum counts each check once). A crash of the inner script
# without a "not ok" line still counts as one failure. Exit status non-zero on any failure.
# The nginx, compose/Kubernetes and systemd checks are pytest files in tests/python (run there).
# Usage: tests/deploy/run.sh [BUILD]  - BUILD (default build) is the host build dir; when it holds
# clmrd the container's scores are also compared with the host binary's.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:-build}
case $build in /*) ;; *) build=$root/$build ;; esac
[ -x "$build/clmrd" ] && export CLMRD_BUILD=$build
log=$(mktemp /tmp/clmrd-deploy-run.XXXXXX)
t0=$(date +%s.%N)
"$here/test_container.sh" >"$log" 2>&1
rc=$?
wall=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
grep -Ev '^[0-9]+ passed, [0-9]+ failed$|^# [0-9]+ skipped$' "$log"
passed=$(grep '^ok ' "$log" | grep -vc '# SKIP')
skipped=$(grep '^ok ' "$log" | grep -c '# SKIP')
failed=$(grep -c '^not ok ' "$log")
[ "$rc" -ne 0 ] && [ "$failed" -eq 0 ] && failed=1 && echo "not ok - test_container.sh exited $rc"
rm -f "$log"
echo "# tests/deploy/run.sh wall time: $wall s ($skipped skipped, not counted)"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
