#!/usr/bin/python3
"""build_unlabelled.py - build the unlabelled pretraining corpus from Debian music packages.

Usage: build_unlabelled.py --packages FILE --cache DIR --out DIR [--jobs N] [--seed S] [--val-frac F]

For every package named in FILE (one per line, '#' comments): `apt-get download` it into DIR (skipped
when a PKG_*.deb is cached), extract it with `dpkg-deb -x` under DIR/extracted/PKG, find its music,
decode each piece to 22,050 Hz mono 16-bit FLAC under OUT/audio/PKG/, drop broken files and duplicates,
and write OUT/manifest.jsonl, OUT/train.jsonl, OUT/validation.jsonl, OUT/rejected.jsonl, OUT/summary.json.

DESIGN
- What counts as music: tracker modules and MIDI anywhere (except Frets on Fire note charts and
  documentation); other audio (ogg/opus/mp3/flac/wav/wv, and ogg without extension found by its magic)
  when it sits in a music-like folder (music, bgm, tunes, cdtracks, soundtrack...) or has a music-like
  name (music, zik, mus1...) and lasts >= 10 s, or anywhere when it lasts >= 60 s; never in
  voice/speech/sfx/ambient/weather folders nor named like an ambience loop (rain, wind...). Archives: members of .pk3/.zip files under a
  music-like folder; Doom WADs: D_* lumps (MIDI kept, MUS converted to MIDI). Frets on Fire songs are
  stems (song.ogg + guitar.ogg [+ rhythm.ogg]) and are mixed into one piece.
- MIDI is rendered in this process with libfluidsynth and FluidR3_GM (one soundfont load for the run),
  directly at 22,050 Hz (half the synthesis cost of 44.1 kHz; FFmpeg then only encodes FLAC).
- Decoding is FFmpeg (libopenmpt for modules). The FLAC STREAMINFO MD5 is the MD5 of the decoded PCM:
  it is the content hash used for dedupe, at no extra decoding cost.
- Duplicates: same decoded PCM; same normalised name and duration within 1 s (shared tracks across
  packages re-encoded); *_fast/*_enhanced/*_old variants of a kept piece; a MIDI whose name matches a
  recorded piece of a sibling package (planetblupi's ogg is its MIDI rendered). First kept wins, in
  package-list order.
- Licence per file from the package's machine-readable debian/copyright (last matching Files:
  paragraph, patterns matched against every suffix of the installed path), else the package default;
  free-text copyright files get a keyword guess and are marked as such.
- Split by package (all pieces of a package in one split): packages ordered by sha256(seed + name) and
  taken into validation until it holds ~val-frac of the hours.
- Idempotent: per-package state in OUT/state/PKG.json keyed by source; a piece is decoded again only
  when its source bytes changed or its output is missing. Outputs are written as *.part and renamed
  when complete, so the finished outputs of an interrupted run are adopted without state.
"""
import argparse
import concurrent.futures as cf
import fnmatch
import glob
import hashlib
import json
import os
import re
import shutil
import struct
import sys
import tempfile
import time
import zipfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dsutil  # noqa: E402

SR = 22050
MIN_MUSIC_DIR_S = 10.0
MIN_ANYWHERE_S = 60.0
AUDIO_EXT = {".ogg", ".oga", ".opus", ".mp3", ".flac", ".wav", ".wv"}
TRACKER_EXT = {".mod", ".xm", ".it", ".s3m", ".stm", ".669", ".mtm", ".med", ".okt", ".far", ".ult"}
MIDI_EXT = {".mid", ".midi", ".kar"}
ARCHIVE_EXT = {".pk3", ".zip"}
MUSIC_DIR = re.compile(r"^(music|musics|musik|bgm|tunes|songs?|cdtracks|soundtracks?|albums?|audio|"
                       r"music\.ocg|themes|mod)$", re.I)
