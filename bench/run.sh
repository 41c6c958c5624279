#!/bin/bash
# run.sh [BUILD] - the inference benchmark: clmrd's oneDNN forward against PyTorch, side by side.
#
# Writes one official-width random model (bench/make_model.py, fixed seed) that both sides load, then
# runs ROUNDS rounds; in each round bench_infer (clmrd, default = split lanes), bench_infer with
# CLMR_DNNL_SPLIT=0 (one intra-op net) and bench_torch.py (eager + mkldnn Conv2d) each measure every
# (threads, batch) configuration for SECONDS seconds, in alternating order. Machines here are shared,
# so the summary reports, per configuration, the best and the median over rounds, GFLOP/s at 3.4572
# GFLOP per chunk, the fraction of the 428 GFLOP/s fp32 peak, and ratios ours / best PyTorch variant
# computed from values measured in the same rounds. Then one ONEDNN_VERBOSE=1 run gives the chosen
# implementation and time of every primitive (bench/layer_times.py).
#
# Environment: ROUNDS (3), SECONDS_EACH (1.5), THREADS (1,2), BATCHES (1,8,32), OUT (/tmp/clmr-bench).
set -euo pipefail
build=${1:-build}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
py=/usr/bin/python3
rounds=${ROUNDS:-3} secs=${SECONDS_EACH:-1.5} threads=${THREADS:-1,2} batches=${BATCHES:-1,8,32}
out=${OUT:-/tmp/clmr-bench}
mkdir -p "$out"
model=$out/official.safetensors
[ -f "$model" ] || $py bench/make_model.py "$model"
ninja -C "$build" bench/bench_infer >/dev/null
bin=$build/bench/bench_infer
results=$out/results.txt
: >"$results"
echo "== $(date -u +%FT%TZ) $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); rounds $rounds x ${secs}s"
for r in $(seq 1 "$rounds"); do
  c_run() {
    "$bin" "$model" --threads "$threads" --batch "$batches" --seconds "$secs" | tee -a "$results" | grep RESULT
    CLMR_DNNL_SPLIT=0 "$bin" "$model" --threads "$threads" --batch "$batches" --seconds "$secs" \
      --label clmr-nosplit | tee -a "$results" | grep RESULT
  }
  t_run() {
    $py bench/bench_torch.py "$model" --threads "$threads" --batch "$batches" --seconds "$secs" \
      | tee -a "$results" | grep -v '^#' || true
  }
  echo "-- round $r"
  if [ $((r % 2)) -eq 1 ]; then c_run; t_run; else t_run; c_run; fi
done
grep -h '^#' "$results" | sort -u
$py - "$results" <<'PYEOF'
import statistics, sys
from collections import defaultdict
rates = defaultdict(list)
for line in open(sys.argv[1]):
    f = line.split()
    if f and f[0] == "RESULT":
        rates[(f[1], int(f[2]), int(f[3]))].append(float(f[4]))
GF, PEAK = 3.4572, 428.0
print(f"{'impl':14s} {'thr':>3s} {'batch':>5s} {'best c/s':>9s} {'median':>8s} {'GFLOP/s':>8s} {'of peak':>7s}")
for (impl, th, b), v in sorted(rates.items(), key=lambda kv: (kv[0][1], kv[0][2], kv[0][0])):
    best = max(v)
    print(f"{impl:14s} {th:3d} {b:5d} {best:9.2f} {statistics.median(v):8.2f} {best * GF:8.1f} {best * GF / PEAK:7.1%}")
print("ratios, ours / best PyTorch variant (best-of-rounds; median-of-rounds):")
for th, b in sorted({(k[1], k[2]) for k in rates}):
    tb = max((max(rates[(t, th, b)]) for t in ("torch-eager", "torch-mkldnn") if (t, th, b) in rates), default=0)
    tm = max((statistics.median(rates[(t, th, b)]) for t in ("torch-eager", "torch-mkldnn") if (t, th, b) in rates), default=0)
    for ours in ("clmr", "clmr-nosplit"):
        if (ours, th, b) in rates and tb > 0:
            v = rates[(ours, th, b)]
            print(f"  {ours:14s} threads {th} batch {b:2d}: {max(v) / tb:5.2f}x ; {statistics.median(v) / tm:5.2f}x")
PYEOF
echo "== per-primitive times (ONEDNN_VERBOSE=1, 2 threads, batch 8; split lanes and one intra-op net)"
ONEDNN_VERBOSE=1 "$bin" "$model" --threads 2 --batch 8 --seconds 1 >"$out/verbose-split.txt"
$py bench/layer_times.py "$out/verbose-split.txt"
CLMR_DNNL_SPLIT=0 ONEDNN_VERBOSE=1 "$bin" "$model" --threads 2 --batch 8 --seconds 1 >"$out/verbose-nosplit.txt"
$py bench/layer_times.py "$out/verbose-nosplit.txt"
