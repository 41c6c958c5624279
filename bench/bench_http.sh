#!/bin/bash
# bench_http.sh [BUILD] - HTTP service measurements:
#  1. per precision (PRECISIONS, default "fp32 bf16"; bf16 only where the CPU has it): a fresh
#     daemon on an official-width random model; the time until /readyz answers 200 (start-up,
#     including the inference contexts it builds before it says ready); the first uncached 30 s
#     POST /v1/tag ("cold") and the next N-1 ("warm") reported separately, as client latency and
#     as service overhead (request latency minus decode minus inference, from the daemon's own
#     /metrics sums); and the daemon's peak RSS (VmHWM) after them;
#  2. wrk requests/s for a cached POST /v1/tag and for GET /v1/tracks/{id}/similar (last daemon).
# Needs /usr/bin/python3 (torch, for bench/make_model.py), ffmpeg, wrk, curl.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
tmp=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; rm -rf "$tmp"' EXIT
/usr/bin/python3 "$root/bench/make_model.py" "$tmp/model.safetensors" >/dev/null
n=${N:-5}
for i in $(seq $n); do
  ffmpeg -v error -y -f lavfi -i "sine=frequency=$((300 + 50 * i)):sample_rate=44100:duration=30" \
    -c:a libmp3lame -b:a 192k "$tmp/s$i.mp3"
done
echo "== $(date -u +%FT%TZ) $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
start_daemon() { # start_daemon PRECISION DATADIR
  port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  url=http://127.0.0.1:$port
  local t0=$(date +%s.%N)
  "$build/clmrd" serve --model "$tmp/model.safetensors" --data-dir "$2" --listen 127.0.0.1:$port \
    --workers 1 --inference-threads 2 --precision "$1" --log-level warn 2>"$tmp/log" &
  pid=$!
  for _ in $(seq 600); do curl -sf $url/readyz >/dev/null && break; sleep 0.1; done
  ready_s=$(echo "$(date +%s.%N) - $t0" | bc)
}
metric() { curl -s $url/metrics | awk -v m="$1" '$1 == m {v = $2} END {print v == "" ? 0 : v}'; }
snap() { echo "$(metric 'clmrd_http_request_duration_seconds_sum{route="/v1/tag"}') $(metric clmrd_decode_seconds_sum) $(metric clmrd_inference_seconds_sum)"; }
precs=${PRECISIONS:-fp32 bf16}
for p in $precs; do
  start_daemon "$p" "$tmp/data-$p" || continue
  if ! kill -0 $pid 2>/dev/null; then echo "precision $p: daemon did not start: $(tail -1 "$tmp/log")"; pid=; continue; fi
  s0=$(snap)
  lat=()
  for i in $(seq $n); do
    lat+=("$(curl -sf -o /dev/null -w '%{time_total}' -XPOST --data-binary @"$tmp/s$i.mp3" $url/v1/tag)")
    [ "$i" = 1 ] && s1=$(snap)
  done
  s2=$(snap)
  hwm=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)
  /usr/bin/python3 -c "
s0, s1, s2 = [list(map(float, x.split())) for x in ('$s0', '$s1', '$s2')]
lat = [float(v) for v in '${lat[*]}'.split()]
def over(a, b):
    t, d, i = (b[k] - a[k] for k in range(3))
    return t, d, i, t - d - i
c, w = over(s0, s1), over(s1, s2)
nw = len(lat) - 1
print(f'precision $p: ready after $ready_s s; peak RSS (VmHWM) {$hwm / 1024:.0f} MiB')
print(f'  cold (first request): client {lat[0]:.3f} s; daemon total {c[0]:.3f} s, decode {c[1]:.3f}, '
      f'inference {c[2]:.3f}, service overhead {c[3]:.3f} s = {100 * c[3] / c[0]:.2f}%')
print(f'  warm ({nw} requests, mean): client {sum(lat[1:]) / nw:.3f} s; daemon total {w[0] / nw:.3f} s, '
      f'decode {w[1] / nw:.3f}, inference {w[2] / nw:.3f}, service overhead {w[3] / nw:.3f} s = '
      f'{100 * w[3] / w[0]:.2f}%')"
  last=$p
  [ "$p" = "$(echo $precs | awk '{print $NF}')" ] || { kill -TERM $pid; wait $pid || true; pid=; }
done
[ -n "$pid" ] || exit 0
echo "(wrk below: precision $last daemon)"

# cached tag and similar-by-id under wrk (2 threads, 16 connections, 10 s each)
id=$(curl -sf -XPOST -F file=@"$tmp/s1.mp3" $url/v1/tracks | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
for i in $(seq 2 $n); do curl -sf -XPOST --data-binary @"$tmp/s$i.mp3" $url/v1/tracks >/dev/null; done
cat >"$tmp/post.lua" <<LUA
wrk.method = "POST"
local f = io.open("$tmp/s1.mp3", "rb"); wrk.body = f:read("*a"); f:close()
LUA
echo "wrk cached POST /v1/tag (30 s mp3, 705 KB body):"
wrk -t2 -c16 -d${WRK_S:-10}s -s "$tmp/post.lua" $url/v1/tag | grep -E "Requests/sec|Latency|Non-2xx"
echo "wrk GET /v1/tracks/{id}/similar?k=10 ($n tracks):"
wrk -t2 -c16 -d${WRK_S:-10}s "$url/v1/tracks/$id/similar?k=10" | grep -E "Requests/sec|Latency|Non-2xx"
kill -TERM $pid; wait $pid; echo "daemon exit status $?"