NOT_MUSIC_DIR = re.compile(r"^(voices?|speech|dialog(ue)?s?|announcer|sfx|soundfx|effects|"
                           r"voice_samples|tux_ingame_comments|weapons|ambient|ambience|weather|tilesets|"
                           r"toon|interface)$", re.I)
SOUND_DIR = re.compile(r"^(sounds?|snd|sfx)$", re.I)
LANG_DIR = re.compile(r"^[a-z]{2}(_[A-Z]{2})?$")
MUSIC_NAME = re.compile(r"(music|musik|musique|zik|^mus\d|soundtrack|^bgm)", re.I)
NOT_MUSIC_NAME = re.compile(r"^(rain|wind|thunder|storm|waves?|birds?|crickets?)(\d*)$", re.I)
VARIANT = re.compile(r"[-_ .](fast|enhanced|old)$", re.I)
SF2 = "/usr/share/sounds/sf2/FluidR3_GM.sf2"


def log(*a):
    print(*a, flush=True)


def norm_stem(path):
    s = os.path.splitext(os.path.basename(path))[0].lower()
    return re.sub(r"[^a-z0-9]", "", s)


def safe_rel(rel):
    return re.sub(r"[^A-Za-z0-9._/+-]", "_", rel)


# ------------------------------------------------------------------------------------------------
# download + extract


def read_packages(path):
    out = []
    with open(path) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line:
                out.append(line)
    return out


def cached_deb(cache, pkg):
    debs = sorted(glob.glob(os.path.join(cache, glob.escape(pkg) + "_*.deb")))
    return debs[-1] if debs else None


def download(cache, pkg):
    deb = cached_deb(cache, pkg)
    if deb:
        return deb, None
    r = dsutil.run(["apt-get", "download", "-q", pkg], cwd=cache)
    deb = cached_deb(cache, pkg)
    if r.returncode != 0 or not deb:
        return None, (r.stderr.decode(errors="replace").strip().splitlines() or ["apt-get failed"])[-1]
    return deb, None


def extract(cache, pkg, deb):
    root = os.path.join(cache, "extracted", pkg)
    marker = root + ".done"
    if os.path.exists(marker) and open(marker).read().strip() == os.path.basename(deb):
        return root
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    r = dsutil.run(["dpkg-deb", "-x", deb, root])
    if r.returncode != 0:
        raise RuntimeError("dpkg-deb -x failed: " + r.stderr.decode(errors="replace")[-300:])
    with open(marker, "w") as f:
        f.write(os.path.basename(deb) + "\n")
    return root


def deb_version(deb):
    parts = os.path.basename(deb).split("_")
    return parts[1].replace("%3a", ":") if len(parts) > 2 else "?"


# ------------------------------------------------------------------------------------------------
# licences


def parse_copyright(path):
    """Return (paragraph list [(patterns, licence)], default licence, machine_readable)."""
    try:
        text = open(path, encoding="utf-8", errors="replace").read()
    except OSError:
        return [], "unknown (no debian/copyright)", False
    if not re.match(r"\s*Format:", text):
        return [], guess_licence(text), False
    paras = []
    for block in re.split(r"\n\s*\n", text):
        files = re.search(r"^Files:(.*(?:\n[ \t].*)*)", block, re.M)
        lic = re.search(r"^License:[ \t]*(.*)", block, re.M)
        if files and lic:
            pats = files.group(1).split()
            paras.append((pats, lic.group(1).strip() or "see copyright"))
    default = next((l for p, l in paras if "*" in p), paras[0][1] if paras else "unknown")
    return paras, default, True


def guess_licence(text):
    t = text.lower()
    found = []
    for key, name in [("creative commons attribution-sharealike", "CC-BY-SA"), ("cc-by-sa", "CC-BY-SA"),
                      ("creative commons attribution", "CC-BY"), ("cc-by", "CC-BY"), ("cc0", "CC0"),
                      ("artistic license", "Artistic"), ("public domain", "public-domain"),
                      ("general public license", "GPL"), ("gpl", "GPL"), ("bsd", "BSD"), ("mit license", "MIT")]:
        if key in t and name not in found:
            found.append(name)
    ver = re.search(r"gnu general public license[^.]{0,40}version (\d)", t)
    if ver and "GPL" in found:
        found[found.index("GPL")] = "GPL-%s+" % ver.group(1)
    return ("keyword guess: " + " or ".join(found)) if found else "unknown (free-text copyright)"


