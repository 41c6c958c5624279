#!/usr/bin/python3
"""make_vocal.py - a REAL-voice evaluation set: recorded speech, recorded instrumental music, and both.

Usage: make_vocal.py --out DIR --cache DIR [--items N] [--limit N] [--seed S]

Writes DIR/crops/*.wav (16-bit, 22,050 Hz mono, exactly 59,049 samples = one model chunk each),
DIR/manifest.jsonl ({"path": "crops/...wav", "tags": [...]}, paths relative to DIR), DIR/meta.jsonl
(family, source package/file/licence of every recording in the crop, per-stem level and activity),
DIR/summary.json and DIR/items/*.json (per-item records that make re-runs skip finished work), like
make_real.py, whose label rule and file layout it shares.

DESIGN
- Why this set: the default model was trained on espeak-ng / festival voices only; its vocal tags
  ("no voice", "vocal", ...) had never been measured on a real human voice. Debian main has no
  recording documented as singing (docs/datasets.md section 4 lists what was searched), but it has
  hours of recorded, acted speech and recorded instrumental parts with no voice:
    speech  fillets-ng-data-cs / fillets-ng-data-nl: the spoken dialogue of Fish Fillets NG in
            Czech and Dutch, one line per file (sound/<level>/<lang>/*.ogg), recorded by voice actors.
    guitar  fretsonfire-songs-muldjord / fretsonfire-songs-sectoid: each song's isolated guitar
            part (guitar.ogg: the part the player plays, a recorded electric guitar). The full
            backing mixes (song.ogg) are NOT used: whether they contain a voice is not documented.
- Families (one crop per item, each item from its own seed):
    speech        dialogue lines of one level and language, back to back from a seeded line, with
                  0.1-0.5 s pauses -> voice, vocal, vocals (a human voice is audible).
    guitar        a seeded window of one guitar part -> guitar, solo, no vocal, no vocals, no voice.
    speech_guitar speech (0 dB) over a guitar window (-3..-9 dB, seeded) -> voice, vocal, vocals, guitar.
- Labels with make_labelled.py's stem-activity rule (ml.activity_threshold / stem_activity /
  stem_state): a stem is present at >= 25 % active ~93 ms frames, absent below 5 %, and a crop with
  a stem in between is dropped; a crop with no active stem is dropped. Tags are only what the active
  stems are: speech -> voice/vocal/vocals (never "singing": speech is not singing, so "singing" is a
  negative on every crop); guitar -> guitar; "no vocal/no vocals/no voice" when no speech stem is
  active; "solo" when the guitar is the only active stem. Never emitted: singing, choir/choral,
  male/female (the packages do not name the actors' voices), instrument tags other than guitar.
  Tags that get no positive here are excluded from `clmrd eval`'s means (it excludes a tag without a
  positive or negative crop), so they count as unmeasured, never as measured and wrong.
- Licence per source file from the package's debian/copyright (build_unlabelled.parse_copyright).
- Idempotent: item i is generated from random.Random(seed * 1000003 + i); its record stores a key
  (seed, index, package versions, VERSION) and is reused when the key matches and its crop exists.
"""
import argparse
import hashlib
import json
import os
import random
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import build_unlabelled as bu  # noqa: E402
import make_labelled as ml  # noqa: E402
import make_real as mr  # noqa: E402

SR = ml.SR
CROP = ml.CROP
VERSION = 1  # bump when sources or generation change: every item is regenerated
SPEECH_PACKAGES = ["fillets-ng-data-cs", "fillets-ng-data-nl"]
GUITAR_PACKAGES = ["fretsonfire-songs-muldjord", "fretsonfire-songs-sectoid"]
PACKAGES = SPEECH_PACKAGES + GUITAR_PACKAGES
NO_VOICE = ["no vocal", "no vocals", "no voice"]
VOICE_TAGS = ["voice", "vocal", "vocals"]
FAMILY_WEIGHTS = {"speech": 1.0, "guitar": 1.0, "speech_guitar": 1.2}
FILLETS = "usr/share/games/fillets-ng/sound/"
FOF = "usr/share/games/fretsonfire/data/songs/"


def log(*a):
    print(*a, flush=True)


