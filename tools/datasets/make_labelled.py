#!/usr/bin/python3
"""make_labelled.py - generate the honestly labelled tagging set (synthetic, labels = facts of construction).

Usage: make_labelled.py --out DIR [--train-hours H] [--test-hours H] [--opl3-hours H] [--splits a,b]
                        [--clips N (overrides hours, per split)]

Writes DIR/<split>/crops/*.wav (16-bit, 22,050 Hz mono, exactly 59,049 samples each),
DIR/<split>/manifest.jsonl with one line per crop file {"path": "crops/...wav", "tags": [...]} (paths
relative to the manifest's folder), DIR/<split>/meta.jsonl (how each crop was made), and for the test
split one manifest per timbre source (manifest_<source>.jsonl). Splits: train, test, test_opl3, and
val (the training distribution with other clips, for choices made after training such as the
default model's decision thresholds; made only when named in --splits).

DESIGN
- Every clip is composed here from a seeded RNG (numpy + stdlib only): tempo, key, chord progression,
  a drum groove, and up to four pitched parts (bass, chords, melody, voice), each part active over a
  random range of bars so crops within a clip get different labels. Each part is written as its own
  MIDI file and RENDERED SEPARATELY (fluidsynth in-process for SF2 fonts, timidity for freepats);
  voices are espeak-ng variants singing syllables on flat SSML-prosody notes, and (test splits only)
  festival's kal_diphone in singing mode.
- Labels are per 59,049-sample crop, from per-stem activity: a ~93 ms frame of a stem is active when
  its RMS (after mixing gains) exceeds both -20 dB relative to the crop's mix RMS and -60 dBFS; the stem
  is present when active in >= 25 % of the crop's frames, absent below 5 %, and a crop with any stem
  in between is dropped (neither label would be a fact). Tags
  come only from what the stem is: GM program -> instrument tags, drum channel -> drums/beat/beats,
  espeak male/female variant -> vocal tags; "no vocal(s)/no voice" when no voice and no choir stem is
  present; "solo" when exactly one pitched instrument stem and nothing else is present; fast/slow from
  the score's tempo. Style, mood and loudness tags are never emitted (not facts we can construct).
- Generalisation split: train renders with FluidR3_GM only, voices m3/f2/f4, kits Standard/Room/Power
  and grooves rock/four/shuffle/ballad; test renders with TimGM6mb, freepats (timidity) and sf_GMbank,
  voices m1/m7/f1/f3 + festival kal (male), other kits and grooves, other seeds. test_opl3 uses the OPL3 FM soundfont (far
  out of distribution). Programs a source does not have are never chosen for it (read from the SF2's
  preset headers or the timidity cfg), so a label never names a missing instrument.
"""
import argparse
import json
import os
import random
import shutil
import struct
import sys
import tempfile
import time
import wave

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dsutil  # noqa: E402

SR = 22050
CROP = 59049
CROPS_PER_CLIP = 8
FRAME = 2048  # activity frames (~93 ms) inside a crop
MIN_PRESENT_FRAC = 0.25  # a stem is present when active in >= 25 % of the crop's frames
MIN_ABSENT_FRAC = 0.05  # ... absent below 5 %; crops with a stem in between are dropped as ambiguous
MMA_SHARE = 0.3  # fraction of clips that are MMA groove backings (the rest: our own scores)
PPQ = 480

SOURCES = {
    "fluidr3": dict(kind="sf2", path="/usr/share/sounds/sf2/FluidR3_GM.sf2"),
    "timgm6mb": dict(kind="sf2", path="/usr/share/sounds/sf2/TimGM6mb.sf2"),
    "sf_gmbank": dict(kind="sf2", path="/usr/share/sounds/sf2/sf_GMbank.sf2"),
    "freepats": dict(kind="timidity", path="/etc/timidity/freepats.cfg"),
    "opl3": dict(kind="sf2", path="/usr/share/sounds/sf2/OPL-3_FM_128M.sf2"),
}
MALE = ["male", "man", "male vocal", "male voice"]
FEMALE = ["female", "woman", "female vocal", "female voice"]
SPLITS = {
    "train": dict(sources=["fluidr3"], voices=["m3", "f2", "f4"], kits=[0, 8, 16],
                  grooves=["rock", "four", "shuffle", "ballad"], seed=1001),
    "test": dict(sources=["timgm6mb", "freepats", "sf_gmbank"], voices=["m1", "m7", "f1", "f3", "kal"],
                 kits=[24, 25, 32, 40], grooves=["halftime", "bossa", "breakbeat", "waltz"], seed=2002),
    "test_opl3": dict(sources=["opl3"], voices=["m1", "m7", "f1", "f3", "kal"], kits=[24, 25, 32, 40],
                      grooves=["halftime", "bossa", "breakbeat", "waltz"], seed=3003),
    # the training distribution (FluidR3, train voices, kits and grooves) with other clips: for
    # choices made after training (the default model's decision thresholds), never the test splits
    "val": dict(sources=["fluidr3"], voices=["m3", "f2", "f4"], kits=[0, 8, 16],
                grooves=["rock", "four", "shuffle", "ballad"], seed=6006),
}

