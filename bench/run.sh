#!/bin/bash
# run.sh [BUILD] - the inference benchmark: clmrd's oneDNN forward against PyTorch, side by side.
#
# Writes one official-width random model (bench/make_model.py, fixed seed) that both sides load, then
# runs ROUNDS rounds; in each round bench_infer (clmrd fp32 and bf16) and bench_torch.py (eager fp32,
# mkldnn Conv2d fp32, mkldnn Conv2d bf16) each measure every (threads, batch) configuration for
# SECONDS_EACH seconds, in alternating order (clmrd first in odd rounds, PyTorch first in even ones).
#
# PyTorch is measured as a deployment would run it, never with glibc's default malloc (with it,
# every large tensor is a fresh mmap whose pages fault on first touch in every forward: 5-10x slower
# here): once with GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736
# ("-tuned") and once with Debian's jemalloc preloaded ("-jemalloc", when libjemalloc2 is installed,
# MALLOC_CONF keeping freed pages; mkldnn variants only, eager is always the slowest).
# clmrd runs under the same tuned malloc (it allocates its buffers once, so it makes no difference).
# OMP_NUM_THREADS is set to the thread count for both.
#
# The summary gives, per configuration, the best and the median over rounds, GFLOP/s at 3.4572 GFLOP
# per chunk and ratios computed from values measured in the same rounds: clmrd fp32 / the best
# PyTorch fp32 variant (any allocator), clmrd bf16 / the best PyTorch bf16 variant. Then the
# first-call cost (bench_infer FIRST lines) and, with LAYERS=1, one ONEDNN_VERBOSE=1 run per
# precision gives the chosen implementation and time of every primitive (bench/layer_times.py).
#
# Environment: ROUNDS (3), SECONDS_EACH (1.5), THREADS (1,2), BATCHES (8,32), OUT (/tmp/clmr-bench),
# TORCH_VARIANTS (eager,mkldnn,mkldnn-bf16), JEMALLOC_VARIANTS (mkldnn,mkldnn-bf16), EXTRA=1 adds clmrd's layout variants (no split lanes,
# oneDNN's own brgconv/nwc choice), LAYERS=1 the per-primitive times.
set -euo pipefail
build=${1:-build}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
py=/usr/bin/python3
rounds=${ROUNDS:-3} secs=${SECONDS_EACH:-1.5} threads=${THREADS:-1,2} batches=${BATCHES:-8,32}
variants=${TORCH_VARIANTS:-eager,mkldnn,mkldnn-bf16}
jvariants=${JEMALLOC_VARIANTS:-mkldnn,mkldnn-bf16}
# jemalloc as PyTorch deployments configure it: freed pages are kept (no decay back to the OS),
# else it returns them and every forward faults them in again (eager ran at 0.3 chunks/s here)
jemalloc_conf=${JEMALLOC_CONF:-background_thread:true,dirty_decay_ms:-1,muzzy_decay_ms:-1}
out=${OUT:-/tmp/clmr-bench}
tuned="glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736"
jemalloc=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2
mkdir -p "$out"
model=$out/official.safetensors
[ -f "$model" ] || $py bench/make_model.py "$model"
ninja -C "$build" bench/bench_infer >/dev/null
bin=$build/bench/bench_infer
results=$out/results.txt
: >"$results"
maxthr=$(echo "$threads" | tr ',' '\n' | sort -n | tail -1)
echo "== $(date -u +%FT%TZ) $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); rounds $rounds x ${secs}s"
have_bf16=1
"$bin" "$model" --threads 1 --batch 1 --seconds 0 --precision bf16 >/dev/null 2>&1 || have_bf16=0
[ $have_bf16 = 1 ] || echo "# no native bf16 on this CPU: clmrd bf16 not measured"
c_run() {
  local p
  for p in fp32 $([ $have_bf16 = 1 ] && echo bf16); do
    GLIBC_TUNABLES=$tuned OMP_NUM_THREADS=$maxthr "$bin" "$model" --threads "$threads" \
      --batch "$batches" --seconds "$secs" --precision $p | tee -a "$results" | grep RESULT
  done
  if [ "${EXTRA:-0}" = 1 ]; then
    CLMR_DNNL_SPLIT=0 "$bin" "$model" --threads "$threads" --batch "$batches" --seconds "$secs" \
      --label clmr-nosplit | tee -a "$results" | grep RESULT
    CLMR_DNNL_BLOCKED_FROM=16 "$bin" "$model" --threads "$threads" --batch "$batches" \
      --seconds "$secs" --label clmr-brgconv | tee -a "$results" | grep RESULT
  fi
}
t_run() {
  # one process per thread count so OMP_NUM_THREADS matches torch.set_num_threads
  local th
  for th in ${threads//,/ }; do
    GLIBC_TUNABLES=$tuned OMP_NUM_THREADS=$th $py bench/bench_torch.py "$model" --threads "$th" \
      --batch "$batches" --seconds "$secs" --variants "$variants" --label=-tuned \
      | tee -a "$results" | grep -v '^#' || true
    if [ -e "$jemalloc" ]; then
      LD_PRELOAD=$jemalloc MALLOC_CONF=$jemalloc_conf OMP_NUM_THREADS=$th $py bench/bench_torch.py \
        "$model" --threads "$th" --batch "$batches" --seconds "$secs" --variants "$jvariants" \
        --label=-jemalloc \
        | tee -a "$results" | grep -v '^#' || true
    fi
  done
}
for r in $(seq 1 "$rounds"); do
  echo "-- round $r (load $(cut -d' ' -f1-3 /proc/loadavg))"
  if [ $((r % 2)) -eq 1 ]; then c_run; t_run; else t_run; c_run; fi
done
grep -h '^# ' "$results" | sort -u
echo "== end $(date -u +%FT%TZ), load $(cut -d' ' -f1-3 /proc/loadavg)"
$py bench/summarize.py "$results"
if [ "${LAYERS:-0}" = 1 ]; then
  for p in fp32 bf16; do
    echo "== per-primitive times ($p, ONEDNN_VERBOSE=1, 2 threads, batch 8, split lanes)"
    ONEDNN_VERBOSE=1 "$bin" "$model" --threads 2 --batch 8 --seconds 1 --precision $p \
      >"$out/verbose-$p.txt" || continue
    $py bench/layer_times.py "$out/verbose-$p.txt"
  done
fi