def speech_lines(src):
    """{(package, level): [relpath, ...]} sorted, for every level that has dialogue lines."""
    out = {}
    for pkg in SPEECH_PACKAGES:
        root = src.roots[pkg]
        lang = pkg.rsplit("-", 1)[1]
        base = os.path.join(root, FILLETS)
        for level in sorted(os.listdir(base)):
            d = os.path.join(base, level, lang)
            if os.path.isdir(d):
                files = sorted(f for f in os.listdir(d) if f.endswith(".ogg"))
                if len(files) >= 4:
                    out[(pkg, level)] = [FILLETS + level + "/" + lang + "/" + f for f in files]
    return out


def guitar_parts(src):
    out = []
    for pkg in GUITAR_PACKAGES:
        base = os.path.join(src.roots[pkg], FOF)
        for band in sorted(os.listdir(base)):
            bdir = os.path.join(base, band)
            if not os.path.isdir(bdir):
                continue
            for song in sorted(os.listdir(bdir)):
                rel = FOF + band + "/" + song + "/guitar.ogg"
                if os.path.isfile(os.path.join(src.roots[pkg], rel)):
                    out.append((pkg, rel))
    return out


def speech_stem(rng, src, lines):
    key = rng.choice(sorted(lines))
    files = lines[key]
    i = rng.randrange(len(files))
    buf = np.zeros(CROP, np.float32)
    used = []
    t = -rng.uniform(0.0, 1.0)
    while t < CROP / SR:
        rel = files[i % len(files)]
        x = src.get(key[0], rel)
        mr.place(buf, x, int(round(t * SR)))
        if t + len(x) / SR > 0:
            used.append(rel)
        t += len(x) / SR + rng.uniform(0.1, 0.5)
        i += 1
    return dict(role="voice", name="speech:" + key[0].rsplit("-", 1)[1] + ":" + key[1], package=key[0],
                files=used, tags=list(VOICE_TAGS)), buf


def guitar_stem(rng, src, parts):
    pkg, rel = rng.choice(parts)
    x = src.get(pkg, rel)
    off = rng.randrange(0, len(x) - CROP)
    return dict(role="inst", name="guitar:" + rel.split("/")[-2], package=pkg, files=[rel],
                tags=["guitar"]), x[off:off + CROP].astype(np.float32).copy()


def label(stems, rng):
    """Gain-stage (speech 0 dB, guitar -3..-9 dB under it; alone: 0 dB), mix, peak-normalise and label
    one crop with make_labelled's activity rule. Returns (mix, tags, active, levels) or None."""
    scaled = []
    for st, x in stems:
        nz = np.abs(x) > 1e-4
        rms = float(np.sqrt(np.mean(x[nz] ** 2))) if np.any(nz) else 0.0
        if rms <= 0:
            continue
        level = -rng.uniform(3, 9) if (st["role"] == "inst" and len(stems) > 1) else 0.0
        scaled.append((st, x * (10 ** (level / 20) * 0.1 / rms)))
    if not scaled:
        return None
    mix = np.sum([s for _, s in scaled], axis=0)
    peak = float(np.max(np.abs(mix)))
    norm = 0.89 / peak if peak > 0 else 1.0
    thr = ml.activity_threshold(mix * norm)
    act, levels = [], {}
    for st, s in scaled:
        srms, frac = ml.stem_activity(s * norm, thr)
        levels[st["name"]] = [round(20 * np.log10(max(srms, 1e-9)), 1), round(frac, 2)]
        state = ml.stem_state(srms, frac, thr)
        if state == "ambiguous":
            return None
        if state == "present":
            act.append(st)
    if not act:
        return None
    tags = set()
    for st in act:
        tags.update(st["tags"])
    if not any(st["role"] == "voice" for st in act):
        tags.update(NO_VOICE)
    if len(act) == 1 and act[0]["role"] == "inst":
        tags.add("solo")
    return mix * norm, sorted(tags), act, levels


def item_key(seed, idx, src):
    return hashlib.sha256(json.dumps([VERSION, seed, idx, sorted(src.versions.items())]).encode()).hexdigest()[:16]