def licence_for(lic, relpath):
    paras, default, machine = lic
    if not machine:
        return default, "free-text copyright"
    parts = relpath.split("/")
    suffixes = ["/".join(parts[i:]) for i in range(len(parts))]
    best = None
    for pats, name in paras:
        for p in pats:
            if p == "*":
                continue
            if any(fnmatch.fnmatchcase(s, p) for s in suffixes):
                best = (name, "Files: " + p)
    return best if best else (default, "package default (Files: *)")


# ------------------------------------------------------------------------------------------------
# finding music


def is_ogg_magic(path):
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"OggS"
    except OSError:
        return False


def dir_class(relpath):
    """'music' (>= 10 s kept), 'other' (kept only when >= 60 s) or 'no' (never music)."""
    parts = relpath.split("/")
    stem = os.path.splitext(parts[-1])[0]
    if any(NOT_MUSIC_DIR.match(p) for p in parts[:-1]):
        return "no"
    if len(parts) > 2 and LANG_DIR.match(parts[-2]) and any(SOUND_DIR.match(p) for p in parts[:-2]):
        return "no"  # sound/<level>/en/*.ogg: spoken lines in one language (fillets-ng)
    # the nearest classified folder decides: themes/oldskool/snd/ is sound effects, sound/cdtracks/ music
    for p in reversed(parts[:-1]):
        if MUSIC_DIR.match(p):
            return "music"  # a music folder wins over the name: nexuiz has a track called thunder.ogg
        if SOUND_DIR.match(p):
            break
    if NOT_MUSIC_NAME.match(stem):
        return "no"
    return "music" if MUSIC_NAME.search(stem) else "other"


def probe_duration(path):
    r = dsutil.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", path])
    try:
        return float(r.stdout.decode().strip())
    except ValueError:
        return None


def find_music(pkg, root, work):
    """Return a list of candidate items: dict(key, kind, inputs[list of paths], rel)."""
    items = []
    fof_dirs = {}
    for dirpath, dirs, files in os.walk(root):
        dirs.sort()
        for fn in sorted(files):
            full = os.path.join(dirpath, fn)
            if os.path.islink(full) or not os.path.isfile(full):
                continue
            rel = os.path.relpath(full, root)
            if rel.startswith("usr/share/doc/"):
                continue  # documentation (e.g. mma's example snippets and scales) is not music
            ext = os.path.splitext(fn)[1].lower()
            size = os.path.getsize(full)
            if fn == "notes.mid" and os.path.exists(os.path.join(dirpath, "song.ini")):
                continue  # Frets on Fire note chart, not music
            if fn in ("song.ogg", "guitar.ogg", "rhythm.ogg") and os.path.exists(os.path.join(dirpath, "song.ini")):
                fof_dirs.setdefault(dirpath, []).append(full)
                continue
            if ext in MIDI_EXT:
                items.append(dict(key=rel, kind="midi", inputs=[full], rel=rel))
            elif ext in TRACKER_EXT:
                items.append(dict(key=rel, kind="tracker", inputs=[full], rel=rel))
            elif ext == ".wad":
                items += wad_items(rel, full, work)
            elif ext in ARCHIVE_EXT:
                items += archive_items(rel, full, work)
            elif ext in AUDIO_EXT or (ext == "" and is_ogg_magic(full)):
                cls = dir_class(rel)
                if cls == "no":
                    continue
                minsize = 1 << 20 if ext == ".wav" else 150 << 10
                if cls == "other" and size < minsize:
                    continue
                items.append(dict(key=rel, kind="audio", inputs=[full], rel=rel, dirclass=cls))
    for d, stems in sorted(fof_dirs.items()):
        rel = os.path.relpath(os.path.join(d, "song.ogg"), root)
        items.append(dict(key=rel, kind="mix", inputs=sorted(stems), rel=rel, dirclass="music"))
    return items


