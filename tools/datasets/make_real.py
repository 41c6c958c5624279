#!/usr/bin/python3
"""make_real.py - an evaluation set of REAL recordings whose labels are facts of how each crop was made.

Usage: make_real.py --out DIR --cache DIR [--packages a,b,c] [--items N] [--limit N] [--seed S]

Writes DIR/crops/*.wav (16-bit, 22,050 Hz mono, exactly 59,049 samples = one model chunk each),
DIR/manifest.jsonl with one line per crop {"path": "crops/...wav", "tags": [...]} (paths relative to
DIR), DIR/meta.jsonl (family, source package/file/licence of every recording in the crop, tempo,
groove, per-stem level and activity), DIR/summary.json (counts per tag, family, package, licence;
the model tags without any positive) and DIR/items/*.json (per-item records that make re-runs skip
finished work).

DESIGN
- Sources are recorded samples from Debian packages, fetched like build_unlabelled.py does
  (`apt-get download` into --cache unless a PKG_*.deb is there, `dpkg-deb -x` to CACHE/extracted/PKG;
  nothing is installed): sonic-pi-samples, hydrogen-drumkits, lmms-common. Only files on the
  allow-lists below are used, each with the tags its identity makes a fact (the package's own name
  for it, in an instrument folder: guit_em9 -> guitar, cello01 -> cello + strings). Files whose
  content we cannot state without listening are left out (sonic-pi loop_garzul/mika/compus/safari,
  ambi_choir, ambi_piano (sustained and processed), bass_*, elec_*; lmms latin_* loops, strings/pads
  that may be synthesised, house/electro loops; hydrogen's synthesised and mixed-origin kits), and so
  are hand drums (tabla, djembe, cajon), which are not the drum kit "drums" means in make_labelled.py.
- Families (one crop per item, each item from its own seed):
    loop  a real drum-break / drum-machine loop, tiled from a seeded offset -> drums, beat, beats.
          No tempo tag: the package does not state the loop's tempo or beat count.
    kit   real single hits of an acoustic drum kit (hydrogen kits, sonic-pi's drum_* kit) arranged in
          one of make_labelled.py's drum grooves at a seeded tempo drawn from its tempo classes
          (slow 56-80, mid 90-130, fast 140-180 BPM) -> drums, beat, beats, and fast/slow with
          make_labelled's onset-density confirmation.
    solo  one instrument's samples (one pool) re-triggered back to back (or one long sample from a
          seeded offset) -> the pool's tags, and "solo" when it is the only active stem.
    duo   two pools of different instruments, no drums.
    band  one pool over a drum stem (loop or kit; hits of the pool start on the kit's half-beat grid).
  Pitched samples shorter than a crop are re-triggered (never pitch-shifted or time-stretched);
  loops are tiled; hits are sequenced; nothing is padded with silence except a sample's own decay.
- Labels exactly as make_labelled.py derives them, so ROC/PR on both sets are comparable: per stem a
  ~93 ms frame is active when its RMS exceeds -20 dB relative to the crop's mix RMS and -60 dBFS; a
  stem is present at >= 25 % active frames, absent below 5 %, and a crop with a stem in between is
  dropped. Tags: a pool's tags; drums/beat/beats for a drum stem; "no vocal/no vocals/no voice" on
  every crop (no source contains a voice); "solo" when exactly one pitched stem and nothing else is
  active; fast/slow only for kit grooves (tempo class confirmed by onsets per beat). Pools without an
  MTAT tag (organ, trumpet, slap bass) still play: they make real negatives and still count for solo.
  Never emitted: vocal tags (Debian has no such recordings), choir, harp, sitar, genre/mood tags.
- Licence per source file from the package's debian/copyright (build_unlabelled.parse_copyright;
  a Files: pattern also matches when a tail of it matches a tail of the installed path, since
  upstream paths differ from installed ones: etc/samples/x.flac vs usr/share/sonic-pi/samples/x.flac,
  drumkits/K.h2drumkit vs usr/share/hydrogen/data/drumkits/K/...), plus the kit's own drumkit.xml
  licence string for hydrogen kits.
- Idempotent: item i is generated from random.Random(seed * 1000003 + i); its record stores a key
  (seed, index, package versions, allow-list version) and is reused when the key matches and its
  crop exists. manifest/meta/summary are rebuilt from the records and written only when they change.
"""
import argparse
import fnmatch
import hashlib
import json
import math
import os
import random
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import build_unlabelled as bu  # noqa: E402
import make_labelled as ml  # noqa: E402

