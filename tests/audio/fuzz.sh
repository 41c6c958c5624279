#!/bin/bash
# fuzz.sh [SECONDS] - build the libFuzzer target for the audio decoder with clang-14
# (ASan+UBSan), make a seed corpus of small real files with ffmpeg, and fuzz for SECONDS
# (default 60). Needs clang-14 and libclang-rt-14-dev (Debian). Crashes land in the work dir.
set -euo pipefail
secs=${1:-60}
root=$(cd "$(dirname "$0")/../.." && pwd)
work=${CLMR_FUZZ_DIR:-$(mktemp -d /tmp/clmr-fuzz-audio-XXXXXX)}
mkdir -p "$work/corpus"
cc=$(command -v clang-14 || command -v clang)
"$cc" -g -O1 -std=c17 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined \
  -I"$root/include" -I"$root/src" "$root/tests/audio/fuzz_audio.c" "$root"/src/audio/*.c \
  "$root/src/util/error.c" $(pkg-config --cflags --libs libavformat libavcodec libswresample libavutil) \
  -lm -lpthread -o "$work/fuzz_audio"
s="0.5*sin(2*PI*440*t)"
gen() { ffmpeg -nostdin -v error -y -f lavfi -i "aevalsrc=$s|$s:s=$1:d=0.3" "${@:2}"; }
cd "$work/corpus"
gen 44100 -c:a pcm_s16le a.wav; gen 22050 -ac 1 -c:a pcm_f32le b.wav; gen 44100 -c:a flac a.flac
gen 44100 -c:a libmp3lame a.mp3; gen 44100 -c:a libvorbis a.ogg; gen 48000 -c:a libopus a.opus
gen 44100 -c:a aac a.m4a; gen 44100 -c:a aac -f adts a.aac; gen 44100 -c:a pcm_s16be a.aiff
gen 48000 -c:a libopus a.webm; gen 44100 -c:a wavpack a.wv; gen 8000 -c:a pcm_mulaw a.au
gen 44100 -c:a pcm_s16le a.caf; gen 44100 -c:a pcm_s24le a.w64
printf '#EXTM3U\n#EXTINF:1,\n/etc/passwd\n' > a.m3u8; printf "ffconcat version 1.0\nfile 'a.wav'\n" > a.ffc
cd "$work"
ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 UBSAN_OPTIONS=halt_on_error=1 \
LSAN_OPTIONS=suppressions=$root/tests/lsan.supp \
  nice -n 10 ./fuzz_audio -max_total_time="$secs" -max_len=65536 -timeout=20 -rss_limit_mb=2560 \
  corpus 2>&1 | tail -n 15
echo "fuzz work dir: $work"