def wad_items(rel, full, work):
    out = []
    try:
        lumps = list(dsutil.wad_lumps(full))
    except (ValueError, struct.error):
        return out
    d = os.path.join(work, "wad", safe_rel(rel))
    os.makedirs(d, exist_ok=True)
    for name, data in lumps:
        if not name.startswith("D_") or len(data) < 16:
            continue
        p = os.path.join(d, name + ".mid")
        if data[:4] == b"MThd":
            mid = data
        elif data[:4] == b"MUS\x1a":
            try:
                mid = dsutil.mus_to_midi(data)
            except (ValueError, IndexError):
                continue
        else:
            continue
        if not os.path.exists(p) or open(p, "rb").read() != mid:
            with open(p, "wb") as f:
                f.write(mid)
        out.append(dict(key=rel + "/" + name, kind="midi", inputs=[p], rel=rel + "/" + name))
    return out


def archive_items(rel, full, work):
    out = []
    try:
        z = zipfile.ZipFile(full)
    except (zipfile.BadZipFile, OSError):
        return out
    d = os.path.join(work, "zip", safe_rel(rel))
    with z:
        for info in sorted(z.infolist(), key=lambda i: i.filename):
            m = info.filename
            ext = os.path.splitext(m)[1].lower()
            if info.is_dir() or ext not in AUDIO_EXT | TRACKER_EXT | MIDI_EXT:
                continue
            if dir_class(m) != "music":
                continue
            p = os.path.join(d, safe_rel(m))
            if not os.path.exists(p) or os.path.getsize(p) != info.file_size:
                os.makedirs(os.path.dirname(p), exist_ok=True)
                with z.open(info) as src, open(p + ".part", "wb") as dst:
                    shutil.copyfileobj(src, dst)
                os.replace(p + ".part", p)
            kind = "midi" if ext in MIDI_EXT else ("tracker" if ext in TRACKER_EXT else "audio")
            out.append(dict(key=rel + "/" + m, kind=kind, inputs=[p], rel=rel + "/" + m, dirclass="music"))
    return out


# ------------------------------------------------------------------------------------------------
# decoding


def flac_info(path):
    """(duration_s, pcm_md5 hex) from a FLAC file's STREAMINFO."""
    with open(path, "rb") as f:
        head = f.read(42)
    if head[:4] != b"fLaC":
        raise ValueError("not FLAC")
    si = head[8:42]
    rate = (si[10] << 12) | (si[11] << 4) | (si[12] >> 4)
    total = ((si[13] & 0x0F) << 32) | struct.unpack(">I", si[14:18])[0]
    return total / rate, si[18:34].hex()


def ffmpeg_to_flac(inputs, out):
    tmp = out + ".part.flac"
    cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-v", "error", "-y"]
    for i in inputs:
        cmd += ["-i", i]
    if len(inputs) > 1:
        cmd += ["-filter_complex", "amix=inputs=%d:duration=longest" % len(inputs)]
    else:
        cmd += ["-map", "0:a:0"]
    cmd += ["-ac", "1", "-ar", str(SR), "-sample_fmt", "s16", "-c:a", "flac", "-f", "flac", tmp]
    r = dsutil.run(cmd)
    if r.returncode != 0 or not os.path.exists(tmp):
        try:
            os.unlink(tmp)
        except OSError:
            pass
        msg = r.stderr.decode(errors="replace").strip().splitlines()
        return "ffmpeg: " + (msg[-1] if msg else "exit %d" % r.returncode)
    os.replace(tmp, out)
    return None


