#!/bin/bash
# tests/fuzz_smoke.sh [SECONDS] - CI smoke run of every libFuzzer target in fuzz/ for SECONDS each
# (default 20; env FUZZ_SMOKE_SECONDS also works), nice'd, with ASan + UBSan, from the committed
# seeds. Builds build-fuzz with fuzz/build.sh (clang-14) first. Prints one line per target
# (executions, coverage) and a closing "fuzz_smoke: N passed, N failed"; exits 1 if any target
# found a crash, leak, timeout or OOM (the input is in build-fuzz/artifacts/TARGET/: add it to
# fuzz/regressions/TARGET/ once fixed). Meant to be called from tests/run_all.sh.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-${FUZZ_SMOKE_SECONDS:-20}}
if ! "$root/fuzz/build.sh" >/dev/null; then
  echo "fuzz_smoke: build failed (fuzz/build.sh)"
  echo "fuzz_smoke: 0 passed, 1 failed"
  exit 1
fi
targets=$(sed -n "s/^fuzz_targets = \[\(.*\)\]/\1/p" "$root/fuzz/meson.build" | tr -d "',")
pass=0
fail=0
for t in $targets; do
  out=$("$root/fuzz/run.sh" "$t" "$secs" 2>&1)
  rc=$?
  stats=$(echo "$out" | head -n1)
  if [ $rc -eq 0 ]; then
    pass=$((pass + 1))
    echo "ok   $t: $stats"
  else
    fail=$((fail + 1))
    echo "FAIL $t:"
    echo "$out" | sed 's/^/    /'
  fi
done
echo "fuzz_smoke: $pass passed, $fail failed"
[ $fail -eq 0 ]
