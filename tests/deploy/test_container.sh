#!/bin/bash
# test_container.sh - build the clmrd image with podman and run it for real (issue 7). Prints TAP,
# then "N passed, N failed"; exits non-zero when any check fails. Needs root (rootful podman).
#
# DESIGN: the image is built from the worktree with `podman build --pull=never --format docker`
# (docker format keeps the HEALTHCHECK) on the local debian:bookworm-slim that setup-podman.sh makes
# with debootstrap; the apt-get layers come first in the Dockerfile so podman's layer cache makes a
# warm rebuild take seconds. The model baked in is models/clmr-default.safetensors when it exists;
# otherwise the committed test model tests/fixtures/models/tiny.safetensors, which the image then
# reports under its own name and id (the test asserts which one it is: it never passes a test
# model off as the default). Every container, the volume and the port are private to this run and
# removed on exit; the image tag is shared so that the next run reuses its layers.
#
# Usage: tests/deploy/test_container.sh   (tests/deploy/run.sh [BUILD] wraps it for run_all.sh)
# Environment: CLMR_TEST_MODEL=path (relative to the source root) forces the model;
# CLMRD_BUILD=dir with a host build of clmrd adds a check that the container's scores equal the
# host binary's on the same file; CLMR_IMAGE=name overrides the image tag.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root" || exit 1
image=${CLMR_IMAGE:-localhost/clmrd-test:latest}
run_id=$$
ctr=clmrd-test-$run_id
vol=clmrd-test-data-$run_id
work=$(mktemp -d /tmp/clmrd-container-test.XXXXXX)
pass=0 fail=0 skip=0 n=0