def midi_note_count(path):
    """Number of note-on events in a standard MIDI file; raises ValueError when it does not parse."""
    data = open(path, "rb").read()
    if data[:4] != b"MThd":
        raise ValueError("no MThd header")
    hl = struct.unpack(">I", data[4:8])[0]
    ntrk = struct.unpack(">H", data[10:12])[0]
    pos, notes = 8 + hl, 0
    for _ in range(ntrk):
        if data[pos:pos + 4] != b"MTrk":
            raise ValueError("bad track chunk")
        ln = struct.unpack(">I", data[pos + 4:pos + 8])[0]
        trk, pos = data[pos + 8:pos + 8 + ln], pos + 8 + ln
        if len(trk) != ln:
            raise ValueError("truncated track")
        i, status = 0, 0
        while i < ln:
            _, i = dsutil.read_varlen(trk, i)  # delta time
            b = trk[i]
            if b in (0xFF, 0xF0, 0xF7):  # meta (FF type len data) or sysex (F0/F7 len data)
                length, i = dsutil.read_varlen(trk, i + (2 if b == 0xFF else 1))
                i += length
                continue
            if b & 0x80:
                status = b
                i += 1
            elif not status:
                raise ValueError("running status without status")
            hi = status & 0xF0
            n = 1 if hi in (0xC0, 0xD0) else 2
            if hi == 0x90 and trk[i + 1] > 0:
                notes += 1
            i += n
    return notes


class Decoder:
    def __init__(self, out, jobs):
        self.out = out
        self.pool = cf.ThreadPoolExecutor(max_workers=max(1, jobs))
        self.fluid = None
        self.tmp = tempfile.mkdtemp(prefix="clmr-unlab-")

    def close(self):
        self.pool.shutdown()
        if self.fluid:
            self.fluid.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def decode(self, item, dst):
        """Produce dst (FLAC); return None or an error string. Runs in a worker thread except MIDI."""
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        if item["kind"] == "midi":
            try:
                if midi_note_count(item["inputs"][0]) == 0:
                    return "MIDI has no notes"
            except (ValueError, IndexError, struct.error) as e:
                return "MIDI does not parse: %s" % e
            if self.fluid is None:
                self.fluid = dsutil.FluidRenderer(SF2, rate=SR)
            wav = os.path.join(self.tmp, "render.wav")
            blocks = self.fluid.render(item["inputs"][0], wav)
            if blocks < SR // 64:
                return "MIDI renders to < 1 s"
            err = ffmpeg_to_flac([wav], dst)
            os.unlink(wav)
            return err
        return ffmpeg_to_flac(item["inputs"], dst)


# ------------------------------------------------------------------------------------------------
# main pipeline


