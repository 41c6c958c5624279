#!/bin/bash
# bench_http.sh [BUILD] - HTTP service measurements:
#  1. service overhead of an uncached 30 s POST /v1/tag (request latency minus decode minus
#     inference, from the daemon's own /metrics sums) on an official-width random model;
#  2. wrk requests/s for a cached POST /v1/tag and for GET /v1/tracks/{id}/similar.
# Needs /usr/bin/python3 (torch, for bench/make_model.py), ffmpeg, wrk, curl.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
tmp=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; rm -rf "$tmp"' EXIT
/usr/bin/python3 "$root/bench/make_model.py" "$tmp/model.safetensors" >/dev/null
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
url=http://127.0.0.1:$port
"$build/clmrd" serve --model "$tmp/model.safetensors" --data-dir "$tmp/data" --listen 127.0.0.1:$port \
  --workers 1 --inference-threads 2 --log-level warn 2>"$tmp/log" &
pid=$!
for _ in $(seq 200); do curl -sf $url/readyz >/dev/null && break; sleep 0.1; done
metric() { curl -s $url/metrics | awk -v m="$1" '$1 == m {print $2}'; }

n=${N:-5}
for i in $(seq $n); do
  ffmpeg -v error -y -f lavfi -i "sine=frequency=$((300 + 50 * i)):sample_rate=44100:duration=30" \
    -c:a libmp3lame -b:a 192k "$tmp/s$i.mp3"
done
for i in $(seq $n); do curl -sf -XPOST --data-binary @"$tmp/s$i.mp3" $url/v1/tag >/dev/null; done
total=$(metric 'clmrd_http_request_duration_seconds_sum{route="/v1/tag"}')
dec=$(metric clmrd_decode_seconds_sum)
inf=$(metric clmrd_inference_seconds_sum)
/usr/bin/python3 -c "
t, d, i = $total, $dec, $inf
print(f'uncached 30 s mp3 POST /v1/tag x $n: total {t:.3f} s, decode {d:.3f} s, inference {i:.3f} s, '
      f'service overhead {t - d - i:.3f} s = {100 * (t - d - i) / t:.2f}% of the request time')"

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