ok() { n=$((n + 1)); pass=$((pass + 1)); echo "ok $n - $1"; }
notok() { n=$((n + 1)); fail=$((fail + 1)); echo "not ok $n - $1"; [ $# -gt 1 ] && echo "$2" | sed 's/^/#   /'; }
check() { # check DESCRIPTION COMMAND...: one TAP line from a command's exit status
  local d=$1 out; shift
  if out=$("$@" 2>&1); then ok "$d"; else notok "$d" "$out"; fi
}
note() { echo "# $*"; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

cleanup() {
  podman rm -f -t 0 "$ctr" "$ctr-2" >/dev/null 2>&1
  podman volume rm -f "$vol" >/dev/null 2>&1
  if [ -n "${compose_up:-}" ]; then
    (cd deploy && podman-compose -p "$project" -f compose.yaml down -v >/dev/null 2>&1)
    podman network rm -f "${project}_default" >/dev/null 2>&1
  fi
  # images of earlier builds left untagged by this one (each source change leaves ~1 GB); only
  # this project's (label io.clmrd.image), and never the layers the current image is built on
  podman image prune -f --filter label=io.clmrd.image >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT

finish() {
  echo "1..$n"
  [ "$skip" -gt 0 ] && echo "# $skip skipped"
  echo "$pass passed, $fail failed"
  [ "$fail" -eq 0 ]
  exit
}

if [ "$(id -u)" -ne 0 ]; then
  notok "rootful podman needs root (run as root, as CI does)"; finish
fi
for tool in curl ffmpeg; do
  command -v "$tool" >/dev/null || { notok "$tool is installed (scripts/install-deps.sh)"; finish; }
done

# --- 1. podman configured, base image present -----------------------------------------------
t=$(now)
if out=$(deploy/podman/setup-podman.sh 2>&1); then ok "setup-podman.sh ($(elapsed "$t") s)"; else
  notok "setup-podman.sh" "$out"; finish
fi

# --- 2. build -------------------------------------------------------------------------------
model=${CLMR_TEST_MODEL:-}
if [ -z "$model" ]; then
  if [ -f models/clmr-default.safetensors ]; then model=models/clmr-default.safetensors
  else model=tests/fixtures/models/tiny.safetensors; fi
fi
[ -f "$model" ] || { notok "model file $model exists"; finish; }
if [ "$model" = models/clmr-default.safetensors ]; then
  note "model: the default model ($model)"
else
  note "model: TEST MODEL $model (models/clmr-default.safetensors is not in the tree); the image is a test image"
fi
want_id=$(sha256sum "$model" | cut -c1-16)
t=$(now)
if podman build --pull=never --format docker --build-arg "MODEL=$model" -t "$image" . \
    >"$work/build.log" 2>&1; then
  ok "podman build --pull=never --format docker ($(elapsed "$t") s)"
else
  notok "podman build" "$(tail -30 "$work/build.log")"; finish
fi
# Name the build stage too (a cached no-op), so the prune at exit keeps its layers for next time.
podman build --pull=never --format docker --build-arg "MODEL=$model" --target build \
  -t "${image%:*}-build:latest" . >>"$work/build.log" 2>&1
size=$(podman image inspect --format '{{.Size}}' "$image")
note "image size: $((size / 1000000)) MB ($size bytes, uncompressed, as podman reports it)"
base_size=$(podman image inspect --format '{{.Size}}' docker.io/library/debian:bookworm-slim)
note "of which the debootstrap bookworm base: $((base_size / 1000000)) MB"
check "image carries its HEALTHCHECK on /healthz (docker format)" \
  bash -c "podman image inspect '$image' | /usr/bin/python3 -c 'import json,sys; assert \"/healthz\" in \" \".join(json.load(sys.stdin)[0][\"Healthcheck\"][\"Test\"])'"
check "image runs as a non-root user by default" \
  bash -c "u=\$(podman image inspect --format '{{.User}}' '$image'); [ -n \"\$u\" ] && [ \"\${u%%:*}\" != 0 ] && [ \"\${u%%:*}\" != root ]"

# --- 3. run ---------------------------------------------------------------------------------
podman volume create "$vol" >/dev/null
# Writes from outside the container need a key (the host reaches it through podman's port
# forwarding, not loopback): an admin token, which counts as an admin key. fp32, so that scores
# compare with the host build's exactly (bf16 results depend on the batch split).
token=$(head -c 48 /dev/urandom | base64 | tr -d '/+=' | head -c 48)
start_ctr() { # start_ctr NAME: run detached with the volume and a loopback port; sets $port
  podman run -d --name "$1" -v "$vol:/data" -p 127.0.0.1::8080 -e CLMRD_ADMIN_TOKEN="$token" \
    -e CLMRD_PRECISION=fp32 "$image" >"$work/run.log" 2>&1 ||
    return 1
  port=$(podman port "$1" 8080/tcp | head -n 1 | sed 's/.*://')
  [ -n "$port" ]
}
wait_ready() { # wait_ready SECONDS: /readyz 200 within the time
  local end=$(($(date +%s) + $1))
  while [ "$(date +%s)" -lt "$end" ]; do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/readyz")" = 200 ] && return 0
    sleep 0.1
  done
  return 1
}
t=$(now)
if start_ctr "$ctr" && wait_ready 60; then ok "container starts and is ready ($(elapsed "$t") s)"; else
  notok "container starts and is ready" "$(cat "$work/run.log"; podman logs "$ctr" 2>&1 | tail -20)"; finish
fi
base=http://127.0.0.1:$port

status() { curl -s -o "$work/body" -w '%{http_code}' "$@"; }
check "/healthz answers 200" test "$(status "$base/healthz")" = 200
check "/readyz answers 200" test "$(status "$base/readyz")" = 200

py=/usr/bin/python3
jget() { "$py" -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {}, {"d": d}))' "$work/body" "$1"; }

ffmpeg -v error -y -f lavfi -i "sine=frequency=440:sample_rate=44100:duration=5" "$work/a.wav"
ffmpeg -v error -y -f lavfi -i "sine=frequency=660:sample_rate=44100:duration=4" "$work/b.mp3"
code=$(status --data-binary @"$work/a.wav" "$base/v1/tag")
if [ "$code" = 200 ] && [ "$(jget 'len(d["tags"]) > 0 and all(0 <= t["score"] <= 1 for t in d["tags"])')" = True ]; then
  ok "POST /v1/tag returns tags"
else
  notok "POST /v1/tag returns tags" "HTTP $code: $(head -c 400 "$work/body")"
fi
check "the tags come from the image's model ($model, id $want_id)" test "$(jget 'd["model"]')" = "$want_id"
cp "$work/body" "$work/tag.json"
status "$base/v1/models" >/dev/null
check "/v1/models: that model is the active one" test "$(jget 'd["active"]')" = "$want_id"
note "active model: $(jget '[m["name"] for m in d["models"] if m["status"] == "active"]')"
if [ -n "${CLMRD_BUILD:-}" ] && [ -x "$CLMRD_BUILD/clmrd" ]; then
  "$CLMRD_BUILD/clmrd" tag --json --all --precision fp32 --model "$model" "$work/a.wav" \
    >"$work/host.json" 2>"$work/host.err"
  check "container scores equal the host build's on the same file (|diff| <= 1e-4)" "$py" -c '
import json, sys
c = {t["tag"]: t["score"] for t in json.load(open(sys.argv[1]))["tags"]}
h = {t["tag"]: t["score"] for t in json.loads(open(sys.argv[2]).read())["tags"]}
assert set(c) <= set(h) and c, (c, h)
bad = [(k, c[k], h[k]) for k in c if abs(c[k] - h[k]) > 1e-4]
assert not bad, bad' "$work/tag.json" "$work/host.json"
else
  # reported as a skip and not counted as passed
  echo "ok $((n + 1)) # SKIP container vs host scores: CLMRD_BUILD not set"; n=$((n + 1)); skip=$((skip + 1))
fi

# --- 4. non-root, healthcheck, logs ---------------------------------------------------------
check "process runs as non-root (podman exec id -u = 10001)" test "$(podman exec "$ctr" id -u)" = 10001
check "podman top: clmrd's user is not root" \
  bash -c "podman top '$ctr' user args | awk 'NR > 1 && /clmrd serve/ { u = \$1 } END { exit !(u != \"\" && u != \"root\") }'"
check "podman healthcheck run passes" podman healthcheck run "$ctr"
check "logs are JSON lines (CLMRD_LOG_FORMAT=json)" \
  bash -c "podman logs '$ctr' 2>&1 | head -n 3 | $py -c 'import json,sys; [json.loads(l) for l in sys.stdin]'"
check "/data is the volume and writable by the service" \
  bash -c "podman exec '$ctr' test -w /data/clmrd.sqlite"

# --- 5. data on the volume survives restarts --------------------------------------------------
code=$(status -H "Authorization: Bearer $token" -F "file=@$work/b.mp3" "$base/v1/tracks?title=persist")
tid=$(jget 'd.get("id", "")' 2>/dev/null)
check "POST /v1/tracks stores a track (201)" test "$code" = 201 -a -n "$tid"

# SIGTERM as PID 1: stop must finish well inside the 10 s grace period, with exit code 0.
t=$(now)
podman stop -t 10 "$ctr" >/dev/null 2>&1
stop_s=$(elapsed "$t")
rc=$(podman inspect --format '{{.State.ExitCode}}' "$ctr")
note "podman stop -t 10 took $stop_s s"
check "SIGTERM (podman stop -t 10) exits with code 0" test "$rc" = 0
check "SIGTERM stops it within 5 s (took $stop_s s)" awk -v s="$stop_s" 'BEGIN { exit !(s < 5) }'
check "clean shutdown is logged" bash -c "podman logs '$ctr' 2>&1 | grep -q 'stopped (0 requests abandoned)'"

t=$(now)
podman start "$ctr" >/dev/null 2>&1
port=$(podman port "$ctr" 8080/tcp | head -n 1 | sed 's/.*://'); base=http://127.0.0.1:$port
if wait_ready 60; then ok "restarted container is ready ($(elapsed "$t") s)"; else notok "restarted container is ready"; fi
check "the track is still there after a restart" test "$(status "$base/v1/tracks/$tid")" = 200
podman stop -t 10 "$ctr" >/dev/null 2>&1
podman rm "$ctr" >/dev/null 2>&1

# a brand-new container on the same volume (upgrade path)
if start_ctr "$ctr-2" && wait_ready 60; then
  base=http://127.0.0.1:$port
  code=$(status "$base/v1/tracks/$tid")
  check "a new container on the same volume serves the track" test "$code" = 200
  check "... with its title" test "$(jget 'd.get("title")')" = persist
  status "$base/v1/tracks" >/dev/null
  check "... and exactly one track" test "$(jget 'len(d["tracks"])')" = 1
  code=$(status --data-binary @"$work/a.wav" "$base/v1/tag")
  check "the tag result cached before the restart is served from the volume" test "$(jget 'd["cached"]')" = True
  # SIGTERM while an upload is in flight (sent at 1 MB/s, about 2 s): the request is finished
  # (200) before the process exits 0.
  ffmpeg -v error -y -f lavfi -i "sine=frequency=370:sample_rate=44100:duration=20" "$work/slow.wav"
  curl -s -o "$work/slow.json" -w '%{http_code}' --limit-rate 1M --data-binary @"$work/slow.wav" \
    "$base/v1/tag" >"$work/slow.code" &
  curl_pid=$!
  sleep 0.7
  t=$(now)
  podman stop -t 10 "$ctr-2" >/dev/null 2>&1
  stop_s=$(elapsed "$t")
  wait "$curl_pid"
  note "podman stop -t 10 with an upload in flight took $stop_s s"
  check "an upload in flight at SIGTERM is still answered 200" test "$(cat "$work/slow.code")" = 200
  check "... and the container exits 0 (within 5 s: $stop_s s)" bash -c \
    "[ \"\$(podman inspect --format '{{.State.ExitCode}}' '$ctr-2')\" = 0 ] && awk -v s=$stop_s 'BEGIN { exit !(s < 5) }'"
else
  notok "a new container on the same volume starts" "$(podman logs "$ctr-2" 2>&1 | tail -20)"
fi

# --- 6. compose: clmrd behind the nginx image, started by podman-compose from deploy/compose.yaml
# Only variables the compose file documents are set: project name, port, token file, model and
# image names (the test images, never the default names).
project=clmrd-ctest-$run_id
head -c 32 /dev/urandom | base64 >"$work/admin-token"
export CLMRD_HTTP_PORT=$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export CLMRD_ADMIN_TOKEN=$work/admin-token CLMRD_MODEL_FILE=$model CLMRD_IMAGE=$image
export CLMRD_NGINX_IMAGE=${image%:*}-nginx:latest
t=$(now)
compose_up=1
# The clmrd image is the one built above (same name via CLMRD_IMAGE); only nginx's is (re)built
# here: podman-compose 1.0.3 builds without --format docker, which misses the layer cache.
if (cd deploy && podman-compose -p "$project" -f compose.yaml build nginx &&
    podman-compose -p "$project" -f compose.yaml up -d) >"$work/compose.log" 2>&1; then
  ok "podman-compose build nginx, up -d ($(elapsed "$t") s)"
else
  notok "podman-compose up -d" "$(tail -20 "$work/compose.log")"; finish
fi
port=$CLMRD_HTTP_PORT; base=http://127.0.0.1:$port
if wait_ready 60; then ok "compose: /readyz through nginx answers 200 ($(elapsed "$t") s after up)"; else
  notok "compose: /readyz through nginx" "$(podman logs "${project}_nginx_1" 2>&1 | tail -5)"
fi
curl -s -D "$work/headers" -o "$work/body" --data-binary @"$work/a.wav" "$base/v1/tag" >/dev/null
check "compose: POST /v1/tag through nginx returns the image model's tags" \
  test "$(jget 'd["model"]')" = "$want_id"
check "compose: the answer came through nginx with one X-Request-Id" \
  bash -c "grep -qi '^Server: nginx' '$work/headers' && [ \$(grep -ci '^X-Request-Id:' '$work/headers') = 1 ]"
check "compose: healthcheck (CMD-SHELL clmrd-probe /readyz) passes" podman healthcheck run "${project}_clmrd_1"
check "compose: clmrd is not published on the host, only nginx is" \
  bash -c "[ -z \"\$(podman port '${project}_clmrd_1')\" ] && podman port '${project}_nginx_1' | grep -q ':$port\$'"
check "compose: the admin token secret is mounted and reported as set" \
  bash -c "curl -s '$base/v1/config' | grep -q '\"admin-token-file\":\"(set)\"'"
check "compose: the root filesystem is read-only" bash -c "! podman exec '${project}_clmrd_1' touch /usr/x 2>/dev/null"
t=$(now)
(cd deploy && podman-compose -p "$project" -f compose.yaml stop) >>"$work/compose.log" 2>&1
check "compose: stop ends clmrd with exit code 0 ($(elapsed "$t") s)" \
  test "$(podman inspect --format '{{.State.ExitCode}}' "${project}_clmrd_1")" = 0
finish
