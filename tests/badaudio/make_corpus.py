#!/usr/bin/python3
"""make_corpus.py - generate the bad-audio corpus (issue 8, shared/notes/reliability.md).

Usage:
  make_corpus.py --small DIR   the small files (committed in tests/badaudio/corpus/)
  make_corpus.py --big DIR     the big ones (decompression bombs, 50 MB cover art), made at
                               test time into a temp dir and never committed
  make_corpus.py --check       regenerate --small into a temp dir and compare byte for byte
                               with tests/badaudio/corpus/ (exit 1 on a difference)

DESIGN: every file is made deterministically from a fixed recipe: the ffmpeg CLI with
bit-exact flags (no encoder version strings, fixed Ogg serials) for real encoders' output, and
hand-built bytes (struct) for headers no encoder writes: lying WAV headers, non-audio magic
numbers, playlists. The big files are built by hand too, because encoding 10 hours of audio
with ffmpeg would take minutes: the FLAC bomb is 10 h of 8 kHz silence as 65,535-sample
CONSTANT frames (~15 bytes each, so 10 h fit in ~65 KB); the Opus bomb repeats one 120 ms
silent packet cut from a short libopus encode in Ogg pages whose granule positions run to 10 h;
the cover-art MP3 is an ID3v2.3 APIC frame of 50 MB in front of a real 3 s MP3.
The expected outcome of each file is in expected.json next to this script, not here, so the
recipe and the specification stay separate.
"""
import math
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
FF = ["ffmpeg", "-nostdin", "-v", "error", "-y"]
BITEXACT = ["-fflags", "+bitexact", "-flags:a", "+bitexact", "-flags:v", "+bitexact",
            "-map_metadata", "-1"]
SINE2 = "0.4*sin(2*PI*440*t)|0.4*sin(2*PI*660*t)"


