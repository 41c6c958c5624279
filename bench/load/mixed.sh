#!/bin/bash
# mixed.sh [BUILD] - load benchmark of clmrd (not a test): a mixed workload with wrk (mixed.lua:
# 55% search, 30% cached tag, 12% similar-by-id, 3% real uploads) in four phases:
#  1. saturation: unpaced wrk at CONNS_LIST connections (default "4 8 16"), SAT_S s each; the
#     best req/s is the saturation throughput S;
#  2. sustained: 70% of S for HOLD_S s (default 60), paced per connection (mixed.lua's delay());
#     VmRSS of the daemon sampled every second; expect zero non-2xx and flat RSS;
#  3. overload: 3 x (workers + queue-depth) connections, unpaced, for OVER_S s:
#     count 503s, and time single uploads sent during an overload (how fast a 503 comes);
#  4. recovery: the 70% load again for REC_S s: expect zero errors and latency back to phase 2.
# Env: MODEL (default the tiny test model: the service path, not the network, is measured),
# TRACKS (catalogue size, default 200), WORKERS (2). Prints RESULT lines; see docs/reliability.md.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$root/build}
model=${MODEL:-$root/tests/fixtures/models/tiny.safetensors}
tmp=$(mktemp -d /tmp/clmr-load.XXXXXX)
pid=; sampler=
trap '[ -n "$sampler" ] && kill $sampler 2>/dev/null; [ -n "$pid" ] && kill $pid 2>/dev/null; rm -rf "$tmp"' EXIT
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
url=http://127.0.0.1:$port
"$build/clmrd" serve --model "$model" --data-dir "$tmp/data" --listen 127.0.0.1:$port \
  --workers ${WORKERS:-2} --queue-depth ${QUEUE:-16} --request-timeout-s ${DEADLINE_S:-120} \
  --connection-limit ${CONN_LIMIT:-256} --log-level warn 2>"$tmp/log" &
pid=$!
for _ in $(seq 300); do curl -sf $url/readyz >/dev/null && break; sleep 0.1; done

# catalogue, search bodies (real embeddings), one cached upload
/usr/bin/python3 - "$url" "$tmp" "${TRACKS:-200}" <<'PY'
import json, math, random, struct, sys, urllib.request
url, d, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
rng = random.Random(7)
def wav(sec=0.5, rate=22050):
    f = rng.uniform(80, 5000); k = int(sec * rate)
    pcm = struct.pack("<%dh" % k, *(int(9000 * math.sin(2 * math.pi * f * i / rate) + rng.randint(-2000, 2000)) for i in range(k)))
    return struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + len(pcm), b"WAVE", b"fmt ", 16, 1, 1, rate, rate * 2, 2, 16, b"data", len(pcm)) + pcm
def post(path, body):
    with urllib.request.urlopen(urllib.request.Request(url + path, data=body, method="POST"), timeout=60) as r:
        return json.load(r)
ids = [post("/v1/tracks", wav())["id"] for _ in range(n)]
open(d + "/ids.txt", "w").write("\n".join(ids) + "\n")
for i in range(1, 21):
    e = post("/v1/tag?embedding=true", wav())["embedding"]
    open(d + "/search%d.json" % i, "w").write(json.dumps({"embedding": e, "k": 10}))
c = wav(); open(d + "/cached.wav", "wb").write(c); post("/v1/tag", c)
print("setup: %d tracks, %d-d embeddings" % (n, len(e)))
PY

rss_sampler() { # FILE: one "seconds VmRSS_kB" line per second
  local t=0
  while kill -0 $pid 2>/dev/null; do
    echo "$t $(awk '/^VmRSS/ {print $2}' /proc/$pid/status)" >>"$1"; sleep 1; t=$((t + 1))
  done
}
run_wrk() { # NAME CONNS SECONDS DELAY_MS
  echo "-- $1: $2 connections, $3 s, delay ${4} ms per request per connection"
  wrk -t2 -c$2 -d$3s --timeout 10s -s "$root/bench/load/mixed.lua" $url -- "$tmp" $4 | grep RESULT | tee "$tmp/$1.out"
}
rate_of() { sed -n 's/.* = \([0-9.]*\) req\/s.*/\1/p' "$tmp/$1.out"; }

echo "== 1. saturation"
best=0 bestc=0
for c in ${CONNS_LIST:-4 8 16}; do
  run_wrk sat$c $c ${SAT_S:-15} 0
  r=$(rate_of sat$c)
  if /usr/bin/python3 -c "import sys; sys.exit(0 if $r > $best else 1)"; then best=$r; bestc=$c; fi