SR = ml.SR
CROP = ml.CROP
VERSION = 1  # bump when allow-lists or generation change: every item is regenerated
DEFAULT_PACKAGES = ["sonic-pi-samples", "hydrogen-drumkits", "lmms-common"]
NO_VOICE = ["no vocal", "no vocals", "no voice"]
DRUM_TAGS = ["drums", "beat", "beats"]
MODEL_TAGS = ["no vocal", "no vocals", "no voice", "beat", "beats", "drums", "guitar", "fast", "piano", "solo",
              "slow", "synth", "strings", "singing", "vocal", "vocals", "voice", "male", "male vocal",
              "male voice", "man", "harp", "harpsichord", "choir", "choral", "cello", "flute", "violin",
              "female", "female vocal", "female voice", "woman", "sitar"]
FAMILY_WEIGHTS = {"loop": 1.0, "kit": 2.0, "solo": 3.0, "duo": 1.5, "band": 3.0}

SPI = "usr/share/sonic-pi/samples/"
LMMS = "usr/share/lmms/samples/"
H2 = "usr/share/hydrogen/data/drumkits/"

# pitched pools: name -> (tags, [(package, path inside the package)])
POOLS = {
    "guitar": (["guitar"], [("sonic-pi-samples", SPI + f) for f in (
        "guit_e_fifths.flac", "guit_em9.flac", "guit_e_slide.flac", "guit_harmonics.flac")] +
        [("lmms-common", LMMS + "instruments/" + f) for f in (
            "steel_guitar01.ogg", "steel_guitar_slight_distorted01.ogg", "steel_guitar_medium_distorted01.ogg",
            "steel_guitar_heavy_distorted01.ogg")]),
    # acoustic and electric piano (make_labelled: GM 0-5 -> piano)
    "piano": (["piano"], [("lmms-common", LMMS + "instruments/" + f) for f in (
        "piano01.ogg", "piano02.ogg", "e_piano_accord01.ogg", "e_piano_accord02.ogg")]),
    "violin": (["violin", "strings"], [("lmms-common", LMMS + "instruments/" + f) for f in (
        "violin_double_stop01.ogg", "violin_fingered01.ogg", "violin_pizzicato01.ogg")]),
    "cello": (["cello", "strings"], [("lmms-common", LMMS + "instruments/cello01.ogg")]),
    "flute": (["flute"], [("lmms-common", LMMS + "instruments/flute01.ogg")]),
    "harpsichord": (["harpsichord"], [("lmms-common", LMMS + "instruments/harpsichord01.ogg")]),
    # recordings of named hardware synthesisers (Roland Juno / TB-303, Korg Poly-6, Nord, Oberheim Matrix-1000)
    "synth": (["synth"], [("lmms-common", LMMS + f) for f in (
        "stringsnpads/juno_pad01.ogg", "stringsnpads/korg_poly6_drone01.ogg", "stringsnpads/nord_ambient01.ogg",
        "basses/matrix1000_pluck01.ogg", "bassloops/tb303_01.ogg")]),
    # real instruments without an MTAT tag: negatives for every instrument tag, still "solo" alone
    "untagged": ([], [("lmms-common", LMMS + "instruments/" + f) for f in (
        "church_organ01.ogg", "church_organ02.ogg", "church_organ03.ogg", "church_organ04.ogg",
        "e_organ01.ogg", "trumpet01.ogg", "bassslap02.ogg")]),
}
POOL_WEIGHT = {"untagged": 0.5}