def process_package(pkg, args, dec, seen_src):
    deb, err = download(args.cache, pkg)
    if not deb:
        return None, "download failed: %s" % err
    root = extract(args.cache, pkg, deb)
    work = os.path.join(args.cache, "extracted", pkg + ".members")
    lic = parse_copyright(os.path.join(root, "usr/share/doc", pkg, "copyright"))
    state_path = os.path.join(args.out, "state", pkg + ".json")
    old = {}
    if os.path.exists(state_path):
        old = json.load(open(state_path)).get("items", {})
    items = find_music(pkg, root, work)
    recs = {}
    todo = []
    for it in items:
        src_hash = hashlib.sha256("".join(dsutil.sha256_file(p) for p in it["inputs"]).encode()).hexdigest()
        licence, rule = licence_for(lic, it["rel"])
        dst = os.path.join(args.out, "audio", pkg, safe_rel(it["rel"]) + ".flac")
        rec = dict(package=pkg, version=deb_version(deb), source=it["key"], kind=it["kind"],
                   output=os.path.relpath(dst, args.out), licence=licence, licence_rule=rule,
                   copyright_file="usr/share/doc/%s/copyright" % pkg, src_sha256=src_hash,
                   dirclass=it.get("dirclass", "music"), inputs=it["inputs"])
        o = old.get(it["key"])
        if o and o.get("status") == "broken" and o.get("reason", "").startswith("too short"):
            o["status"] = "short"  # state written before "short" had its own status
        if o and o.get("src_sha256") == src_hash and o.get("status") in ("ok", "broken", "short", "silent", "dup") and \
                (o["status"] != "ok" or os.path.exists(dst)):
            o.update({k: rec[k] for k in ("licence", "licence_rule", "inputs", "version")})
            if o["status"] == "ok" and not o.get("silence_checked"):
                check_silence(o, dst)  # state from before the silence check existed
            recs[it["key"]] = o
            continue
        if src_hash in seen_src:
            rec.update(status="dup", reason="identical source bytes as %s" % seen_src[src_hash])
            recs[it["key"]] = rec
            continue
        seen_src[src_hash] = pkg + ":" + it["key"]
        if it["kind"] == "audio" and it.get("dirclass") != "music":
            d = probe_duration(it["inputs"][0])
            if d is None or d < MIN_ANYWHERE_S:
                continue  # not music by our rule (short sound outside a music folder)
        recs[it["key"]] = rec
        if os.path.exists(dst):
            # finished output of an interrupted run (outputs are renamed into place only when complete)
            finish_record(rec, dst, None)
            continue
        todo.append((it, rec, dst))
    for r in recs.values():
        if r.get("status") == "ok":
            seen_src.setdefault(r["src_sha256"], pkg + ":" + r["source"])
    futs = []
    for it, rec, dst in todo:
        if it["kind"] == "midi":
            futs.append((rec, dst, None, dec.decode(it, dst)))
        else:
            futs.append((rec, dst, dec.pool.submit(dec.decode, it, dst), None))
    for rec, dst, fut, err in futs:
        if fut is not None:
            err = fut.result()
        finish_record(rec, dst, err)
    os.makedirs(os.path.dirname(state_path), exist_ok=True)
    with open(state_path + ".part", "w") as f:
        json.dump(dict(package=pkg, deb=os.path.basename(deb), items=recs), f, indent=1)
    os.replace(state_path + ".part", state_path)
    return recs, None


def finish_record(rec, dst, err):
    if err:
        rec.update(status="broken", reason=err)
        return
    try:
        dur, md5 = flac_info(dst)
    except (OSError, ValueError) as e:
        rec.update(status="broken", reason="output unreadable: %s" % e)
        return
    rec.update(duration_s=round(dur, 3), pcm_md5=md5, sha256=dsutil.sha256_file(dst))
    minimum = MIN_MUSIC_DIR_S if rec.get("dirclass") == "music" or rec["kind"] != "audio" else MIN_ANYWHERE_S
    if dur < minimum:
        rec.update(status="short", reason="too short (%.1f s < %.0f s)" % (dur, minimum))
        os.unlink(dst)
        return
    rec.update(status="ok", reason="")
    check_silence(rec, dst)


def check_silence(rec, dst):
    """Drop (near-)silent pieces (wesnoth ships a silence.ogg). Only files that FLAC compresses below
    4 kB/s are decoded again to measure their peak, so this costs nothing for real music."""
    rec["silence_checked"] = True
    if os.path.getsize(dst) >= 4000 * max(rec["duration_s"], 1e-3):
        return
    r = dsutil.run(["ffmpeg", "-nostdin", "-hide_banner", "-i", dst, "-af", "volumedetect", "-f", "null", "-"])
    m = re.search(r"max_volume: (-?[\d.]+|-inf) dB", r.stderr.decode(errors="replace"))
    peak = float(m.group(1)) if m and m.group(1) != "-inf" else -200.0
    if peak < -50:
        rec.update(status="silent", reason="peak %.1f dBFS < -50 dBFS" % peak)
        os.unlink(dst)


