#!/bin/bash
# fuzz/run.sh TARGET [SECONDS] - fuzz one target (default 300 s), nice'd, starting from the
# committed seeds in fuzz/corpus/TARGET plus the regressions; the growing corpus is kept in
# build-fuzz/work/TARGET (not committed), crashes land in build-fuzz/artifacts/TARGET/.
# Prints libFuzzer's last status line (execs, cov:, ft:, exec/s) and exits non-zero on a crash,
# leak, timeout or OOM. Env: FUZZ_ARGS (extra libFuzzer flags),
# FUZZ_BUILD (build dir, default build-fuzz).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
t=${1:?usage: fuzz/run.sh TARGET [SECONDS]}
secs=${2:-300}
bdir=${FUZZ_BUILD:-$root/build-fuzz}
bin=$("$root/fuzz/build.sh" "$bdir" | tail -n1)/$t || exit 2
[ -x "$bin" ] || { echo "fuzz/run.sh: unknown target $t" >&2; exit 2; }
case $t in
  fuzz_decode) maxlen=65536 ;;      # seeds are <= 27 KiB; FFmpeg's probing needs a few KiB
  fuzz_safetensors) maxlen=65536 ;;
  fuzz_torch_ckpt) maxlen=65536 ;;  # seeds are tiny checkpoints, <= ~12 KiB
  *) maxlen=16384 ;;                # HTTP bodies/headers, as h2o does
esac
work=$bdir/work/$t
art=$bdir/artifacts/$t
mkdir -p "$work" "$art"
log=$bdir/work/$t.log
export ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1:abort_on_error=0
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export LSAN_OPTIONS=suppressions=$root/tests/lsan.supp
regs=()
[ -d "$root/fuzz/regressions/$t" ] && regs=("$root/fuzz/regressions/$t")
nice -n 10 "$bin" -max_total_time="$secs" -max_len=$maxlen -timeout=25 -rss_limit_mb=2560 \
  -print_final_stats=1 -artifact_prefix="$art/" ${FUZZ_ARGS:-} \
  "$work" "$root/fuzz/corpus/$t" "${regs[@]}" >"$log" 2>&1
rc=$?
grep -E "^#[0-9]+.*(DONE|pulse|NEW|REDUCE)" "$log" | tail -n1
grep -E "^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)" "$log"
if [ $rc -ne 0 ]; then
  echo "fuzz/run.sh: $t FAILED (exit $rc); log $log; artifacts:"
  ls -1 "$art"
  grep -m3 -E "ERROR: |runtime error|SUMMARY" "$log"
fi
exit $rc