# GM program -> MagnaTagATune tags it is a fact of (only tags from the 50-tag list)
PROGRAM_TAGS = {
    0: ["piano"], 1: ["piano"], 2: ["piano"], 4: ["piano"], 5: ["piano"], 6: ["harpsichord"],
    24: ["guitar"], 25: ["guitar"], 26: ["guitar"], 27: ["guitar"], 29: ["guitar"], 30: ["guitar"],
    32: [], 33: [], 34: [], 38: ["synth"],
    40: ["violin", "strings"], 42: ["cello", "strings"], 48: ["strings"], 49: ["strings"], 46: ["harp"],
    52: ["choir", "choral"], 53: ["choir", "choral"], 73: ["flute"], 104: ["sitar"],
    80: ["synth"], 81: ["synth"], 88: ["synth"], 89: ["synth"], 90: ["synth"],
}
# complete GM families, for MMA grooves whose programs we do not choose (other programs: no tag)
for _p in range(0, 6):
    PROGRAM_TAGS.setdefault(_p, ["piano"])
for _p in range(24, 32):
    PROGRAM_TAGS.setdefault(_p, ["guitar"])
for _p in (41, 43, 44, 45, 48, 49):
    PROGRAM_TAGS.setdefault(_p, ["strings"])
for _p in (50, 51):
    PROGRAM_TAGS.setdefault(_p, ["synth", "strings"])
for _p in list(range(80, 96)) + [38, 39, 54]:
    PROGRAM_TAGS.setdefault(_p, ["synth"])
PROGRAM_TAGS.setdefault(72, ["flute"])  # piccolo
VOCALISH = {52, 53, 54, 85, 91}  # choir, oohs, synth voice, voice lead, choir pad: never "no vocals"
MMA_GROOVES = {
    "train": ["50sRock", "BasicRock", "Trance", "Blues", "Ballad", "CountrySwing", "PianoBallad"],
    "test": ["BossaNova", "Bluegrass", "BigBand", "Bolero", "Folk", "JazzWaltz", "Samba", "SoftRock"],
}
MMA_GROOVES["test_opl3"] = MMA_GROOVES["test"]
MMA_GROOVES["val"] = MMA_GROOVES["train"]
CHORD_NAMES = ["C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B"]

ROLE_PROGRAMS = {
    "bass": [32, 33, 34, 38],
    "chords": [0, 1, 4, 6, 24, 25, 29, 48, 49, 52, 88, 89, 46],
    "melody": [0, 6, 24, 40, 42, 46, 73, 104, 80, 81, 53, 25],
    "solo": [0, 1, 6, 24, 25, 40, 42, 46, 73, 104, 80],
}
# role -> (octave base MIDI note, default velocity)
ROLE_REG = {"bass": 36, "chords": 60, "melody": 72, "solo": 67}
PROGRESSIONS = [[0, 5, 3, 4], [0, 3, 4, 0], [5, 3, 0, 4], [0, 4, 5, 3], [0, 0, 3, 4], [1, 4, 0, 0]]
MAJOR = [0, 2, 4, 5, 7, 9, 11]
MINOR = [0, 2, 3, 5, 7, 8, 10]
# drum grooves: 16 steps per bar (12 for waltz): instrument -> steps
GROOVES = {
    "rock": {36: [0, 8], 38: [4, 12], 42: [0, 2, 4, 6, 8, 10, 12, 14]},
    "four": {36: [0, 4, 8, 12], 39: [4, 12], 42: [2, 6, 10, 14]},
    "shuffle": {36: [0, 10], 38: [4, 12], 42: [0, 3, 4, 7, 8, 11, 12, 15]},
    "ballad": {36: [0, 6], 37: [8], 51: [0, 4, 8, 12]},
    "halftime": {36: [0, 3], 38: [8], 42: list(range(16))},
    "bossa": {36: [0, 6, 8, 14], 37: [0, 3, 6, 10, 13], 42: [0, 2, 4, 6, 8, 10, 12, 14]},
    "breakbeat": {36: [0, 10], 38: [4, 12], 40: [7], 46: [14], 42: [0, 2, 4, 6, 8, 10]},
    "waltz": {36: [0], 38: [4, 8], 42: [0, 2, 4, 6, 8, 10]},
}
SYLLABLES = ["la", "loo", "na", "da", "oh", "ah", "lee", "mm"]