def dedupe(order, allrecs):
    """Mark duplicates among ok records; returns the kept list in package order."""
    kept, by_md5, by_name = [], {}, {}
    ok = [(p, r) for p in order for r in sorted(allrecs.get(p, {}).values(), key=lambda r: r["source"])]
    audio_stems = {}
    for p, r in ok:
        if r.get("status") in ("ok", "dup") and r["kind"] != "midi" and "pcm_md5" in r:
            audio_stems.setdefault(norm_stem(r["source"]), set()).add(p)
    pkg_stems = {}
    for p, r in ok:
        if r.get("status") in ("ok", "dup") and "pcm_md5" in r:
            pkg_stems.setdefault(p, set()).add(norm_stem(r["source"]))
    for p, r in ok:
        if "pcm_md5" not in r or r.get("status") in ("broken", "short", "silent"):
            continue
        if r.get("status") == "dup" and r.get("reason", "").startswith("identical source"):
            continue
        stem = norm_stem(r["source"])
        reason = None
        if r["pcm_md5"] in by_md5:
            reason = "same decoded audio as " + by_md5[r["pcm_md5"]]
        else:
            for q, d in by_name.get(stem, []):
                if abs(d - r["duration_s"]) < 1.0:
                    reason = "same name and duration as " + q
                    break
        base = VARIANT.sub("", os.path.splitext(os.path.basename(r["source"]))[0])
        if not reason and VARIANT.search(os.path.splitext(os.path.basename(r["source"]))[0]) and \
                re.sub(r"[^a-z0-9]", "", base.lower()) in pkg_stems.get(p, set()):
            reason = "variant (_fast/_enhanced/_old) of %s" % base
        if not reason and r["kind"] == "midi":
            sib = [q for q in audio_stems.get(stem, set()) if q != p and q.split("-")[0] == p.split("-")[0]]
            if sib:
                reason = "MIDI of a recorded piece in " + sib[0]
        if reason:
            r.update(status="dup", reason=reason)
            continue
        r.update(status="ok", reason="")
        by_md5[r["pcm_md5"]] = "%s:%s" % (p, r["source"])
        by_name.setdefault(stem, []).append(("%s:%s" % (p, r["source"]), r["duration_s"]))
        kept.append(r)
    return kept


