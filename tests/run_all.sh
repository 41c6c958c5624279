#!/bin/bash
# run_all.sh [BUILD] - every test of the project, ending with "N passed, N failed".
#  1. the C unit and API tests of the normal build (meson test, TAP subtests counted),
#  2. the same C tests in an address+undefined sanitizer build (skipped with CLMR_SKIP_SANITIZE=1),
#  2b. the concurrency tests (meson suite 'concurrency': workers, admin, store, pool, index, loader)
#     in a thread-sanitizer build, build-tsan (skipped with CLMR_SKIP_TSAN=1 or CLMR_SKIP_SANITIZE=1),
#  3. a short libFuzzer run of every fuzz target (skipped with CLMR_SKIP_FUZZ=1),
#  4. the container tests with podman (skipped with CLMR_SKIP_DEPLOY=1),
#  5. the Python tests (pytest under Debian's /usr/bin/python3: golden references, tools, API),
#  6. source checks: every C file is clang-format clean (.clang-format, clang-format 14).
set -uo pipefail
build=${1:-build}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
passed=0 failed=0
logs=$(mktemp -d /tmp/clmr-test-logs.XXXXXX)  # per run: worktrees run in parallel
count_meson() { # BUILD_DIR: add the TAP subtests of its last meson test run to the totals
  local log=$1/meson-logs/testlog.json p f
  read -r p f < <(/usr/bin/python3 tests/tools/count_meson_results.py "$log")
  passed=$((passed + p)); failed=$((failed + f))
}

echo "== C tests ($build)"
meson test -C "$build" --print-errorlogs --num-processes 2 >$logs/meson-test.log 2>&1
st=$?; tail -n 30 $logs/meson-test.log; count_meson "$build"
[ $st -eq 0 ] || echo "C tests failed"

if [ "${CLMR_SKIP_SANITIZE:-0}" != 1 ]; then
  echo "== C tests under AddressSanitizer + UndefinedBehaviorSanitizer (build-asan)"
  if [ ! -f build-asan/build.ninja ]; then
    meson setup build-asan -Dbuildtype=debugoptimized -Db_sanitize=address,undefined \
      -Db_lundef=false -Dbench=false >$logs/asan-setup.log 2>&1 || { cat $logs/asan-setup.log; failed=$((failed + 1)); }
  fi
  if ninja -C build-asan >$logs/asan-build.log 2>&1; then
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
    LSAN_OPTIONS=suppressions=$root/tests/lsan.supp:print_suppressions=0 \
    UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
      meson test -C build-asan --print-errorlogs --num-processes 2 --suite unit --timeout-multiplier 4 \
      >$logs/asan-test.log 2>&1
    tail -n 30 $logs/asan-test.log; count_meson build-asan
  else
    tail -n 40 $logs/asan-build.log; failed=$((failed + 1))
  fi
fi

if [ "${CLMR_SKIP_TSAN:-0}" != 1 ] && [ "${CLMR_SKIP_SANITIZE:-0}" != 1 ]; then
  echo "== concurrency tests under ThreadSanitizer (build-tsan, suite 'concurrency')"
  if [ ! -f build-tsan/build.ninja ]; then
    meson setup build-tsan -Dbuildtype=debugoptimized -Db_sanitize=thread -Db_lundef=false \
      -Dbench=false >$logs/tsan-setup.log 2>&1 || { cat $logs/tsan-setup.log; failed=$((failed + 1)); }
  fi
  # only the programs of the suite (the whole tree under TSan would double the build time)
  targets=$(meson introspect build-tsan --tests 2>/dev/null | /usr/bin/python3 -c '
import json, os, sys
for t in json.load(sys.stdin):
    if "concurrency" in t["suite"] or any(s.endswith(":concurrency") for s in t["suite"]):
        print(os.path.relpath(t["cmd"][0], os.path.abspath("build-tsan")))')
  if [ -n "$targets" ] && ninja -C build-tsan $targets >$logs/tsan-build.log 2>&1; then
    # OpenMP threads come from an uninstrumented libgomp (false reports): one OpenMP thread;
    # the tests' own pthreads are what is checked. A report makes the test exit 66 (failed).
    OMP_NUM_THREADS=1 TSAN_OPTIONS=halt_on_error=0:second_deadlock_stack=1:suppressions=$root/tests/tsan.supp \
      meson test -C build-tsan --no-rebuild --print-errorlogs --num-processes 2 --suite concurrency \
      --timeout-multiplier 6 >$logs/tsan-test.log 2>&1
    tail -n 12 $logs/tsan-test.log; count_meson build-tsan
  else
    tail -n 40 $logs/tsan-build.log; failed=$((failed + 1))
  fi
fi

if [ "${CLMR_SKIP_FUZZ:-0}" != 1 ] && [ "${CLMR_SKIP_SANITIZE:-0}" != 1 ]; then
  echo "== libFuzzer smoke run (${CLMR_FUZZ_SECONDS:-10} s per target)"
  tests/fuzz_smoke.sh "${CLMR_FUZZ_SECONDS:-10}" >$logs/fuzz.log 2>&1
  tail -n 8 $logs/fuzz.log
  read -r p f < <(sed -n 's/^fuzz_smoke: \([0-9]*\) passed, \([0-9]*\) failed$/\1 \2/p' $logs/fuzz.log)
  passed=$((passed + ${p:-0})); failed=$((failed + ${f:-1}))
fi

if [ "${CLMR_SKIP_DEPLOY:-0}" != 1 ]; then
  echo "== Container tests (podman; tests/deploy/run.sh)"
  tests/deploy/run.sh "$build" >$logs/deploy.log 2>&1
  tail -n 12 $logs/deploy.log
  read -r p f < <(sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\1 \2/p' $logs/deploy.log | tail -n 1)
  passed=$((passed + ${p:-0})); failed=$((failed + ${f:-1}))
fi

echo "== Python tests"
CLMRD_BUILD="$root/$build" /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/python \
  --junitxml=$logs/pytest.xml >$logs/pytest.log 2>&1
st=$?; tail -n 40 $logs/pytest.log
if [ $st -eq 0 ] || [ $st -eq 1 ]; then
  read -r p f < <(/usr/bin/python3 tests/tools/count_junit.py $logs/pytest.xml)
  passed=$((passed + p)); failed=$((failed + f))
elif [ $st -ne 5 ]; then # 5 = no tests collected
  echo "pytest could not run (exit $st)"; failed=$((failed + 1))
fi

echo "== Source checks"
if clang-format --dry-run --Werror $(git ls-files '*.c' '*.h') >$logs/format.log 2>&1; then
  echo "clang-format: clean"; passed=$((passed + 1))
else
  grep 'error:' $logs/format.log | head -n 20
  echo "clang-format: not clean (run 'make format')"; failed=$((failed + 1))
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