# ------------------------------------------------------------------------------------------------
# what a source really has


def sf2_presets(path):
    """Set of (bank, program) presets in an SF2 file (from its pdta/phdr chunk)."""
    out = set()
    with open(path, "rb") as f:
        riff, _, form = struct.unpack("<4sI4s", f.read(12))
        if riff != b"RIFF" or form != b"sfbk":
            raise ValueError("not an SF2 file: " + path)
        while True:
            h = f.read(8)
            if len(h) < 8:
                break
            cid, size = struct.unpack("<4sI", h)
            if cid == b"LIST" and f.read(4) == b"pdta":
                end = f.tell() + size - 4
                while f.tell() < end:
                    sid, ssize = struct.unpack("<4sI", f.read(8))
                    if sid == b"phdr":
                        data = f.read(ssize)
                        for i in range(0, ssize - 38, 38):  # last record is the EOP terminator
                            prog, bank = struct.unpack_from("<HH", data, i + 20)
                            out.add((bank, prog))
                        return out
                    f.seek(ssize + (ssize & 1), 1)
                break
            f.seek(size + (size & 1) - (4 if cid == b"LIST" else 0), 1)
    return out


def timidity_presets(cfg):
    out, bank, drum = set(), None, False
    for line in open(cfg):
        t = line.split("#", 1)[0].split()
        if not t:
            continue
        if t[0] == "bank":
            bank, drum = int(t[1]), False
        elif t[0] == "drumset":
            bank, drum = int(t[1]), True
        elif t[0].isdigit() and bank is not None:
            out.add((128, bank) if drum else (bank, int(t[0])))
    return out


def source_presets(name):
    s = SOURCES[name]
    return sf2_presets(s["path"]) if s["kind"] == "sf2" else timidity_presets(s["path"])


# ------------------------------------------------------------------------------------------------
# rendering


class Renderers:
    def __init__(self, tmp):
        self.tmp = tmp
        self.fluid = {}

    def render(self, source, midi, wav):
        s = SOURCES[source]
        if s["kind"] == "sf2":
            if source not in self.fluid:
                self.fluid[source] = dsutil.FluidRenderer(s["path"], rate=SR, gain=0.6)
            self.fluid[source].render(midi, wav)
        else:
            r = dsutil.run(["timidity", "-c", s["path"], "-Ow", "--output-mono", "-s", str(SR),
                            "-o", wav, midi])
            if r.returncode != 0:
                raise RuntimeError("timidity failed: " + r.stderr.decode(errors="replace")[-200:])

    def close(self):
        for r in self.fluid.values():
            r.close()
        self.fluid = {}