# drum loops: breaks and a TR-909 pattern, drums only by what they are
LOOPS = [("sonic-pi-samples", SPI + f) for f in ("loop_amen.flac", "loop_amen_full.flac", "loop_breakbeat.flac")] + \
        [("lmms-common", LMMS + "beats/" + f) for f in ("break01.ogg", "break02.ogg", "break03.ogg", "jungle01.ogg",
                                                         "909beat01.ogg")]

# acoustic kits recorded from real drums (drumkit.xml info: Ludwig, Tama/Pearl/Paiste, wooden kit...)
H2_KITS = ["BJA_Pacific", "ColomboAcousticDrumkit", "ForzeeStereo", "Millo-Drums_v.1", "Millo_MultiLayered2",
           "Millo_MultiLayered3", "The Black Pearl 1.0"]
# sonic-pi's drum_* hits: one acoustic kit (all by freesound user menegass)
SPI_KIT = {36: ["drum_bass_soft.flac", "drum_bass_hard.flac"], 38: ["drum_snare_soft.flac", "drum_snare_hard.flac"],
           42: ["drum_cymbal_closed.flac"], 46: ["drum_cymbal_open.flac"]}
# GM drum note -> instrument-name patterns in a hydrogen kit (first matching instrument wins)
GM_ROLE = {
    36: [r"kick", r"bass ?drum"],
    38: [r"^(pearl )?snare( rock| 1|1)?( \(|$)", r"snare(?!.*(roll|rim|jazz|dry))", r"snare"],
    37: [r"side ?stick", r"rim ?click", r"^(pearl )?stick"],
    39: [r"clap"],
    40: [r"snare rock", r"snare 2 \(", r"snare dry", r"snare"],
    42: [r"closed", r"hat closed"],
    46: [r"open(ed)?( |$)", r"hat open"],
    51: [r"^(paiste )?ride( \(|$| jazz| rock)", r"^ride"],
}
GM_FALLBACK = {37: 38, 39: 38, 40: 38, 46: 42, 51: 42}


def log(*a):
    print(*a, flush=True)


# ------------------------------------------------------------------------------------------------
# packages, licences, decoding


def copyright_licence(root, pkg, relpath, cache={}):
    """(licence, rule, copyright file) of an installed file, from the package's debian/copyright."""
    cfile = os.path.join("usr/share/doc", pkg, "copyright")
    key = (root, pkg)
    if key not in cache:
        cache[key] = bu.parse_copyright(os.path.join(root, cfile))
    paras, default, machine = cache[key]
    lic, rule = bu.licence_for(cache[key], relpath)
    if machine and rule.startswith("package default"):
        tail = tail_match(paras, relpath)
        if tail:
            lic, rule = tail
    return lic, rule, cfile


def tail_match(paras, relpath):
    """Last paragraph with a pattern whose tail (>= 2 path components, or an .h2drumkit archive
    standing for the folder it unpacks to) matches a tail of relpath."""
    parts = relpath.split("/")
    best = None
    for pats, name in paras:
        for p in pats:
            pp = p.split("/")
            if p == "*" or len(pp) < 2:
                continue
            if pp[-1].endswith(".h2drumkit"):  # drumkits/K.h2drumkit -> .../drumkits/K/<file>
                stem = pp[-1][:-len(".h2drumkit")]
                for i in range(len(parts) - 2):
                    if parts[i] == pp[-2] and (fnmatch.fnmatchcase(parts[i + 1], stem) or
                                               fnmatch.fnmatchcase(parts[i + 1], stem + " *")):
                        best = (name, "Files: " + p + " (unpacked kit folder)")
                continue
            for k in range(len(pp) - 1):
                tail = pp[k:]
                if len(tail) <= len(parts) and fnmatch.fnmatchcase("/".join(parts[-len(tail):]), "/".join(tail)):
                    best = (name, "Files: " + p + " (tail match)")
                    break
    return best


