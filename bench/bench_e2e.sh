#!/bin/bash
# bench_e2e.sh [BUILD] - end-to-end `clmrd tag` throughput against compute-only inference.
#
# Encodes one 10-minute file and ten 1-minute files (mp3, 44.1 kHz stereo: a chord with vibrato over
# pink noise, made by ffmpeg), then in ROUNDS alternating rounds measures
#   e2e      wall time of `clmrd tag --json` (process start, model load, context build, decode,
#            inference, output) on the 10-minute file, and on the ten 1-minute files in one call
#            (decode of file i+1 overlaps inference of file i);
#   compute  bench_infer on the same model, threads and batch (chunks/s of clmr_infer_run alone),
# for PRECISIONS (default fp32 and bf16, bf16 only where the CPU has it), and prints chunks/s and
# the ratio e2e / compute of the same round. Environment: ROUNDS (3), THREADS (2), MODEL (the
# default model), PRECISIONS (fp32,bf16).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
model=${MODEL:-$root/models/clmr-default.safetensors}
rounds=${ROUNDS:-3} threads=${THREADS:-2}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
synth() { # synth DURATION OUT FREQ
  ffmpeg -v error -y -f lavfi -i "sine=frequency=$3:sample_rate=44100:duration=$1" \
    -f lavfi -i "sine=frequency=$(($3 * 5 / 4)):sample_rate=44100:duration=$1" \
    -f lavfi -i "anoisesrc=color=pink:sample_rate=44100:amplitude=0.05:duration=$1" \
    -filter_complex "[0][1][2]amix=inputs=3,vibrato=f=5,aformat=channel_layouts=stereo" \
    -c:a libmp3lame -b:a 192k "$2"
}
synth 600 "$tmp/long.mp3" 220
for i in $(seq 0 9); do synth 60 "$tmp/m$i.mp3" $((200 + 30 * i)); done
echo "== $(date -u +%FT%TZ) $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); threads $threads"
precs=${PRECISIONS:-fp32,bf16}
"$build/bench/bench_infer" "$model" --threads 1 --batch 1 --seconds 0 --precision bf16 \
  >/dev/null 2>&1 || precs=fp32
now() { date +%s.%N; }
for r in $(seq "$rounds"); do
  for p in ${precs//,/ }; do
    comp=$("$build/bench/bench_infer" "$model" --threads "$threads" --batch 8 --seconds 3 \
      --precision "$p" | awk '$1 == "RESULT" {print $5}')
    t0=$(now)
    c1=$("$build/clmrd" tag --json --threads "$threads" --precision "$p" --model "$model" \
      "$tmp/long.mp3" | /usr/bin/python3 -c 'import json,sys; print(sum(json.loads(l)["chunks"] for l in sys.stdin))')
    t1=$(now)
    c2=$("$build/clmrd" tag --json --threads "$threads" --precision "$p" --model "$model" \
      "$tmp"/m?.mp3 | /usr/bin/python3 -c 'import json,sys; print(sum(json.loads(l)["chunks"] for l in sys.stdin))')
    t2=$(now)
    /usr/bin/python3 -c "
c1, c2, t1, t2, comp = $c1, $c2, $t1 - $t0, $t2 - $t1, $comp
print(f'round $r $p: compute-only {comp:.1f} chunks/s; 10-min file {c1 / t1:.1f} chunks/s e2e '
      f'({c1 / t1 / comp:.2f}x of compute); 10 x 1-min files {c2 / t2:.1f} chunks/s e2e '
      f'({c2 / t2 / comp:.2f}x of compute); load $(cut -d' ' -f1 /proc/loadavg)')"
  done
done