def read_wav(path, n):
    """Read a 16-bit WAV as float mono, resampled to SR if needed, padded/truncated to n samples."""
    with wave.open(path) as w:
        sr, ch = w.getframerate(), w.getnchannels()
        x = np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32) / 32768.0
    if ch > 1:
        x = x.reshape(-1, ch).mean(axis=1)
    if sr != SR:
        from scipy.signal import resample_poly
        g = np.gcd(sr, SR)
        x = resample_poly(x, SR // g, sr // g).astype(np.float32)
    out = np.zeros(n, np.float32)
    out[:min(n, len(x))] = x[:n]
    return out


def write_wav(path, x):
    y = np.clip(np.round(x * 32767.0), -32768, 32767).astype("<i2")
    with wave.open(path + ".part", "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SR)
        w.writeframes(y.tobytes())
    os.replace(path + ".part", path)


NOTE_NAMES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]


def voice_is_male(voice):
    return voice == "kal" or voice.startswith("m")


def sing(voice, notes, key_root, sec_per_beat, path):
    """Sing syllables on the given (MIDI pitch, beats) notes into path (WAV); False on failure.
    "kal" is festival's kal_diphone in singing mode (exact pitches, male); other names are espeak-ng
    variants, whose SSML prosody gives flat notes relative to the variant's own base pitch."""
    if voice == "kal":
        xml = ['<?xml version="1.0"?>',
               '<!DOCTYPE SINGING PUBLIC "-//SINGING//DTD SINGING mark up//EN" "Singing.v0_1.dtd" []>',
               '<SINGING BPM="%d">' % int(round(60.0 / sec_per_beat))]
        for p, beats in notes:
            p = 43 + (p - 43) % 19  # keep in kal's comfortable range (G2..C#4)
            xml.append('<PITCH NOTE="%s%d"><DURATION BEATS="%.2f">%s</DURATION></PITCH>' % (
                NOTE_NAMES[p % 12], p // 12 - 1, max(0.25, beats), SYLLABLES[p % len(SYLLABLES)]))
        xml.append("</SINGING>")
        src = path + ".xml"
        with open(src, "w") as f:
            f.write("\n".join(xml) + "\n")
        r = dsutil.run(["text2wave", "-mode", "singing", src, "-o", path])
        return r.returncode == 0 and os.path.exists(path) and os.path.getsize(path) > 1000
    parts = []
    for p, beats in notes:
        rel = int(round((2 ** ((p - key_root) / 12.0) - 1) * 100))  # relative to the voice's base pitch
        rel = max(-30, min(60, rel))
        syl = SYLLABLES[p % len(SYLLABLES)]
        parts.append('<prosody range="x-low" pitch="%+d%%">%s</prosody>' % (rel, syl))
    wpm = int(max(60, min(200, 60.0 / (sec_per_beat * max(1.0, np.mean([b for _, b in notes]))))))
    ssml = "<speak>" + " ".join(parts) + "</speak>"
    r = dsutil.run(["espeak-ng", "-v", "en+" + voice, "-s", str(wpm), "-m", "-w", path, ssml])
    return r.returncode == 0 and os.path.exists(path)


# ------------------------------------------------------------------------------------------------
# composition


def compose(rng, cfg, presets, idx):
    """Return a clip description: tempo, key, parts with MIDI events and activity bars."""
    source = cfg["sources"][idx % len(cfg["sources"])]
    have = presets[source]
    groove = rng.choice(cfg["grooves"])
    beats_per_bar = 3 if groove == "waltz" else 4
    tempo_class = rng.choice(["slow", "mid", "fast"])
    bpm = {"slow": rng.randint(56, 80), "mid": rng.randint(90, 130), "fast": rng.randint(140, 180)}[tempo_class]
    spb = 60.0 / bpm
    clip_s = CROPS_PER_CLIP * CROP / SR + 0.3
    nbars = int(np.ceil(clip_s / (spb * beats_per_bar)))
    minor = rng.random() < 0.4
    scale = MINOR if minor else MAJOR
    root = rng.randint(0, 11)
    prog = rng.choice(PROGRESSIONS)
    kind = rng.choices(["band", "ensemble", "solo"], weights=[5, 3, 2])[0]

    def pick(role):
        c = [p for p in ROLE_PROGRAMS[role] if (0, p) in have]
        return rng.choice(c) if c else None

    def active_range():
        if rng.random() < 0.45:
            return (0, nbars)
        a = rng.randint(0, max(0, nbars - 2))
        b = rng.randint(a + 1, nbars)
        return (a, b)

    def chord_pcs(bar):
        deg = prog[bar % len(prog)]
        return [root + scale[(deg + k) % 7] + 12 * ((deg + k) // 7) for k in (0, 2, 4)]

    parts = []
    tpb = PPQ  # ticks per beat
    dens = {"slow": [2, 1], "mid": [1, 0.5], "fast": [0.5, 0.25]}[tempo_class]

    def melody_notes(base, rng_bars):
        notes = []
        prev = 2
        for bar in range(*rng_bars):
            t = 0.0
            while t < beats_per_bar - 1e-9:
                d = min(rng.choice(dens), beats_per_bar - t)
                if rng.random() < 0.85:
                    prev = max(0, min(9, prev + rng.choice([-2, -1, -1, 0, 1, 1, 2])))
                    pitch = base + root + scale[prev % 7] + 12 * (prev // 7)
                    notes.append((int((bar * beats_per_bar + t) * tpb), int(d * tpb * 0.95), pitch,
                                  rng.randint(80, 110)))
                t += d
        return notes

    if kind == "solo":
        p = pick("solo")
        if p is not None:
            rb = (0, nbars)
            parts.append(dict(role="melody", program=p, channel=0, bars=rb,
                              notes=melody_notes(ROLE_REG["solo"] - 7, rb)))
    else:
        if kind == "band" or rng.random() < 0.3:
            kits = [k for k in cfg["kits"] if (128, k) in have] or ([0] if (128, 0) in have else [])
            if kits:
                kit = rng.choice(kits)
                rb = active_range()
                pat = GROOVES[groove]
                steps = 12 if groove == "waltz" else 16
                step_ticks = beats_per_bar * tpb // steps
                notes = [((bar * steps + s) * step_ticks, step_ticks, inst, rng.randint(85, 115) if s % 4 == 0 else rng.randint(60, 90))
                         for bar in range(*rb) for inst, ss in pat.items() for s in ss]
                parts.append(dict(role="drums", program=kit, channel=9, bars=rb, notes=notes, groove=groove))
        if kind == "band":
            p = pick("bass")
            if p is not None:
                rb = active_range()
                notes = []
                for bar in range(*rb):
                    r0 = chord_pcs(bar)[0] % 12
                    for b in range(beats_per_bar):
                        if rng.random() < 0.8:
                            notes.append(((bar * beats_per_bar + b) * tpb, int(tpb * 0.9),
                                          ROLE_REG["bass"] + r0 + (7 if b == 2 else 0), rng.randint(85, 105)))
                parts.append(dict(role="bass", program=p, channel=0, bars=rb, notes=notes))
        p = pick("chords")
        if p is not None:
            rb = active_range()
            notes = []
            for bar in range(*rb):
                pcs = chord_pcs(bar)
                hits = [0] if tempo_class == "slow" or p in (48, 49, 52, 88, 89) else list(range(beats_per_bar))
                dur = beats_per_bar if len(hits) == 1 else 1
                for b in hits:
                    for pc in pcs:
                        notes.append(((bar * beats_per_bar + b) * tpb, int(dur * tpb * 0.95),
                                      ROLE_REG["chords"] + pc % 12 + (12 if pc % 12 < 4 else 0), rng.randint(70, 95)))
            parts.append(dict(role="chords", program=p, channel=0, bars=rb, notes=notes))
        if rng.random() < 0.75:
            p = pick("melody")
            if p is not None:
                rb = active_range()
                parts.append(dict(role="melody", program=p, channel=0, bars=rb,
                                  notes=melody_notes(ROLE_REG["melody"] - 12, rb)))
        if rng.random() < 0.45 and cfg["voices"]:
            voice = rng.choice(cfg["voices"])
            a = rng.randint(0, max(0, nbars - 3))
            rb = (a, min(nbars, a + rng.randint(2, 5)))
            parts.append(dict(role="voice", voice=voice, bars=rb,
                              notes=melody_notes(ROLE_REG["melody"] - 12, rb)))
    return dict(source=source, bpm=bpm, tempo_class=tempo_class, beats_per_bar=beats_per_bar,
                root=root, minor=minor, kind=kind, groove=groove, nbars=nbars, parts=parts, spb=spb)


def read_midi_notes(path):
    """Parse a standard MIDI file: (ppq, first tempo in BPM, {(channel, program): [(tick, dur, pitch,
    vel)]}). Notes are keyed by the program their channel had when they started."""
    data = open(path, "rb").read()
    ntrk, ppq = struct.unpack(">HH", data[10:14])
    pos, bpm = 8 + struct.unpack(">I", data[4:8])[0], None
    stems = {}
    for _ in range(ntrk):
        ln = struct.unpack(">I", data[pos + 4:pos + 8])[0]
        trk, pos = data[pos + 8:pos + 8 + ln], pos + 8 + ln
        i, t, status, prog, on = 0, 0, 0, [0] * 16, {}
        while i < ln:
            d, i = dsutil.read_varlen(trk, i)
            t += d
            b = trk[i]
            if b in (0xFF, 0xF0, 0xF7):
                mtype = trk[i + 1] if b == 0xFF else None
                L, i = dsutil.read_varlen(trk, i + (2 if b == 0xFF else 1))
                if mtype == 0x51 and bpm is None:
                    bpm = 60e6 / int.from_bytes(trk[i:i + 3], "big")
                i += L
                continue
            if b & 0x80:
                status = b
                i += 1
            hi, ch = status & 0xF0, status & 0x0F
            if hi in (0xC0, 0xD0):
                if hi == 0xC0:
                    prog[ch] = trk[i]
                i += 1
                continue
            a, v = trk[i], trk[i + 1]
            i += 2
            if hi == 0x90 and v > 0:
                on[(ch, a)] = (t, v, prog[ch])
            elif hi in (0x80, 0x90) and (ch, a) in on:
                t0, v0, p0 = on.pop((ch, a))
                stems.setdefault((ch, p0), []).append((t0, max(1, t - t0), a, v0))
    return ppq, bpm or 120.0, stems


def compose_mma(rng, cfg, presets, idx, split, tmp):
    """A backing track from an MMA groove of the split's groove library, split into one part per
    (channel, program); programs the source lacks are dropped, the drum kit is the split's."""
    source = cfg["sources"][idx % len(cfg["sources"])]
    have = presets[source]
    groove = rng.choice(MMA_GROOVES[split])
    tempo_class = rng.choice(["slow", "mid", "fast"])
    bpm = {"slow": rng.randint(60, 80), "mid": rng.randint(90, 130), "fast": rng.randint(140, 170)}[tempo_class]
    spb = 60.0 / bpm
    nbars = int(np.ceil((CROPS_PER_CLIP * CROP / SR + 0.3) / (spb * 4))) + 1
    root, minor = rng.randint(0, 11), rng.random() < 0.4
    scale = MINOR if minor else MAJOR
    prog = rng.choice(PROGRESSIONS)
    # MMA humanises timing and velocities with Python's random module, unseeded unless told:
    # without RndSeed the same clip renders differently on every run.
    lines = ["RndSeed %d" % rng.randint(1, 2**31 - 1), "Tempo %d" % bpm, "Groove %s" % groove]
    for bar in range(nbars):
        deg = prog[bar % len(prog)]
        name = CHORD_NAMES[(root + scale[deg]) % 12]
        third = (scale[(deg + 2) % 7] - scale[deg]) % 12
        lines.append("%d %s%s" % (bar + 1, name, "m" if third == 3 else ""))
    mma = os.path.join(tmp, "clip.mma")
    with open(mma, "w") as f:
        f.write("\n".join(lines) + "\n")
    r = dsutil.run(["mma", "-f", os.path.join(tmp, "clip.mid"), mma], cwd=tmp)
    if r.returncode != 0:
        raise RuntimeError("mma failed: " + r.stdout.decode(errors="replace")[-300:])
    ppq, _, stems = read_midi_notes(os.path.join(tmp, "clip.mid"))
    tick = 60.0 / bpm / ppq
    parts = []
    kits = [k for k in cfg["kits"] if (128, k) in have] or [0]
    for (ch, p), notes in sorted(stems.items()):
        nt = [(int(round(s * tick / spb * PPQ)), max(1, int(round(d * tick / spb * PPQ))), n, v) for s, d, n, v in notes]
        if ch == 9:
            parts.append(dict(role="drums", program=rng.choice(kits), channel=9, bars=(0, nbars), notes=nt,
                              groove="mma:" + groove))
        elif (0, p) in have:
            parts.append(dict(role="mma", program=p, channel=0, bars=(0, nbars), notes=nt))
    if rng.random() < 0.45 and cfg["voices"]:
        a = rng.randint(0, max(0, nbars - 3))
        rb = (a, min(nbars, a + rng.randint(2, 5)))
        mel = [(int((b * 4 + k) * PPQ), PPQ, 60 + root + scale[rng.randint(0, 6)], 90)
               for b in range(*rb) for k in range(4)]
        parts.append(dict(role="voice", voice=rng.choice(cfg["voices"]), bars=rb, notes=mel))
    return dict(source=source, bpm=bpm, tempo_class=tempo_class, beats_per_bar=4, root=root, minor=minor,
                kind="mma", groove="mma:" + groove, nbars=nbars, parts=parts, spb=spb)


def part_tags(part):
    if part["role"] == "drums":
        return ["drums", "beat", "beats"]
    if part["role"] == "voice":
        return ["vocal", "vocals", "voice", "singing"] + (MALE if voice_is_male(part["voice"]) else FEMALE)
    return list(PROGRAM_TAGS.get(part["program"], []))


def crop_tags(active_parts, clip):
    tags = set()
    for p in active_parts:
        tags.update(part_tags(p))
    roles = [p["role"] for p in active_parts]
    if "voice" not in roles and not any(p.get("program") in VOCALISH for p in active_parts if p["role"] != "drums"):
        tags.update(["no vocal", "no vocals", "no voice"])
    pitched = [p for p in active_parts if p["role"] in ("melody", "chords", "bass", "mma")]
    if len(active_parts) == 1 and len(pitched) == 1:
        tags.add("solo")
    # fast/slow: the score's tempo class, confirmed by what actually plays in the crop: "fast" needs
    # some part with about one onset per beat or more, "slow" needs no part denser than two per beat.
    per_beat = max((p.get("onsets_per_beat", 0.0) for p in active_parts), default=0.0)
    if clip["tempo_class"] == "fast" and per_beat >= 0.75:  # ~1 per beat, allowing for crop edges
        tags.add("fast")
    elif clip["tempo_class"] == "slow" and per_beat <= 2.0:
        tags.add("slow")
    return sorted(tags)


def activity_threshold(mix_crop):
    """A stem frame counts as active above -20 dB relative to the (normalised) mix crop's RMS, and
    never below -60 dBFS."""
    mrms = float(np.sqrt(np.mean(mix_crop ** 2)))
    return max(10 ** (-20 / 20) * mrms, 1e-3)


def stem_activity(seg, thr):
    """(RMS of a stem's crop, fraction of its ~93 ms frames above thr)."""
    srms = float(np.sqrt(np.mean(seg ** 2)))
    frames = np.sqrt(np.mean(seg[:CROP // FRAME * FRAME].reshape(-1, FRAME) ** 2, axis=1))
    return srms, float(np.mean(frames > thr))


def stem_state(srms, frac, thr):
    """The label rule: "present" when active in >= 25 % of the frames, "absent" below 5 %, else
    "ambiguous" (neither label would be a fact, so the crop is dropped)."""
    if MIN_ABSENT_FRAC <= frac < MIN_PRESENT_FRAC:
        return "ambiguous"
    return "present" if frac >= MIN_PRESENT_FRAC and srms > thr else "absent"


def make_clip(split, idx, cfg, presets, rend, outdir, tmp, clip=None):
    """Render, mix and label one clip (composed from the split's seed unless `clip` is given);
    writes its crop files and returns one row per crop that has at least one active stem."""
    rng = random.Random(cfg["seed"] * 1000003 + idx)
    if clip is None:
        if MMA_GROOVES.get(split) and rng.random() < MMA_SHARE:
            clip = compose_mma(rng, cfg, presets, idx, split, tmp)
        else:
            clip = compose(rng, cfg, presets, idx)
    n = CROPS_PER_CLIP * CROP
    stems = []
    for j, part in enumerate(clip["parts"]):
        wav = os.path.join(tmp, "stem%d.wav" % j)
        if part["role"] == "voice":
            notes = [(p, d / PPQ) for _, d, p, _ in part["notes"]] or [(72, 1.0)]
            if not sing(part["voice"], notes[:24], clip["root"] + 60, clip["spb"], wav):
                continue
            x = read_wav(wav, n)
            start = int(part["bars"][0] * clip["beats_per_bar"] * clip["spb"] * SR)
            end = int(part["bars"][1] * clip["beats_per_bar"] * clip["spb"] * SR)
            y = np.zeros(n, np.float32)
            seg = x[:max(0, min(n, end) - start)]
            y[start:start + len(seg)] = seg
            x = y
        else:
            mid = os.path.join(tmp, "stem%d.mid" % j)
            ev = dsutil.note_events(part["channel"], [(s, d, p, v) for s, d, p, v in part["notes"]],
                                    program=part["program"])
            if part["channel"] == 9:
                ev.append((0, bytes([0xC9, part["program"]])))  # drum kit = program on channel 10
            dsutil.write_midi(mid, [ev], ppq=PPQ, tempo_bpm=clip["bpm"])
            rend.render(clip["source"], mid, wav)
            x = read_wav(wav, n)
        rms = float(np.sqrt(np.mean(x[np.abs(x) > 1e-4] ** 2))) if np.any(np.abs(x) > 1e-4) else 0.0
        if rms <= 0:
            continue
        level = {"drums": -3, "bass": -5, "chords": -4, "melody": 0, "voice": 1, "mma": -3}[part["role"]]
        gain = 10 ** ((level + rng.uniform(-3, 3)) / 20) * 0.1 / rms
        stems.append((part, x * gain))
    if not stems:
        return []
    mix = np.sum([s for _, s in stems], axis=0)
    peak = float(np.max(np.abs(mix)))
    norm = 0.89 / peak if peak > 0 else 1.0
    rows = []
    for k in range(CROPS_PER_CLIP):
        sl = slice(k * CROP, (k + 1) * CROP)
        act, levels = [], {}
        ambiguous = False
        thr = activity_threshold(mix[sl] * norm)
        for part, s in stems:
            srms, frac = stem_activity(s[sl] * norm, thr)
            name = part.get("voice") or str(part.get("program"))
            levels["%s:%s" % (part["role"], name)] = [round(20 * np.log10(max(srms, 1e-9)), 1), round(frac, 2)]
            state = stem_state(srms, frac, thr)
            if state == "ambiguous":
                ambiguous = True  # e.g. a voice in the last 0.5 s of the crop: neither label is a fact
            if state == "present":
                # distinct onsets of this part inside the crop, per beat (chords count once)
                t0, t1 = k * CROP / SR, (k + 1) * CROP / SR
                sec_per_tick = clip["spb"] / PPQ
                on = {s0 for s0, _, _, _ in part["notes"] if t0 <= s0 * sec_per_tick < t1}
                part = dict(part, onsets_per_beat=len(on) / ((t1 - t0) / clip["spb"]))
                act.append(part)
        if not act or ambiguous:
            continue
        fn = "%s_%05d_%d.wav" % (split, idx, k)
        write_wav(os.path.join(outdir, "crops", fn), mix[sl] * norm)
        tags = crop_tags(act, clip)
        rows.append(dict(path="crops/" + fn, tags=tags, meta=dict(
            clip=idx, crop=k, source=clip["source"], bpm=clip["bpm"], kind=clip["kind"],
            groove=clip["groove"] if any(p["role"] == "drums" for p in act) else None,
            stems_db=levels, active=[p["role"] + ":" + str(p.get("voice") or p.get("program")) for p in act])))
    return rows


def generate(split, nclips, out, log=print):
    cfg = SPLITS[split]
    outdir = os.path.join(out, split)
    os.makedirs(os.path.join(outdir, "crops"), exist_ok=True)
    os.makedirs(os.path.join(outdir, "clips"), exist_ok=True)
    presets = {s: source_presets(s) for s in cfg["sources"]}
    tmp = tempfile.mkdtemp(prefix="clmr-lab-")
    rend = Renderers(tmp)
    t0 = time.time()
    try:
        for i in range(nclips):
            cj = os.path.join(outdir, "clips", "%05d.json" % i)
            if os.path.exists(cj):
                continue
            # A fresh synth per clip (0.2 s): fluidsynth state (reverb and chorus buffers) would
            # otherwise carry over from the clip before, so a clip's bytes would depend on which
            # clips this run made before it (a resumed run would differ from an uninterrupted one).
            rend.close()
            rows = make_clip(split, i, cfg, presets, rend, outdir, tmp)
            with open(cj + ".part", "w") as f:
                json.dump(rows, f)
            os.replace(cj + ".part", cj)
            if (i + 1) % 25 == 0 or i + 1 == nclips:
                log("%s: %d/%d clips (%.0f s)" % (split, i + 1, nclips, time.time() - t0))
    finally:
        rend.close()
        shutil.rmtree(tmp, ignore_errors=True)
    # manifests are rebuilt from the per-clip records (idempotent, order fixed by clip index)
    rows = []
    for i in range(nclips):
        rows += json.load(open(os.path.join(outdir, "clips", "%05d.json" % i)))
    with open(os.path.join(outdir, "manifest.jsonl"), "w") as man, open(os.path.join(outdir, "meta.jsonl"), "w") as meta:
        for r in rows:
            man.write(json.dumps(dict(path=r["path"], tags=r["tags"])) + "\n")
            meta.write(json.dumps(dict(path=r["path"], tags=r["tags"], **r["meta"])) + "\n")
    if len(cfg["sources"]) > 1:
        for s in cfg["sources"]:
            with open(os.path.join(outdir, "manifest_%s.jsonl" % s), "w") as f:
                for r in rows:
                    if r["meta"]["source"] == s:
                        f.write(json.dumps(dict(path=r["path"], tags=r["tags"])) + "\n")
    counts = {}
    for r in rows:
        for t in r["tags"]:
            counts[t] = counts.get(t, 0) + 1
    summ = dict(split=split, clips=nclips, crops=len(rows), hours=round(len(rows) * CROP / SR / 3600, 3),
                tag_counts=dict(sorted(counts.items(), key=lambda kv: -kv[1])),
                sources={s: sum(1 for r in rows if r["meta"]["source"] == s) for s in cfg["sources"]})
    with open(os.path.join(outdir, "summary.json"), "w") as f:
        json.dump(summ, f, indent=1)
    log("%s: %d crops, %.2f h; tags %s" % (split, len(rows), summ["hours"], json.dumps(summ["tag_counts"])))
    return summ


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--train-hours", type=float, default=3.0)
    ap.add_argument("--test-hours", type=float, default=1.0)
    ap.add_argument("--opl3-hours", type=float, default=0.25)
    ap.add_argument("--val-hours", type=float, default=0.5, help="the val split (not in the default --splits)")
    ap.add_argument("--splits", default="train,test,test_opl3")
    ap.add_argument("--clips", type=int, default=0, help="clips per split (overrides the hours)")
    args = ap.parse_args(argv)
    clip_h = CROPS_PER_CLIP * CROP / SR / 3600
    hours = {"train": args.train_hours, "test": args.test_hours, "test_opl3": args.opl3_hours,
             "val": args.val_hours}
    for split in args.splits.split(","):
        n = args.clips or int(np.ceil(hours[split] / clip_h))
        generate(split, n, os.path.abspath(args.out), log=lambda *a: print(*a, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