def ff(out, *args, src=None):
    """Runs ffmpeg with a lavfi source (src) or explicit inputs in args, bit-exact output."""
    cmd = list(FF)
    if src is not None:
        cmd += ["-f", "lavfi", "-i", src]
    cmd += list(args) + BITEXACT + [out]
    subprocess.run(cmd, check=True)


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def wav_bytes(tag, ch, rate, bits, align, dsize, payload):
    """A RIFF/WAVE file with a 16-byte fmt chunk; every field as given (it may lie)."""
    byte_rate = (rate * align) & 0xFFFFFFFF
    fmt = struct.pack("<HHIIHH", tag, ch, rate, byte_rate, align, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", dsize) + payload
    return b"RIFF" + struct.pack("<I", min(len(body), 0xFFFFFFFF)) + body


def sine_s16(n, rate=22050, freq=440.0):
    return b"".join(struct.pack("<h", int(10000 * math.sin(2 * math.pi * freq * i / rate)))
                    for i in range(n))


# ---------------------------------------------------------------- small files
TRUNC_FORMATS = [
    # name, ffmpeg args (source: 2-channel sine, 44.1 kHz unless noted), seconds
    ("wav", ["-ar", "22050", "-ac", "1", "-c:a", "pcm_s16le"], 0.5),
    ("aiff", ["-ar", "22050", "-ac", "1", "-c:a", "pcm_s16be"], 0.5),
    ("flac", ["-ar", "22050", "-ac", "1", "-c:a", "flac"], 0.5),
    ("mp3", ["-c:a", "libmp3lame", "-b:a", "64k"], 2.0),
    ("ogg", ["-c:a", "libvorbis", "-q:a", "0"], 2.0),
    ("opus", ["-c:a", "libopus", "-b:a", "32k"], 2.0),
    ("m4a", ["-c:a", "aac", "-b:a", "48k"], 2.0),  # moov atom at the end (ffmpeg default)
    ("fast.m4a", ["-c:a", "aac", "-b:a", "48k", "-movflags", "+faststart"], 2.0),
]
CUTS = [1, 10, 50, 99]


def make_small(d):
    os.makedirs(d, exist_ok=True)
    p = lambda n: os.path.join(d, n)  # noqa: E731

    # empty, tiny, header only
    write(p("empty.bin"), b"")
    write(p("one_byte.bin"), b"R")
    write(p("wav_header_no_data.wav"), wav_bytes(1, 1, 22050, 16, 2, 0, b""))
    write(p("wav_header_claims_data.wav"), wav_bytes(1, 1, 22050, 16, 2, 44100, b""))

    # every format, whole (control) and truncated
    tmp = tempfile.mkdtemp()
    try:
        for name, args, secs in TRUNC_FORMATS:
            full = os.path.join(tmp, "full." + name)
            ff(full, *args, src="aevalsrc=%s:s=44100:d=%g" % (SINE2, secs))
            b = read(full)
            write(p("whole." + name), b)
            for c in CUTS:
                write(p("trunc%02d.%s" % (c, name)), b[: len(b) * c // 100])
        wav = read(p("whole.wav"))
        mp3 = read(p("whole.mp3"))

        # wrong extension / MIME (the decoder looks only at bytes; expected.json holds the MIME)
        write(p("wav_named.mp3"), wav)
        write(p("mp3_named.flac"), mp3)

        # non-audio bytes
        write(p("image.png"), png_bytes(32, 32))
        write(p("doc.pdf"), b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
              b"2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n")
        write(p("program.elf"), elf_bytes())
        write(p("archive.zip"), zip_bytes(b"track list\n" * 300, "tracks.txt"))
        write(p("archive_stored_mp3.zip"), zip_bytes(mp3[:4000], "song.mp3"))
        write(p("page.html"), b"<!DOCTYPE html><html><head><title>song.mp3</title></head>"
              b"<body><audio src=\"song.mp3\"></audio></body></html>\n")
        write(p("image_named.mp3"), png_bytes(16, 16))

        # video only
        ff(p("video_only.mp4"), "-c:v", "mpeg4", "-frames:v", "5",
           src="testsrc=d=1:s=64x64:r=10")

        # playlists / indirection formats pointing at local files
        write(p("playlist.m3u8"),
              b"#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n#EXTINF:1.0,\n"
              b"/etc/passwd\n#EXTINF:1.0,\nfile:///etc/hostname\n#EXT-X-ENDLIST\n")
        write(p("list.ffconcat"), b"ffconcat version 1.0\nfile '/etc/passwd'\n"
              b"file 'whole.wav'\n")
        write(p("beats.sbg"), b"-SE\n## binaural beats\nalloff: -\nbeat: 200+10/50\n"
              b"00:00 beat\n")
        write(p("session.sdp"), b"v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\n"
              b"c=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 5004 RTP/AVP 0\r\n")
        write(p("manifest.mpd"),
              b"<?xml version=\"1.0\"?>\n<MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\" "
              b"profiles=\"urn:mpeg:dash:profile:isoff-on-demand:2011\" type=\"static\" "
              b"mediaPresentationDuration=\"PT1S\" minBufferTime=\"PT1S\"><Period>"
              b"<AdaptationSet mimeType=\"audio/wav\"><Representation id=\"a\" bandwidth=\"1000\">"
              b"<BaseURL>file:///etc/passwd</BaseURL></Representation></AdaptationSet>"
              b"</Period></MPD>\n")

        # WAV headers that lie (2,000 samples of a real sine follow each header)
        pcm = sine_s16(2000)
        lies = [
            ("data_size_ffffffff", 1, 1, 22050, 16, 2, 0xFFFFFFFF),
            ("rate_0", 1, 1, 0, 16, 2, len(pcm)),
            ("rate_1", 1, 1, 1, 16, 2, len(pcm)),
            ("rate_2147483647", 1, 1, 2147483647, 16, 2, len(pcm)),
            ("channels_0", 1, 0, 22050, 16, 2, len(pcm)),
            ("channels_65535", 1, 65535, 22050, 16, 2, len(pcm)),
            ("bits_0", 1, 1, 22050, 0, 2, len(pcm)),
            ("bits_7", 1, 1, 22050, 7, 1, len(pcm)),
            ("bits_64", 1, 1, 22050, 64, 8, len(pcm)),
            ("block_align_0", 1, 1, 22050, 16, 0, len(pcm)),
            ("float_bits_64_align_0", 3, 1, 22050, 64, 0, len(pcm)),
        ]
        for name, tag, ch, rate, bits, align, dsize in lies:
            write(p("lie_%s.wav" % name), wav_bytes(tag, ch, rate, bits, align, dsize, pcm))

        # MP3 whose Xing header claims 1e9 frames
        write(p("xing_1e9_frames.mp3"), xing_patch(mp3, 1000000000))

        # parameters changing mid-stream
        a = os.path.join(tmp, "a.ogg")
        b_ = os.path.join(tmp, "b.ogg")
        ff(a, "-c:a", "libvorbis", "-q:a", "0", "-serial_offset", "1",
           src="aevalsrc=%s:s=44100:d=1" % SINE2)
        ff(b_, "-c:a", "libvorbis", "-q:a", "0", "-serial_offset", "7",
           src="aevalsrc=0.4*sin(2*PI*330*t):s=22050:d=1")
        write(p("chained_rate_channels.ogg"), read(a) + read(b_))
        a = os.path.join(tmp, "a.mp3")
        b_ = os.path.join(tmp, "b.mp3")
        ff(a, "-c:a", "libmp3lame", "-b:a", "64k", "-write_xing", "0",
           src="aevalsrc=%s:s=44100:d=1" % SINE2)
        ff(b_, "-c:a", "libmp3lame", "-b:a", "32k", "-write_xing", "0",
           src="aevalsrc=0.4*sin(2*PI*330*t):s=22050:d=1")
        write(p("concat_rate_channels.mp3"), read(a) + read(b_))

        # a 10 ms clip (shorter than one model chunk)
        ff(p("clip_10ms.wav"), "-c:a", "pcm_s16le", "-ac", "1",
           src="aevalsrc=0.4*sin(2*PI*440*t):s=22050:d=0.01")
        ff(p("clip_10ms.mp3"), "-c:a", "libmp3lame", "-b:a", "64k",
           src="aevalsrc=0.4*sin(2*PI*440*t):s=44100:d=0.01")

        # float WAVs: NaN, Inf, denormals, huge
        n = 2205
        def fwav(vals):
            return wav_bytes(3, 1, 22050, 32, 4, 4 * len(vals), struct.pack("<%df" % len(vals),
                                                                              *vals))
        base = [0.25 * math.sin(i * 0.05) for i in range(n)]
        for name, v in [("nan", float("nan")), ("inf", float("inf")), ("neg_inf", float("-inf"))]:
            x = list(base)
            x[n // 2] = v
            write(p("float_%s.wav" % name), fwav(x))
        write(p("float_all_nan.wav"), fwav([float("nan")] * n))
        write(p("float_denormal_1e-40.wav"), fwav([1e-40 if i & 1 else -1e-40 for i in range(n)]))
        write(p("float_huge_1e30.wav"), fwav([1e30 if i & 1 else -1e30 for i in range(n)]))
        # NaN in a file that needs resampling (44.1 kHz stereo float)
        x = [0.25 * math.sin(i * 0.05) for i in range(2 * n)]
        x[n] = float("nan")
        write(p("float_nan_44k_stereo.wav"),
              wav_bytes(3, 2, 44100, 32, 8, 8 * n, struct.pack("<%df" % (2 * n), *x)))
    finally:
        shutil.rmtree(tmp)


def png_bytes(w, h):
    def chunk(t, data):
        return struct.pack(">I", len(data)) + t + data + struct.pack(">I", zlib.crc32(t + data))
    raw = b"".join(b"\x00" + bytes((x * 8 + y) & 255 for x in range(w * 3)) for y in range(h))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def elf_bytes():
    """A minimal x86-64 ELF executable header + one program header + 'exit(0)' code."""
    code = b"\x31\xff\xb8\x3c\x00\x00\x00\x0f\x05"  # xor edi,edi; mov eax,60; syscall
    ehdr = b"\x7fELF\x02\x01\x01" + b"\x00" * 9
    ehdr += struct.pack("<HHIQQQIHHHHHH", 2, 0x3E, 1, 0x400078, 64, 0, 0, 64, 56, 1, 0, 0, 0)
    total = 64 + 56 + len(code)
    phdr = struct.pack("<IIQQQQQQ", 1, 5, 0, 0x400000, 0x400000, total, total, 0x1000)
    return ehdr + phdr + code + b"\x00" * 4000


def zip_bytes(member, name):
    import io
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
        z.writestr(info, member)
    return buf.getvalue()


def xing_patch(mp3, frames):
    b = bytearray(mp3)
    for i in range(min(len(b) - 12, 8192)):
        if b[i:i + 4] in (b"Xing", b"Info") and b[i + 7] & 1:
            b[i + 8:i + 12] = struct.pack(">I", frames)
            return bytes(b)
    raise SystemExit("no Xing/Info header with a frame count in the MP3")


# ---------------------------------------------------------------- big files
def crc8(data):
    c = 0
    for x in data:
        c ^= x
        for _ in range(8):
            c = ((c << 1) ^ 0x07) & 0xFF if c & 0x80 else (c << 1) & 0xFF
    return c


def crc16_table():
    t = []
    for i in range(256):
        c = i << 8
        for _ in range(8):
            c = ((c << 1) ^ 0x8005) & 0xFFFF if c & 0x8000 else (c << 1) & 0xFFFF
        t.append(c)
    return t


CRC16 = crc16_table()


def crc16(data):
    c = 0
    for x in data:
        c = ((c << 8) & 0xFFFF) ^ CRC16[(c >> 8) ^ x]
    return c


def utf8_num(v):
    """FLAC's 'UTF-8' coded frame number."""
    if v < 0x80:
        return bytes([v])
    for n, lim in ((2, 0x800), (3, 0x10000), (4, 0x200000), (5, 0x4000000), (6, 0x80000000)):
        if v < lim:
            out = []
            for _ in range(n - 1):
                out.append(0x80 | (v & 0x3F))
                v >>= 6
            lead = (0xFF << (8 - n)) & 0xFF
            return bytes([lead | v] + out[::-1])
    raise ValueError(v)


def flac_silence(seconds, rate=8000):
    """Mono 16-bit FLAC of `seconds` of silence: 65,535-sample frames of one CONSTANT subframe."""
    bs = 65535
    total = int(seconds * rate)
    nframes = (total + bs - 1) // bs
    # STREAMINFO: min/max block 65535, frame sizes unknown, rate, 1 ch, 16 bit, total samples
    si = struct.pack(">HH", bs, bs) + b"\x00" * 6
    v = (rate << 44) | (0 << 41) | (15 << 36) | total
    si += v.to_bytes(8, "big") + b"\x00" * 16
    out = bytearray(b"fLaC" + bytes([0x80]) + len(si).to_bytes(3, "big") + si)
    for i in range(nframes):
        n = min(bs, total - i * bs)
        # sync 0xFFF8 (fixed blocksize), blocksize code 7 (16-bit n-1 follows), rate code 4
        # (8 kHz), mono, 16 bit, frame number
        hdr = bytes([0xFF, 0xF8, (7 << 4) | 4, (0 << 4) | (4 << 1)]) + utf8_num(i)
        hdr += struct.pack(">H", n - 1)
        hdr += bytes([crc8(hdr)])
        frame = hdr + b"\x00" + b"\x00\x00"  # CONSTANT subframe, value 0 (16 bits)
        out += frame + struct.pack(">H", crc16(frame))
    return bytes(out)


OGG_CRC = []
for _i in range(256):
    _c = _i << 24
    for _ in range(8):
        _c = ((_c << 1) ^ 0x04C11DB7) & 0xFFFFFFFF if _c & 0x80000000 else (_c << 1) & 0xFFFFFFFF
    OGG_CRC.append(_c)


REV8 = bytes(int("{:08b}".format(i)[::-1], 2) for i in range(256))


def ogg_crc_slow(data):
    c = 0
    for x in data:
        c = ((c << 8) & 0xFFFFFFFF) ^ OGG_CRC[((c >> 24) & 0xFF) ^ x]
    return c


def ogg_crc(data):
    """Ogg's CRC (non-reflected CRC-32, init 0, no final xor) through zlib: it equals the
    bit-reversed reflected CRC of the bit-reversed bytes (checked against ogg_crc_slow)."""
    r = zlib.crc32(data.translate(REV8), 0xFFFFFFFF) ^ 0xFFFFFFFF
    return int("{:032b}".format(r)[::-1], 2)


def ogg_packets(data):
    """Splits an Ogg stream (one logical stream) into packets."""
    pkts, cur, i = [], b"", 0
    while i < len(data):
        assert data[i:i + 4] == b"OggS"
        nseg = data[i + 26]
        lace = data[i + 27:i + 27 + nseg]
        j = i + 27 + nseg
        for l in lace:
            cur += data[j:j + l]
            j += l
            if l < 255:
                pkts.append(cur)
                cur = b""
        i = j
    return pkts


def ogg_page(serial, seq, granule, flags, packets):
    lace = b""
    for pk in packets:
        lace += b"\xff" * (len(pk) // 255) + bytes([len(pk) % 255])
    hdr = b"OggS\x00" + bytes([flags]) + struct.pack("<qIII", granule, serial, seq, 0)
    page = bytearray(hdr + bytes([len(lace)]) + lace + b"".join(packets))
    page[22:26] = struct.pack("<I", ogg_crc(bytes(page)))
    return bytes(page)


def opus_silence(seconds, tmp):
    """Ogg Opus of `seconds` of silence built from one 120 ms silent libopus packet repeated."""
    src = os.path.join(tmp, "sil.opus")
    ff(src, "-c:a", "libopus", "-b:a", "6k", "-frame_duration", "120", "-ac", "1",
       src="anullsrc=r=48000:cl=mono:d=2")
    pk = ogg_packets(read(src))
    head, tags, audio = pk[0], pk[1], pk[2:]
    sil = audio[len(audio) // 2]
    per = 5760  # 120 ms at 48 kHz
    preskip = struct.unpack("<H", head[10:12])[0]
    npk = int(seconds * 48000) // per
    serial = 0x5EED
    assert ogg_crc(head) == ogg_crc_slow(head) and ogg_crc(sil * 3) == ogg_crc_slow(sil * 3)
    out = [ogg_page(serial, 0, 0, 2, [head]), ogg_page(serial, 1, 0, 0, [tags])]
    seq, done, per_page = 2, 0, 250
    while done < npk:
        k = min(per_page, npk - done)
        done += k
        flags = 4 if done == npk else 0
        out.append(ogg_page(serial, seq, done * per + preskip, flags, [sil] * k))
        seq += 1
    return b"".join(out)


def id3_cover_mp3(mp3, cover_bytes):
    """ID3v2.3 tag with one APIC frame of cover_bytes (image/png) in front of mp3."""
    def synchsafe(n):
        return bytes([(n >> 21) & 0x7F, (n >> 14) & 0x7F, (n >> 7) & 0x7F, n & 0x7F])
    body = b"\x00" + b"image/png\x00" + b"\x03" + b"cover\x00" + cover_bytes
    frame = b"APIC" + struct.pack(">I", len(body)) + b"\x00\x00" + body
    return b"ID3\x03\x00\x00" + synchsafe(len(frame)) + frame + mp3


def make_big(d):
    os.makedirs(d, exist_ok=True)
    tmp = tempfile.mkdtemp()
    try:
        write(os.path.join(d, "bomb_silence_10h.flac"), flac_silence(36000))
        write(os.path.join(d, "bomb_silence_10h.opus"), opus_silence(36000, tmp))
        mp3 = os.path.join(tmp, "c.mp3")
        ff(mp3, "-c:a", "libmp3lame", "-b:a", "64k", src="aevalsrc=%s:s=44100:d=3" % SINE2)
        # 50 MB of 'image': a PNG signature and IHDR, then a deterministic pseudo-random body
        png = png_bytes(8, 8)
        block = bytes((i * 2654435761 >> 13) & 255 for i in range(1 << 16))
        size = 50 * 1000 * 1000
        cover = png[:33] + (block * (size // len(block) + 1))[: size - 33]
        write(os.path.join(d, "cover_50MB.mp3"), id3_cover_mp3(read(mp3), cover))
    finally:
        shutil.rmtree(tmp)


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--small":
        make_small(sys.argv[2])
    elif len(sys.argv) == 3 and sys.argv[1] == "--big":
        make_big(sys.argv[2])
    elif len(sys.argv) == 2 and sys.argv[1] == "--check":
        t = tempfile.mkdtemp()
        try:
            make_small(t)
            committed = os.path.join(HERE, "corpus")
            a, b = sorted(os.listdir(t)), sorted(os.listdir(committed))
            bad = sorted(set(a) ^ set(b))
            bad += [n for n in a if n in b and read(os.path.join(t, n)) !=
                    read(os.path.join(committed, n))]
            for n in bad:
                print("differs: " + n)
            print("corpus check: %d files, %d differ" % (len(a), len(bad)))
            sys.exit(1 if bad else 0)
        finally:
            shutil.rmtree(t)
    else:
        sys.stderr.write(__doc__)
        sys.exit(2)


if __name__ == "__main__":
    main()
