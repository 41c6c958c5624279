"""dsutil.py - helpers shared by the dataset tools (build_unlabelled.py, make_labelled.py).

DESIGN: stdlib only (ctypes for libfluidsynth), so the tools run under Debian's /usr/bin/python3 with
nothing from outside Debian. MIDI rendering goes through libfluidsynth in-process: the SF2 is loaded
once per soundfont and every MIDI file is rendered by the same synth (what `fluidsynth -F` does, minus
re-loading the soundfont per file, which dominates the cost for short files). Doom MUS lumps are
converted to standard MIDI here because fluidsynth cannot read MUS. The MIDI writer is the minimal
format-1 writer the labelled-set generator needs (note on/off, program, tempo).
"""
import ctypes
import ctypes.util
import hashlib
import os
import struct
import subprocess


def sha256_file(path, bufsize=1 << 20):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(bufsize)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def run(cmd, **kw):
    """Run a command, return CompletedProcess; never raises on a non-zero exit."""
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


# ----------------------------------------------------------------------------------------------
# Standard MIDI file writer (format 1, one track per part)


def read_varlen(buf, i):
    """Read a MIDI/MUS variable-length quantity at buf[i]: returns (value, index after it)."""
    v = 0
    while True:
        c = buf[i]
        i += 1
        v = (v << 7) | (c & 0x7F)
        if not c & 0x80:
            return v, i


def _varlen(n):
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    return bytes(reversed(out))


def write_midi(path, tracks, ppq=480, tempo_bpm=120.0):
    """Write a format-1 MIDI file.

    tracks: list of event lists; each event is (tick, bytes) with an absolute tick and a raw MIDI
    message (status byte included). Events are sorted by tick (note-offs before note-ons at equal
    ticks so repeated notes re-trigger). A conductor track with the tempo is written first.
    """
    def chunk(events):
        evs = sorted(events, key=lambda e: (e[0], 0 if (e[1][0] & 0xF0) == 0x80 else 1))
        data = bytearray()
        last = 0
        for t, msg in evs:
            data += _varlen(t - last) + msg
            last = t
        data += b"\x00\xff\x2f\x00"
        return b"MTrk" + struct.pack(">I", len(data)) + bytes(data)

    us = int(round(60e6 / tempo_bpm))
    conductor = [(0, b"\xff\x51\x03" + us.to_bytes(3, "big"))]
    body = b"".join(chunk(t) for t in [conductor] + list(tracks))
    hdr = b"MThd" + struct.pack(">IHHH", 6, 1, 1 + len(tracks), ppq)
    with open(path, "wb") as f:
        f.write(hdr + body)


def note_events(ch, notes, program=None, ticks_per_sec=None):
    """notes: list of (start_tick, dur_ticks, pitch, velocity) -> raw events on channel ch."""
    ev = []
    if program is not None and ch != 9:
        ev.append((0, bytes([0xC0 | ch, program & 0x7F])))
    for st, du, p, v in notes:
        ev.append((st, bytes([0x90 | ch, p & 0x7F, max(1, min(127, v))])))
        ev.append((st + max(1, du), bytes([0x80 | ch, p & 0x7F, 0])))
    return ev


# ----------------------------------------------------------------------------------------------
# Doom WAD lumps and MUS -> MIDI