done
echo "RESULT saturation $best req/s at $bestc connections"

# 70%: C connections each pausing D ms: rate ~ C / (L + D), L the mean latency. A 5 s calibration
# at D0 = C / (0.7 S) gives L = C / R0 - D0, then D = C / (0.7 S) - L (the achieved rate is printed,
# not assumed).
hold_c=${HOLD_C:-8}  # more connections, longer pauses: latency jitter moves the rate less
d0=$(/usr/bin/python3 -c "print(max(1, round(1000 * $hold_c / (0.7 * $best))))")
run_wrk calib $hold_c 5 $d0
hold_delay=$(/usr/bin/python3 -c "
c, s, d0, r0 = $hold_c, $best, $d0, $(rate_of calib)
lat = max(0.0, 1000 * c / r0 - d0)
print(max(1, round(1000 * c / (0.7 * s) - lat)))")
echo "== 2. sustained 70% ($(/usr/bin/python3 -c "print(round(0.7 * $best))") req/s target)"
sampler_file=$tmp/rss-hold.txt
rss_sampler "$sampler_file" & sampler=$!
run_wrk hold $hold_c ${HOLD_S:-60} $hold_delay
kill $sampler; sampler=
/usr/bin/python3 - "$sampler_file" <<'PY'
import sys
v = [int(l.split()[1]) for l in open(sys.argv[1]) if len(l.split()) == 2]
h = len(v) // 2
print("RESULT hold VmRSS MiB: start %.1f, min %.1f, max %.1f, end %.1f; mean first half %.1f, second half %.1f (%d samples)" % (
    v[0] / 1024, min(v) / 1024, max(v) / 1024, v[-1] / 1024, sum(v[:h]) / h / 1024, sum(v[h:]) / (len(v) - h) / 1024, len(v)))
PY

# A closed loop offers at most one request per connection: to push 3x past what the service can
# hold in flight (workers + queue-depth), open 3x that many connections, unpaced.
over_c=$((3 * (${WORKERS:-2} + ${QUEUE:-16})))
echo "== 3. overload ($over_c connections = 3 x (workers + queue-depth), unpaced)"
m0=$(curl -s $url/metrics | awk '$1 == "clmrd_queue_rejected_total" {print $2}')
run_wrk over $over_c ${OVER_S:-20} 0
m1=$(curl -s $url/metrics | awk '$1 == "clmrd_queue_rejected_total" {print $2}')
echo "RESULT overload: queue rejections (503 overloaded) $m0 -> $m1"
curl -s $url/metrics | grep -E '^clmrd_http_requests_total\{.*status="5' | sed 's/^/RESULT overload metric /' || true
# how fast a 503 comes back under overload: time curl uploads while the overload runs again
wrk -t2 -c$over_c -d8s -s "$root/bench/load/mixed.lua" $url -- "$tmp" 0 >/dev/null &
w=$!; sleep 2
/usr/bin/python3 - "$url" <<'PY'
import os, struct, sys, time, urllib.request, urllib.error
url = sys.argv[1]; t503, t2xx = [], []
for i in range(30):
    pcm = os.urandom(22050)
    body = struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + len(pcm), b"WAVE", b"fmt ", 16, 1, 1, 22050, 44100, 2, 16, b"data", len(pcm)) + pcm
    t0 = time.time()
    try:
        with urllib.request.urlopen(urllib.request.Request(url + "/v1/tag", data=body, method="POST"), timeout=30) as r:
            r.read(); t2xx.append(time.time() - t0)
    except urllib.error.HTTPError as e:
        (t503 if e.code == 503 else t2xx).append(time.time() - t0)
    time.sleep(0.1)
ms = lambda v: "n/a" if not v else "%.1f" % (1000 * sorted(v)[len(v) // 2])
print("RESULT overload probe: %d/30 uploads answered 503 (median %s ms), %d answered otherwise (median %s ms)" % (len(t503), ms(t503), len(t2xx), ms(t2xx)))
PY
wait $w || true

echo "== 4. recovery (70% again)"
sleep 2
run_wrk recover $hold_c ${REC_S:-20} $hold_delay
echo "RESULT daemon VmHWM $(awk '/^VmHWM/ {print $2}' /proc/$pid/status) kB"
kill -TERM $pid; wait $pid; echo "RESULT daemon exit status $?"; pid=