def decode(path):
    """Decode any audio file to float32 mono at SR with FFmpeg. LMMS ships one RIFF/WAVE file with a
    Vorbis payload (format 0x674f) that FFmpeg cannot open: its embedded Ogg stream is decoded."""
    data, src = None, path
    with open(path, "rb") as f:
        head = f.read(256)
    if head[:4] == b"RIFF" and b"OggS" in head:
        with open(path, "rb") as f:
            blob = f.read()
        data, src = blob[blob.find(b"OggS"):], "pipe:0"
    r = subprocess.run(["ffmpeg", "-v", "error", "-i", src, "-ac", "1",
                        "-ar", str(SR), "-f", "f32le", "-"], input=data, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE)
    if r.returncode != 0:
        raise RuntimeError("ffmpeg cannot decode %s: %s" % (path, r.stderr.decode(errors="replace")[-200:]))
    return np.frombuffer(r.stdout, np.float32).copy()


class Sources:
    """The extracted packages, their versions and licences, decoded audio (cached per run)."""

    def __init__(self, cache, packages):
        self.roots, self.versions, self.audio, self.info = {}, {}, {}, {}
        for pkg in packages:
            deb, err = bu.download(cache, pkg)
            if not deb:
                raise RuntimeError("apt-get download %s failed: %s" % (pkg, err))
            self.roots[pkg] = bu.extract(cache, pkg, deb)
            self.versions[pkg] = bu.deb_version(deb)

    def has(self, pkg, rel):
        return pkg in self.roots and os.path.isfile(os.path.join(self.roots[pkg], rel))

    def get(self, pkg, rel):
        k = (pkg, rel)
        if k not in self.audio:
            self.audio[k] = decode(os.path.join(self.roots[pkg], rel))
        return self.audio[k]

    def record(self, pkg, rel, extra=None):
        k = (pkg, rel)
        if k not in self.info:
            lic, rule, cfile = copyright_licence(self.roots[pkg], pkg, rel)
            self.info[k] = dict(package=pkg, version=self.versions[pkg], file=rel, licence=lic,
                                licence_rule=rule, copyright_file=cfile)
            if extra:
                self.info[k].update(extra)
        return self.info[k]


# ------------------------------------------------------------------------------------------------
# drum kits


def h2_kit(root, name):
    """Parse a hydrogen drumkit.xml: {gm_note: [(min_vel, max_vel, gain, file relpath)]}, licence."""
    kdir = H2 + name
    tree = ET.parse(os.path.join(root, kdir, "drumkit.xml")).getroot()
    for el in tree.iter():  # newer kits declare xmlns="http://www.hydrogen-music.org/drumkit"
        el.tag = el.tag.rsplit("}", 1)[-1]
    lic = (tree.findtext("license") or tree.findtext("licence") or "").strip()
    insts = []
    for inst in tree.iter("instrument"):
        iname = (inst.findtext("name") or "").strip()
        vol = float(inst.findtext("volume") or 1.0)
        layers = []
        for lay in inst.findall("layer"):
            fn = (lay.findtext("filename") or "").strip()
            if fn:
                layers.append((float(lay.findtext("min") or 0), float(lay.findtext("max") or 1),
                               float(lay.findtext("gain") or 1) * vol, kdir + "/" + fn))
        fn = (inst.findtext("filename") or "").strip()  # old format: one sample per instrument
        if not layers and fn:
            layers.append((0.0, 1.0, vol, kdir + "/" + fn))
        layers = [l for l in layers if os.path.isfile(os.path.join(root, l[3]))]
        if iname and layers:
            insts.append((iname, sorted(layers)))
    notes = {}
    for gm, pats in GM_ROLE.items():
        for pat in pats:
            hit = next((ly for n, ly in insts if re.search(pat, n.lower())), None)
            if hit:
                notes[gm] = (hit, next(n for n, ly in insts if ly is hit))
                break
    return notes, lic