def split_packages(kept, seed, frac):
    hours = {}
    for r in kept:
        hours[r["package"]] = hours.get(r["package"], 0.0) + r["duration_s"] / 3600
    total = sum(hours.values())
    order = sorted(hours, key=lambda p: hashlib.sha256(("%d:%s" % (seed, p)).encode()).hexdigest())
    val, vh = set(), 0.0
    for p in order:
        if vh >= frac * total:
            break
        if vh + hours[p] <= (frac + 0.02) * total:
            val.add(p)
            vh += hours[p]
    return {p: ("validation" if p in val else "train") for p in hours}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--packages", required=True)
    ap.add_argument("--cache", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--seed", type=int, default=6)
    ap.add_argument("--val-frac", type=float, default=0.10)
    args = ap.parse_args(argv)
    args.cache, args.out = os.path.abspath(args.cache), os.path.abspath(args.out)
    os.makedirs(args.cache, exist_ok=True)
    os.makedirs(args.out, exist_ok=True)
    pkgs = read_packages(args.packages)
    dec = Decoder(args.out, args.jobs)
    allrecs, failures, seen_src = {}, [], {}
    t0 = time.time()
    try:
        for i, pkg in enumerate(pkgs):
            t = time.time()
            try:
                recs, err = process_package(pkg, args, dec, seen_src)
            except (RuntimeError, OSError) as e:
                recs, err = None, str(e)
            if err:
                failures.append(dict(package=pkg, reason=err))
                log("[%d/%d] %-28s FAILED: %s" % (i + 1, len(pkgs), pkg, err))
                continue
            allrecs[pkg] = recs
            ok = [r for r in recs.values() if r.get("status") == "ok"]
            bad = [r for r in recs.values() if r.get("status") == "broken"]
            short = [r for r in recs.values() if r.get("status") == "short"]
            log("[%d/%d] %-28s %3d pieces %6.2f h, %d broken, %d short  (%.0f s)" % (
                i + 1, len(pkgs), pkg, len(ok), sum(r["duration_s"] for r in ok) / 3600, len(bad), len(short),
                time.time() - t))
        kept = dedupe(pkgs, allrecs)
        # a piece kept now but de-duplicated (and deleted) in an earlier run needs its audio back
        for r in kept:
            dst = os.path.join(args.out, r["output"])
            if not os.path.exists(dst):
                it = dict(kind=r["kind"], inputs=r["inputs"])
                finish_record(r, dst, dec.decode(it, dst))
        kept = [r for r in kept if r["status"] == "ok"]
    finally:
        dec.close()
    for p, recs in allrecs.items():
        for r in recs.values():
            if r.get("status") == "dup":
                dst = os.path.join(args.out, r["output"])
                if os.path.exists(dst):
                    os.unlink(dst)
        sp = os.path.join(args.out, "state", p + ".json")
        st = json.load(open(sp))
        st["items"] = recs
        with open(sp + ".part", "w") as f:
            json.dump(st, f, indent=1)
        os.replace(sp + ".part", sp)
    # outputs of pieces that are no longer candidates (rules changed) or were left half-written
    keep = {os.path.normpath(os.path.join(args.out, r["output"])) for r in kept}
    for p in allrecs:
        for dirpath, _, files in os.walk(os.path.join(args.out, "audio", p)):
            for fn in files:
                full = os.path.normpath(os.path.join(dirpath, fn))
                if full not in keep:
                    os.unlink(full)
    splits = split_packages(kept, args.seed, args.val_frac)
    fields = ("package", "version", "source", "kind", "output", "duration_s", "licence", "licence_rule",
              "copyright_file", "sha256", "pcm_md5", "src_sha256")
    summary = dict(packages=len(pkgs), failed_packages=failures, splits={}, rejected={})
    with open(os.path.join(args.out, "manifest.jsonl.part"), "w") as man, \
            open(os.path.join(args.out, "train.jsonl.part"), "w") as tr, \
            open(os.path.join(args.out, "validation.jsonl.part"), "w") as va:
        for r in kept:
            sp = splits[r["package"]]
            line = {k: r.get(k) for k in fields}
            line["split"] = sp
            man.write(json.dumps(line, sort_keys=True) + "\n")
            (tr if sp == "train" else va).write(json.dumps({"path": r["output"], "package": r["package"]}) + "\n")
            s = summary["splits"].setdefault(sp, dict(files=0, hours=0.0, packages=set()))
            s["files"] += 1
            s["hours"] += r["duration_s"] / 3600
            s["packages"].add(r["package"])
    with open(os.path.join(args.out, "rejected.jsonl.part"), "w") as rej:
        for p in pkgs:
            for r in sorted(allrecs.get(p, {}).values(), key=lambda r: r["source"]):
                if r.get("status") != "ok":
                    rej.write(json.dumps({k: r.get(k) for k in ("package", "source", "status", "reason")}) + "\n")
                    summary["rejected"][r["status"]] = summary["rejected"].get(r["status"], 0) + 1
    for n in ("manifest", "train", "validation", "rejected"):
        os.replace(os.path.join(args.out, n + ".jsonl.part"), os.path.join(args.out, n + ".jsonl"))
    for s in summary["splits"].values():
        s["packages"] = sorted(s["packages"])
        s["hours"] = round(s["hours"], 3)
    summary["elapsed_s"] = round(time.time() - t0, 1)
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    log("== summary")
    for sp in ("train", "validation"):
        s = summary["splits"].get(sp, dict(files=0, hours=0.0, packages=[]))
        log("%-10s %5d files %7.2f h from %d packages" % (sp, s["files"], s["hours"], len(s["packages"])))
    log("rejected: %s; failed packages: %d; %.0f s" % (
        json.dumps(summary["rejected"]), len(failures), summary["elapsed_s"]))
    return 1 if failures and not kept else 0


if __name__ == "__main__":
    sys.exit(main())