def make_item(idx, seed, src, lines, parts, outdir):
    rng = random.Random(seed * 1000003 + idx)
    fams = sorted(FAMILY_WEIGHTS)
    family = rng.choices(fams, weights=[FAMILY_WEIGHTS[f] for f in fams])[0]
    stems = []
    if family in ("speech", "speech_guitar"):
        stems.append(speech_stem(rng, src, lines))
    if family in ("guitar", "speech_guitar"):
        stems.append(guitar_stem(rng, src, parts))
    res = label(stems, rng)
    fn = "vocal_%05d.wav" % idx
    path = os.path.join(outdir, "crops", fn)
    if res is None:
        if os.path.exists(path):
            os.remove(path)
        return []
    mix, tags, act, levels = res
    ml.write_wav(path, mix)
    sources = [dict(src.record(st["package"], rel), stem=st["name"]) for st, _ in stems for rel in st["files"]]
    meta = dict(item=idx, family=family, packages=sorted({s["package"] for s in sources}),
                licences=sorted({s["licence"] for s in sources}), stems_db=levels,
                active=[st["name"] for st in act], sources=sources)
    return [dict(path="crops/" + fn, tags=tags, meta=meta)]


def generate(out, cache, items, seed, log=log):
    os.makedirs(os.path.join(out, "crops"), exist_ok=True)
    os.makedirs(os.path.join(out, "items"), exist_ok=True)
    src = mr.Sources(cache, PACKAGES)
    lines, parts = speech_lines(src), guitar_parts(src)
    log("%d dialogue levels (%d lines), %d guitar parts" % (len(lines), sum(map(len, lines.values())), len(parts)))
    rows, made = [], 0
    for i in range(items):
        rec_path = os.path.join(out, "items", "%05d.json" % i)
        key = item_key(seed, i, src)
        rec = None
        if os.path.exists(rec_path):
            rec = json.load(open(rec_path))
            if rec.get("key") != key or not all(os.path.exists(os.path.join(out, r["path"])) for r in rec["rows"]):
                rec = None
        if rec is None:
            rec = dict(key=key, rows=make_item(i, seed, src, lines, parts, out))
            with open(rec_path + ".part", "w") as f:
                json.dump(rec, f)
            os.replace(rec_path + ".part", rec_path)
            made += 1
        rows += rec["rows"]
    man = "".join(json.dumps(dict(path=r["path"], tags=r["tags"])) + "\n" for r in rows)
    meta = "".join(json.dumps(dict(path=r["path"], tags=r["tags"], **r["meta"])) + "\n" for r in rows)
    counts, fams, pkgs, lics, recs = {}, {}, {}, {}, {}
    for r in rows:
        m = r["meta"]
        for t in r["tags"]:
            counts[t] = counts.get(t, 0) + 1
        for s in m["sources"]:
            if s["stem"] in m["active"]:
                for t in r["tags"]:
                    if (t in VOICE_TAGS) == s["stem"].startswith("speech"):
                        recs.setdefault(t, set()).add("%s/%s" % (s["package"], s["file"]))
        fams[m["family"]] = fams.get(m["family"], 0) + 1
        for p in m["packages"]:
            pkgs[p] = pkgs.get(p, 0) + 1
        for lic in m["licences"]:
            lics[lic] = lics.get(lic, 0) + 1
    summ = dict(crops=len(rows), items=items, seed=seed, hours=round(len(rows) * CROP / SR / 3600, 4),
                packages={p: src.versions[p] for p in sorted(src.versions)},
                tag_counts=dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))),
                recordings_per_tag={t: len(recs.get(t, ())) for t in sorted(counts, key=lambda t: -counts[t])},
                model_tags_without_positives=[t for t in mr.MODEL_TAGS if t not in counts],
                families=dict(sorted(fams.items())), crops_per_package=dict(sorted(pkgs.items())),
                crops_per_licence=dict(sorted(lics.items())))
    changed = [mr.write_if_changed(os.path.join(out, "manifest.jsonl"), man),
               mr.write_if_changed(os.path.join(out, "meta.jsonl"), meta),
               mr.write_if_changed(os.path.join(out, "summary.json"), json.dumps(summ, indent=1) + "\n")]
    log("%d crops from %d items (%d made this run, outputs %s); tags %s" % (
        len(rows), items, made, "rewritten" if any(changed) else "unchanged", json.dumps(summ["tag_counts"])))
    return summ


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--cache", required=True, help="folder for the .deb files (extracted under CACHE/extracted)")
    ap.add_argument("--items", type=int, default=400, help="items to generate (one crop each unless dropped)")
    ap.add_argument("--limit", type=int, default=0, help="only the first N items (quick runs, tests)")
    ap.add_argument("--seed", type=int, default=5005)
    args = ap.parse_args(argv)
    n = min(args.items, args.limit) if args.limit else args.items
    os.makedirs(args.cache, exist_ok=True)
    generate(os.path.abspath(args.out), os.path.abspath(args.cache), n, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