def load_kits(src):
    """All usable kits: [dict(name, package, notes={gm: [(min, max, gain, rel)]}, names={gm: name}, licence)]."""
    kits = []
    if "hydrogen-drumkits" in src.roots:
        root = src.roots["hydrogen-drumkits"]
        for k in H2_KITS:
            if not os.path.isfile(os.path.join(root, H2, k, "drumkit.xml")):
                continue
            notes, lic = h2_kit(root, k)
            if 36 in notes and 38 in notes and 42 in notes:
                kits.append(dict(name=k, package="hydrogen-drumkits", upstream_licence=lic,
                                 notes={g: v[0] for g, v in notes.items()}, names={g: v[1] for g, v in notes.items()}))
    if all(src.has("sonic-pi-samples", SPI + f) for fs in SPI_KIT.values() for f in fs):
        notes = {g: [(i / len(fs), (i + 1) / len(fs), 1.0, SPI + f) for i, f in enumerate(fs)]
                 for g, fs in SPI_KIT.items()}  # soft/hard hits split the velocity range
        kits.append(dict(name="sonic-pi drum_*", package="sonic-pi-samples", upstream_licence="",
                         notes=notes, names={g: ",".join(fs) for g, fs in SPI_KIT.items()}))
    return kits


def kit_layer(kit, gm, vel):
    while gm not in kit["notes"]:
        gm = GM_FALLBACK[gm]
    layers = kit["notes"][gm]
    v = vel / 127.0
    for lo, hi, gain, rel in layers:
        if lo <= v <= hi:
            return gain, rel
    return min(((abs((lo + hi) / 2 - v), gain, rel) for lo, hi, gain, rel in layers))[1:]


# ------------------------------------------------------------------------------------------------
# building stems


def place(buf, x, t, fade_in=False):
    """Add x into buf starting at sample t (may be negative); 5 ms fade-in when fade_in."""
    if fade_in and len(x) > 110:
        x = x.copy()
        x[:110] *= np.linspace(0, 1, 110, dtype=np.float32)
    a, b = max(0, t), min(len(buf), t + len(x))
    if b > a:
        buf[a:b] += x[a - t:b - t]


def cut(x, n):
    """First n samples of x with a 30 ms fade-out when shortened."""
    if n >= len(x):
        return x
    y = x[:n].copy()
    f = min(n, 660)
    y[n - f:] *= np.linspace(1, 0, f, dtype=np.float32)
    return y


def kit_stem(rng, src, kit):
    groove = rng.choice(sorted(ml.GROOVES))
    tempo_class = rng.choice(["slow", "mid", "fast"])
    bpm = {"slow": rng.randint(56, 80), "mid": rng.randint(90, 130), "fast": rng.randint(140, 180)}[tempo_class]
    spb = 60.0 / bpm
    bpb = 3 if groove == "waltz" else 4
    steps = 12 if groove == "waltz" else 16
    step_s = bpb * spb / steps
    offset = rng.uniform(0, bpb * spb)  # the crop starts somewhere inside the first bar
    nbars = int(math.ceil((CROP / SR + offset) / (bpb * spb))) + 1
    buf = np.zeros(CROP, np.float32)
    onsets, files = set(), set()
    for bar in range(nbars):
        for inst, ss in ml.GROOVES[groove].items():
            for s in ss:
                vel = rng.randint(85, 115) if s % 4 == 0 else rng.randint(60, 90)
                t = (bar * steps + s) * step_s - offset
                gain, rel = kit_layer(kit, inst, vel)
                x = src.get(kit["package"], rel)
                place(buf, x * (gain * vel / 127.0), int(round(t * SR)))
                if -0.05 < t < CROP / SR:
                    files.add(rel)
                    if t >= 0:
                        onsets.add(round(t, 4))
    return dict(role="drums", kind="kit", tags=list(DRUM_TAGS), name=kit["name"], package=kit["package"],
                files=sorted(files), groove=groove, bpm=bpm, tempo_class=tempo_class, spb=spb,
                onsets=sorted(onsets), upstream_licence=kit.get("upstream_licence", "")), buf


def loop_stem(rng, src, loops):
    pkg, rel = rng.choice(loops)
    x = src.get(pkg, rel)
    reps = int(math.ceil((CROP + len(x)) / len(x))) + 1
    y = np.tile(x, reps)
    off = rng.randrange(len(x))
    return dict(role="drums", kind="loop", tags=list(DRUM_TAGS), name=os.path.basename(rel), package=pkg,
                files=[rel], onsets=[]), y[off:off + CROP].astype(np.float32)