def wad_lumps(path):
    """Yield (name, bytes) for every lump of an IWAD/PWAD file."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] not in (b"IWAD", b"PWAD"):
        raise ValueError("not a WAD file")
    n, ofs = struct.unpack_from("<ii", data, 4)
    for i in range(n):
        pos, size, name = struct.unpack_from("<ii8s", data, ofs + 16 * i)
        yield name.rstrip(b"\0").decode("ascii", "replace"), data[pos:pos + size]


_MUS_CTRL = {1: 0, 2: 1, 3: 7, 4: 10, 5: 11, 6: 91, 7: 93, 8: 64, 9: 67}
_MUS_SYS = {10: 120, 11: 123, 12: 126, 13: 127, 14: 121}


def mus_to_midi(mus):
    """Convert a Doom MUS lump to a format-0 standard MIDI file (bytes).

    MUS ticks run at 140 Hz; with 70 ticks per quarter and 120 BPM one MIDI tick is one MUS tick.
    MUS channel 15 is percussion (MIDI channel 10); channels 9..14 shift up by one to skip it.
    Raises ValueError on a malformed lump.
    """
    if mus[:4] != b"MUS\x1a":
        raise ValueError("not a MUS lump")
    score_len, score_start = struct.unpack_from("<HH", mus, 4)
    pos, end = score_start, min(len(mus), score_start + score_len)
    vol = [100] * 16
    out = bytearray()
    delta = 0

    def emit(msg):
        nonlocal delta
        out.extend(_varlen(delta) + bytes(msg))
        delta = 0

    # MIDI volume default matches MUS default (127 in most players); 100 keeps headroom.
    while pos < end:
        ev = mus[pos]
        pos += 1
        typ, mch = (ev >> 4) & 7, ev & 15
        ch = 9 if mch == 15 else (mch + 1 if mch >= 9 else mch)
        if typ == 0:
            emit([0x80 | ch, mus[pos] & 0x7F, 0])
            pos += 1
        elif typ == 1:
            b = mus[pos]
            pos += 1
            if b & 0x80:
                vol[ch] = mus[pos] & 0x7F
                pos += 1
            emit([0x90 | ch, b & 0x7F, vol[ch]])
        elif typ == 2:
            v = mus[pos] * 64
            pos += 1
            emit([0xE0 | ch, v & 0x7F, (v >> 7) & 0x7F])
        elif typ == 3:
            c = mus[pos]
            pos += 1
            if c in _MUS_SYS:
                emit([0xB0 | ch, _MUS_SYS[c], 0])
        elif typ == 4:
            c, v = mus[pos], mus[pos + 1] & 0x7F
            pos += 2
            if c == 0:
                emit([0xC0 | ch, v])
            elif c in _MUS_CTRL:
                emit([0xB0 | ch, _MUS_CTRL[c], v])
        elif typ == 5:
            pass
        elif typ == 6:
            break
        else:
            raise ValueError("bad MUS event type %d" % typ)
        if ev & 0x80:
            d, pos = read_varlen(mus, pos)
            delta += d
    out += _varlen(delta) + b"\xff\x2f\x00"
    tempo = b"\x00\xff\x51\x03" + (500000).to_bytes(3, "big")
    trk = tempo + bytes(out)
    return b"MThd" + struct.pack(">IHHH", 6, 0, 1, 70) + b"MTrk" + struct.pack(">I", len(trk)) + trk


# ----------------------------------------------------------------------------------------------
# In-process fluidsynth renderer (ctypes)


class FluidRenderer:
    """Render MIDI files to 16-bit WAV with one libfluidsynth synth and one loaded soundfont.

    Not thread-safe: use one instance per thread. close() frees the synth.
    """

    PLAYING = 1

    def __init__(self, sf2, rate=44100, gain=0.5, reverb=True):
        name = ctypes.util.find_library("fluidsynth") or "libfluidsynth.so.3"
        L = self.L = ctypes.CDLL(name)
        vp, cp = ctypes.c_void_p, ctypes.c_char_p
        L.new_fluid_settings.restype = vp
        L.fluid_settings_setstr.argtypes = [vp, cp, cp]
        L.fluid_settings_setnum.argtypes = [vp, cp, ctypes.c_double]
        L.fluid_settings_setint.argtypes = [vp, cp, ctypes.c_int]
        L.new_fluid_synth.restype = vp
        L.new_fluid_synth.argtypes = [vp]
        L.fluid_synth_sfload.argtypes = [vp, cp, ctypes.c_int]
        L.new_fluid_player.restype = vp
        L.new_fluid_player.argtypes = [vp]
        L.fluid_player_add.argtypes = [vp, cp]
        L.fluid_player_play.argtypes = [vp]
        L.fluid_player_get_status.argtypes = [vp]
        L.delete_fluid_player.argtypes = [vp]
        L.new_fluid_file_renderer.restype = vp
        L.new_fluid_file_renderer.argtypes = [vp]
        L.fluid_file_renderer_process_block.argtypes = [vp]
        L.delete_fluid_file_renderer.argtypes = [vp]
        L.fluid_synth_system_reset.argtypes = [vp]
        L.delete_fluid_synth.argtypes = [vp]
        L.delete_fluid_settings.argtypes = [vp]
        L.fluid_set_log_function.argtypes = [ctypes.c_int, vp, vp]
        for level in range(5):  # keep fluidsynth's warnings off our progress output
            L.fluid_set_log_function(level, None, None)
        self.rate = rate
        s = self.settings = L.new_fluid_settings()
        L.fluid_settings_setnum(s, b"synth.sample-rate", float(rate))
        L.fluid_settings_setnum(s, b"synth.gain", float(gain))
        L.fluid_settings_setstr(s, b"player.timing-source", b"sample")
        L.fluid_settings_setint(s, b"synth.lock-memory", 0)
        L.fluid_settings_setint(s, b"synth.reverb.active", 1 if reverb else 0)
        L.fluid_settings_setint(s, b"synth.chorus.active", 1 if reverb else 0)
        L.fluid_settings_setstr(s, b"audio.file.type", b"wav")
        L.fluid_settings_setstr(s, b"audio.file.format", b"s16")
        self.synth = L.new_fluid_synth(s)
        if not self.synth:
            raise RuntimeError("new_fluid_synth failed")
        if L.fluid_synth_sfload(self.synth, os.fsencode(sf2), 1) < 0:
            raise RuntimeError("cannot load soundfont " + sf2)
        L.fluid_settings_setint(s, b"audio.period-size", 64)

    def render(self, midi_path, wav_path, tail_s=1.5):
        """Render one MIDI file to wav_path. Returns the number of blocks rendered while playing
        (0 means the file did not parse or holds no events)."""
        L = self.L
        L.fluid_synth_system_reset(self.synth)
        L.fluid_settings_setstr(self.settings, b"audio.file.name", os.fsencode(wav_path))
        player = L.new_fluid_player(self.synth)
        L.fluid_player_add(player, os.fsencode(midi_path))
        L.fluid_player_play(player)
        rend = L.new_fluid_file_renderer(self.synth)
        if not rend:
            L.delete_fluid_player(player)
            raise RuntimeError("cannot open " + wav_path)
        blocks = 0
        while L.fluid_player_get_status(player) == self.PLAYING:
            if L.fluid_file_renderer_process_block(rend) != 0:
                break
            blocks += 1
        L.delete_fluid_player(player)
        if blocks:
            # let releases and reverb ring out: the player stops at the last event
            for _ in range(int(tail_s * self.rate / 64)):
                L.fluid_file_renderer_process_block(rend)
        L.delete_fluid_file_renderer(rend)
        return blocks

    def close(self):
        if self.synth:
            self.L.delete_fluid_synth(self.synth)
            self.L.delete_fluid_settings(self.settings)
            self.synth = None
