#!/bin/bash
# fuzz/build.sh [BUILDDIR] - configure (once) and build the libFuzzer targets with clang-14,
# ASan + UBSan, all our code coverage-instrumented (-Dfuzz=true). Default BUILDDIR: build-fuzz
# at the top of the source tree. Needs clang-14 and libclang-rt-14-dev (scripts/install-deps.sh).
# Prints the directory holding the fuzz_* binaries on its last line.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bdir=${1:-$root/build-fuzz}
cc=$(command -v clang-14 || command -v clang || true)
if [ -z "$cc" ]; then
  echo "fuzz/build.sh: clang-14 not found (apt-get install clang-14 libclang-rt-14-dev)" >&2
  exit 2
fi
# the C++ compiler too (src/index/faiss_shim.cpp): the fuzzers link with -fsanitize=fuzzer, which
# only clang's driver knows
cxx=$(command -v clang++-14 || command -v clang++ || true)
if [ ! -f "$bdir/build.ninja" ]; then
  CC="$cc" CXX="$cxx" meson setup "$bdir" "$root" -Dfuzz=true -Dbench=false \
    -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debugoptimized >/dev/null
fi
targets=$(sed -n "s/^fuzz_targets = \[\(.*\)\]/\1/p" "$root/fuzz/meson.build" | tr -d "',")
nice -n 10 ninja -C "$bdir" $(for t in $targets; do echo "fuzz/$t"; done) >/dev/null
echo "$bdir/fuzz"