def pitched_stem(rng, src, pool, grid=None):
    """Samples of one pool: either one long sample from a seeded offset, or samples re-triggered back
    to back from their start (on the half-beat grid `grid` seconds when given)."""
    tags, files = POOLS[pool][0], [f for f in POOLS[pool][1] if src.has(*f)]
    buf = np.zeros(CROP, np.float32)
    used, onsets = set(), []
    long_ = [f for f in files if len(src.get(*f)) > CROP + SR // 2]
    if long_ and grid is None and rng.random() < 0.5:
        pkg, rel = rng.choice(long_)
        x = src.get(pkg, rel)
        off = rng.randrange(0, len(x) - CROP)
        place(buf, x[off:off + CROP], 0, fade_in=off > 0)
        used.add((pkg, rel))
    else:
        favour = rng.sample(files, min(len(files), rng.choice([1, 2, 3])))  # a crop uses 1-3 recordings
        t = -rng.uniform(0, 0.8)
        while t < CROP / SR:
            if grid:
                t = math.ceil(t / grid - 1e-9) * grid
            pkg, rel = rng.choice(favour)
            x = src.get(pkg, rel)
            L = len(x) / SR
            dur = L if L < 1.0 else rng.uniform(max(0.8, 0.5 * L), L)
            place(buf, cut(x, int(dur * SR)), int(round(t * SR)))
            if t + dur > 0:
                used.add((pkg, rel))
                if t >= 0:
                    onsets.append(round(t, 4))
            t += dur + (rng.uniform(0.05, 0.4) if L < 0.6 else rng.uniform(0.0, 0.15))
    return dict(role="inst", kind="pool", pool=pool, tags=list(tags), name=pool,
                files=sorted(r for _, r in used), package=sorted({p for p, _ in used}), onsets=onsets), buf


# ------------------------------------------------------------------------------------------------
# labels (make_labelled.py's activity rule)


def label(stems, rng):
    """Gain-stage, mix and label one crop. Returns (mix, tags, active, levels) or None when ambiguous
    or when no stem is active."""
    scaled = []
    for st, x in stems:
        nz = np.abs(x) > 1e-4
        rms = float(np.sqrt(np.mean(x[nz] ** 2))) if np.any(nz) else 0.0
        if rms <= 0:
            continue
        level = -3 if st["role"] == "drums" else 0
        scaled.append((st, x * (10 ** ((level + rng.uniform(-3, 3)) / 20) * 0.1 / rms)))
    if not scaled:
        return None
    mix = np.sum([s for _, s in scaled], axis=0)
    peak = float(np.max(np.abs(mix)))
    norm = 0.89 / peak if peak > 0 else 1.0
    thr = ml.activity_threshold(mix * norm)
    act, levels = [], {}
    for st, s in scaled:
        srms, frac = ml.stem_activity(s * norm, thr)
        levels["%s:%s" % (st["role"], st["name"])] = [round(20 * np.log10(max(srms, 1e-9)), 1), round(frac, 2)]
        state = ml.stem_state(srms, frac, thr)
        if state == "ambiguous":
            return None  # neither present nor absent: no label would be a fact
        if state == "present":
            act.append(st)
    if not act:
        return None
    tags = set(NO_VOICE)  # no source has a voice
    for st in act:
        tags.update(st["tags"])
    if len(act) == 1 and act[0]["role"] == "inst":
        tags.add("solo")
    kits = [st for st in act if st.get("kind") == "kit"]
    if kits:  # tempo by construction: make_labelled's class, confirmed by onsets per beat in the crop
        k = kits[0]
        beats = CROP / SR / k["spb"]
        per_beat = max(len(set(st["onsets"])) / beats for st in act)
        if k["tempo_class"] == "fast" and per_beat >= 0.75:
            tags.add("fast")
        elif k["tempo_class"] == "slow" and per_beat <= 2.0:
            tags.add("slow")
    return mix * norm, sorted(tags), act, levels


# ------------------------------------------------------------------------------------------------
# items


def available(src):
    pools = [p for p, (_, fs) in sorted(POOLS.items()) if any(src.has(*f) for f in fs)]
    loops = [f for f in LOOPS if src.has(*f)]
    kits = load_kits(src)
    fam = {"loop": bool(loops), "kit": bool(kits), "solo": bool(pools), "duo": len(pools) >= 2,
           "band": bool(pools) and bool(loops or kits)}
    return pools, loops, kits, [f for f in FAMILY_WEIGHTS if fam[f]]


def item_key(seed, idx, src):
    h = hashlib.sha256(json.dumps([VERSION, seed, idx, sorted(src.versions.items()), POOLS, LOOPS, H2_KITS,
                                   sorted(SPI_KIT.items())]).encode()).hexdigest()
    return h[:16]


def make_item(idx, seed, src, avail, outdir):
    """Build item idx; returns its crop rows (0 or 1)."""
    pools, loops, kits, families = avail
    rng = random.Random(seed * 1000003 + idx)
    family = rng.choices(families, weights=[FAMILY_WEIGHTS[f] for f in families])[0]

    def pick_pool(exclude=()):
        c = [p for p in pools if p not in exclude]
        return rng.choices(c, weights=[POOL_WEIGHT.get(p, 1.0) for p in c])[0]

    def drums():
        if kits and (not loops or rng.random() < 0.5):
            return kit_stem(rng, src, rng.choice(kits))
        return loop_stem(rng, src, loops)

    stems = []
    if family == "loop":
        stems.append(loop_stem(rng, src, loops))
    elif family == "kit":
        stems.append(kit_stem(rng, src, rng.choice(kits)))
    elif family == "solo":
        stems.append(pitched_stem(rng, src, pick_pool()))
    elif family == "duo":
        a = pick_pool()
        stems += [pitched_stem(rng, src, a), pitched_stem(rng, src, pick_pool(exclude=(a,)))]
    else:
        d = drums()
        grid = d[0]["spb"] / 2 if d[0].get("kind") == "kit" else None
        stems += [d, pitched_stem(rng, src, pick_pool(), grid=grid)]
    res = label(stems, rng)
    fn = "real_%05d.wav" % idx
    path = os.path.join(outdir, "crops", fn)
    if res is None:
        if os.path.exists(path):
            os.remove(path)
        return []
    mix, tags, act, levels = res
    ml.write_wav(path, mix)
    sources = []
    for st, _ in stems:
        pk = st["package"] if isinstance(st["package"], list) else [st["package"]]
        for rel in st["files"]:
            pkg = next(p for p in pk if src.has(p, rel))
            extra = {"upstream_licence": st["upstream_licence"]} if st.get("upstream_licence") else None
            sources.append(dict(src.record(pkg, rel, extra), stem=st["role"] + ":" + st["name"]))
    kit = next((st for st, _ in stems if st.get("kind") == "kit"), None)
    meta = dict(item=idx, family=family, packages=sorted({s["package"] for s in sources}),
                licences=sorted({s["licence"] for s in sources}),
                bpm=kit["bpm"] if kit else None, tempo_class=kit["tempo_class"] if kit else None,
                groove=kit["groove"] if kit else None,
                stems_db=levels, active=[st["role"] + ":" + st["name"] for st in act], sources=sources)
    return [dict(path="crops/" + fn, tags=tags, meta=meta)]


def write_if_changed(path, text):
    if os.path.exists(path) and open(path).read() == text:
        return False
    with open(path + ".part", "w") as f:
        f.write(text)
    os.replace(path + ".part", path)
    return True


def generate(out, cache, packages, items, seed, log=log):
    os.makedirs(os.path.join(out, "crops"), exist_ok=True)
    os.makedirs(os.path.join(out, "items"), exist_ok=True)
    src = Sources(cache, packages)
    avail = available(src)
    log("families %s; pools %s; %d loops; kits %s" % (avail[3], avail[0], len(avail[1]), [k["name"] for k in avail[2]]))
    made = 0
    rows = []
    for i in range(items):
        rec_path = os.path.join(out, "items", "%05d.json" % i)
        key = item_key(seed, i, src)
        rec = None
        if os.path.exists(rec_path):
            rec = json.load(open(rec_path))
            if rec.get("key") != key or not all(os.path.exists(os.path.join(out, r["path"])) for r in rec["rows"]):
                rec = None
        if rec is None:
            rec = dict(key=key, rows=make_item(i, seed, src, avail, out))
            with open(rec_path + ".part", "w") as f:
                json.dump(rec, f)
            os.replace(rec_path + ".part", rec_path)
            made += 1
            if made % 50 == 0:
                log("%d items made (%d/%d)" % (made, i + 1, items))
        rows += rec["rows"]
    man = "".join(json.dumps(dict(path=r["path"], tags=r["tags"])) + "\n" for r in rows)
    meta = "".join(json.dumps(dict(path=r["path"], tags=r["tags"], **r["meta"])) + "\n" for r in rows)
    counts, fams, pkgs, lics, recs = {}, {}, {}, {}, {}
    for r in rows:
        m = r["meta"]
        for t in r["tags"]:
            counts[t] = counts.get(t, 0) + 1
            recs.setdefault(t, set()).update("%s/%s" % (s["package"], s["file"]) for s in m["sources"]
                                             if t in NO_VOICE or _source_has_tag(s, t, m))
        fams[m["family"]] = fams.get(m["family"], 0) + 1
        for p in m["packages"]:
            pkgs[p] = pkgs.get(p, 0) + 1
        for l in m["licences"]:
            lics[l] = lics.get(l, 0) + 1
    summ = dict(crops=len(rows), items=items, seed=seed, hours=round(len(rows) * CROP / SR / 3600, 4),
                packages={p: src.versions[p] for p in sorted(src.versions)},
                tag_counts=dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))),
                recordings_per_tag={t: len(recs.get(t, ())) for t in sorted(counts, key=lambda t: -counts[t])},
                model_tags_without_positives=[t for t in MODEL_TAGS if t not in counts],
                families=dict(sorted(fams.items())), crops_per_package=dict(sorted(pkgs.items())),
                crops_per_licence=dict(sorted(lics.items())))
    changed = [write_if_changed(os.path.join(out, "manifest.jsonl"), man),
               write_if_changed(os.path.join(out, "meta.jsonl"), meta),
               write_if_changed(os.path.join(out, "summary.json"), json.dumps(summ, indent=1) + "\n")]
    log("%d crops from %d items (%d made this run, outputs %s); tags %s" % (
        len(rows), items, made, "rewritten" if any(changed) else "unchanged", json.dumps(summ["tag_counts"])))
    return summ


