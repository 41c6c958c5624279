#!/bin/sh
# install-deps.sh - install every Debian 12 package clmrd needs to build, test and run.
# Usage: scripts/install-deps.sh [--runtime-only]. Needs root (or sudo). Idempotent.
# --runtime-only: what building and running the service needs (make run), not the test and
# dataset tools (PyTorch, clang, nginx, soundfonts, festival, Node.js).
set -eu
build="build-essential meson ninja-build pkg-config
  libavformat-dev libavcodec-dev libswresample-dev libavutil-dev libdnnl-dev libjansson-dev
  libsndfile1-dev libsqlite3-dev libmicrohttpd-dev libsox-dev libcurl4-openssl-dev libfaiss-dev zlib1g-dev
  libaubio-dev libebur128-dev libchromaprint-dev"
test="ffmpeg sox sqlite3 python3-torch python3-numpy python3-pytest python3-requests python3-sklearn
  clang clang-format libclang-rt-14-dev curl nginx-light python3-yaml strace wrk"
# the benchmarks' fair PyTorch baseline (bench/run.sh preloads jemalloc into it)
test="$test libjemalloc2"
# the dataset tools (tools/datasets/deps.txt): MIDI rendering, timbre sources, voices
data="fluidsynth fluid-soundfont-gm timgm6mb-soundfont csound-soundfont opl3-soundfont freepats timidity
  espeak-ng mma festival festvox-kallpc16k"
test="$test $data"
pkgs="$build $test"
[ "${1:-}" = "--runtime-only" ] && pkgs="$build"
missing=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
# The OpenAPI validator of the tests (tests/tools/package.json) runs on Node.js with npm. Any
# node + npm on PATH will do (a machine may have them from elsewhere); otherwise Debian's.
if [ "${1:-}" != "--runtime-only" ] && ! { command -v node && command -v npm; } >/dev/null 2>&1; then
  missing="$missing nodejs npm"
fi
# The OpenAPI validator (npm registry, pinned by tests/tools/openapi/package-lock.json).
npm_tools() {
  [ "${1:-}" = "--runtime-only" ] && return 0
  d="$(dirname "$0")/../tests/tools/openapi"
  [ -d "$d/node_modules/@apidevtools/swagger-parser" ] && return 0
  echo "install-deps: npm ci in tests/tools/openapi"
  npm ci --prefix "$d" --no-audit --no-fund --loglevel=error
}
if [ -z "$missing" ]; then
  echo "install-deps: all packages present"
  npm_tools "${1:-}"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "install-deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q -o DPkg::Lock::Timeout=600
# shellcheck disable=SC2086
$SUDO apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=600 $missing
npm_tools "${1:-}"