def _source_has_tag(s, tag, meta):
    """Is this source recording one that carries `tag` in this crop (for recordings_per_tag)?"""
    stem = s["stem"]
    if stem not in meta["active"]:
        return False
    if stem.startswith("drums:"):
        return tag in DRUM_TAGS or tag in ("fast", "slow")
    pool = stem.split(":", 1)[1]
    return tag in POOLS[pool][0] or tag == "solo"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--cache", required=True, help="folder for the .deb files (extracted under CACHE/extracted)")
    ap.add_argument("--packages", default=",".join(DEFAULT_PACKAGES), help="comma-separated subset of %s" %
                    ",".join(DEFAULT_PACKAGES))
    ap.add_argument("--items", type=int, default=480, help="items to generate (one crop each unless dropped)")
    ap.add_argument("--limit", type=int, default=0, help="only the first N items (quick runs, tests)")
    ap.add_argument("--seed", type=int, default=4004)
    args = ap.parse_args(argv)
    packages = [p for p in args.packages.split(",") if p]
    bad = [p for p in packages if p not in DEFAULT_PACKAGES]
    if bad:
        ap.error("unknown package(s) %s: the allow-lists cover %s" % (bad, DEFAULT_PACKAGES))
    n = min(args.items, args.limit) if args.limit else args.items
    os.makedirs(args.cache, exist_ok=True)
    generate(os.path.abspath(args.out), os.path.abspath(args.cache), packages, n, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
