"""test_datasets.py - small real runs of the dataset tools (tools/datasets/).

DESIGN: build_unlabelled.py runs end to end on one real small Debian package (circuslinux-data: 5
tracker modules decoded through FFmpeg's libopenmpt, plus sound effects that must be ignored) and on a
local .deb built here with dpkg-deb (a copy of one real module, an ogg and its *_old variant, a broken
ogg, a MIDI file, a Doom WAD with a MUS lump, a DEP-5 copyright), so dedupe, broken-file handling, MIDI
rendering, MUS conversion, licences and the package split are all checked on real tools. The archive
download is skipped only when apt-get reports that the archive is unreachable (reason printed).
make_labelled.py renders hand-built clips to check labels against construction, and a few composed
clips per split to check the manifests and the source/voice separation of the splits.
"""
import json
import os
import shutil
import struct
import subprocess
import sys
import wave

import numpy as np
import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tools", "datasets"))
import build_unlabelled as bu  # noqa: E402
from deb_helpers import download_or_skip  # noqa: E402
import dsutil  # noqa: E402
import make_labelled as ml  # noqa: E402

REAL_PKG = "circuslinux-data"


def have(tool):
    return shutil.which(tool) is not None


needs_tools = pytest.mark.skipif(not (have("ffmpeg") and have("dpkg-deb") and have("apt-get")),
                                 reason="ffmpeg, dpkg-deb and apt-get are required (scripts/install-deps.sh)")


def ffprobe_stream(path):
    r = subprocess.run(["ffprobe", "-v", "error", "-show_entries",
                        "stream=codec_name,sample_rate,channels,sample_fmt", "-of", "json", path],
                       stdout=subprocess.PIPE, check=True)
    return json.loads(r.stdout)["streams"][0]


def make_mus(n_notes=12, note=60):
    """A Doom MUS lump: n_notes one-second notes on channel 0, then score end."""
    ev = bytearray()
    for _ in range(n_notes):
        ev += bytes([0x90, 0x80 | note, 100, 0x81, 0x0C])  # play (last, vol follows), delay 140 ticks
        ev += bytes([0x00, note])  # release
    ev += bytes([0x60])
    hdr = b"MUS\x1a" + struct.pack("<HHHHHH", len(ev), 16 + 2, 1, 0, 1, 0) + struct.pack("<H", 0)
    return hdr + bytes(ev)


def make_wad(lumps):
    data, dirent, pos = bytearray(), bytearray(), 12
    for name, blob in lumps:
        dirent += struct.pack("<ii8s", pos + len(data), len(blob), name.encode())
        data += blob
    return b"PWAD" + struct.pack("<ii", len(lumps), 12 + len(data)) + bytes(data) + bytes(dirent)


def write_test_midi(path, seconds=12):
    notes = [(i * 480, 400, 60 + (i % 5) * 2, 100) for i in range(seconds * 2)]  # 120 BPM eighths... quarters
    dsutil.write_midi(path, [dsutil.note_events(0, notes, program=0)], ppq=480, tempo_bpm=120)


def build_local_deb(tmp, cache, module_src):
    """A tiny .deb named clmrtest-music with known duplicates, variants and broken files."""
    root = os.path.join(tmp, "debroot")
    music = os.path.join(root, "usr/share/games/clmrtest/music")
    sounds = os.path.join(root, "usr/share/games/clmrtest/sounds")
    doc = os.path.join(root, "usr/share/doc/clmrtest-music")
    for d in (music, sounds, doc, os.path.join(root, "DEBIAN")):
        os.makedirs(d)
    shutil.copy(module_src, os.path.join(music, "copy_of_real" + os.path.splitext(module_src)[1]))
    ff = ["ffmpeg", "-v", "error", "-y", "-f", "lavfi"]
    subprocess.run(ff + ["-i", "sine=frequency=440:duration=12", "-c:a", "libvorbis",
                         os.path.join(music, "tune.ogg")], check=True)
    subprocess.run(ff + ["-i", "sine=frequency=660:duration=12", "-c:a", "libvorbis",
                         os.path.join(music, "tune_old.ogg")], check=True)
    subprocess.run(ff + ["-i", "sine=frequency=880:duration=1", "-c:a", "libvorbis",
                         os.path.join(sounds, "beep.ogg")], check=True)
    subprocess.run(ff + ["-i", "sine=frequency=550:duration=3", "-c:a", "libvorbis",
                         os.path.join(music, "jingle.ogg")], check=True)
    subprocess.run(ff + ["-i", "anullsrc=r=22050:cl=mono", "-t", "12", "-c:a", "libvorbis",
                         os.path.join(music, "silence.ogg")], check=True)
    with open(os.path.join(music, "broken.ogg"), "wb") as f:
        f.write(b"OggS" + os.urandom(3000))
    write_test_midi(os.path.join(music, "song.mid"))
    with open(os.path.join(root, "usr/share/games/clmrtest/doom.wad"), "wb") as f:
        f.write(make_wad([("D_TEST", make_mus()), ("MAP01", b"\0" * 32)]))
    with open(os.path.join(doc, "copyright"), "w") as f:
        f.write("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n"
                "Files: *\nCopyright: nobody\nLicense: GPL-2+\n\n"
                "Files: music/*\nCopyright: nobody\nLicense: CC0-1.0\n")
    with open(os.path.join(root, "DEBIAN/control"), "w") as f:
        f.write("Package: clmrtest-music\nVersion: 1.0\nArchitecture: all\nMaintainer: t <t@t>\n"
                "Description: test\n")
    subprocess.run(["dpkg-deb", "-Zgzip", "--build", root, os.path.join(cache, "clmrtest-music_1.0_all.deb")],
                   check=True, stdout=subprocess.DEVNULL)



def test_mus_to_midi_roundtrip(tmp_path):
    mid = dsutil.mus_to_midi(make_mus(7, 64))
    p = tmp_path / "x.mid"
    p.write_bytes(mid)
    assert bu.midi_note_count(str(p)) == 7
    with pytest.raises(ValueError):
        dsutil.mus_to_midi(b"MThd....")


def test_licence_matching():
    paras = ([(["*"], "GPL-2+"), (["data/music/*", "extra/x.ogg"], "CC-BY-SA-3.0")], "GPL-2+", True)
    assert bu.licence_for(paras, "usr/share/games/g/data/music/a.ogg")[0] == "CC-BY-SA-3.0"
    assert bu.licence_for(paras, "usr/share/games/g/sounds/a.ogg")[0] == "GPL-2+"
    free = ([], bu.guess_licence("released under the GNU General Public License, version 2"), False)
    assert "GPL" in bu.licence_for(free, "a.ogg")[0]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    if not (have("ffmpeg") and have("dpkg-deb") and have("apt-get")):
        pytest.skip("ffmpeg, dpkg-deb and apt-get are required (scripts/install-deps.sh)")
    tmp = str(tmp_path_factory.mktemp("corpus"))
    cache, out = os.path.join(tmp, "cache"), os.path.join(tmp, "out")
    os.makedirs(cache)
    deb = download_or_skip(cache, REAL_PKG)
    root = bu.extract(cache, REAL_PKG, deb)
    mods = sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs
                  if os.path.splitext(f)[1].lower() in bu.TRACKER_EXT)
    assert mods, "no tracker modules found in " + REAL_PKG
    build_local_deb(tmp, cache, mods[0])
    pk = os.path.join(tmp, "packages.txt")
    with open(pk, "w") as f:
        f.write("# test list\n%s\nclmrtest-music\n" % REAL_PKG)
    args = ["--packages", pk, "--cache", cache, "--out", out, "--jobs", "1", "--val-frac", "0.3"]
    assert bu.main(args) == 0
    man = [json.loads(l) for l in open(os.path.join(out, "manifest.jsonl"))]
    rej = [json.loads(l) for l in open(os.path.join(out, "rejected.jsonl"))]
    return dict(out=out, args=args, man=man, rej=rej, mods=mods)


def test_corpus_finds_music_and_flac_format(corpus):
    man = corpus["man"]
    real = [r for r in man if r["package"] == REAL_PKG]
    short = [r for r in corpus["rej"] if r["package"] == REAL_PKG and r["status"] == "short"]
    assert all(r["status"] == "short" for r in corpus["rej"] if r["package"] == REAL_PKG)
    assert len(real) + len(short) == len(corpus["mods"]) and len(real) >= 3, "every long module is kept"
    assert all(r["kind"] == "tracker" for r in real)
    assert not any("/sounds/" in r["source"] for r in man), "sound effects are not music"
    for r in man:
        path = os.path.join(corpus["out"], r["output"])
        st = ffprobe_stream(path)
        assert (st["codec_name"], int(st["sample_rate"]), st["channels"]) == ("flac", 22050, 1), r["output"]
        dur, md5 = bu.flac_info(path)
        assert abs(dur - r["duration_s"]) < 1e-2 and md5 == r["pcm_md5"] and dur >= 10
        assert bu.dsutil.sha256_file(path) == r["sha256"]
        assert r["licence"] and r["copyright_file"].endswith("/copyright")


def test_corpus_dedupe_broken_midi_mus(corpus):
    man, rej = corpus["man"], corpus["rej"]
    local = {os.path.basename(r["source"]): r for r in man if r["package"] == "clmrtest-music"}
    rejected = {os.path.basename(r["source"]): r for r in rej if r["package"] == "clmrtest-music"}
    # the copied module is a duplicate of the real package's first module
    assert "copy_of_real" + os.path.splitext(corpus["mods"][0])[1] in rejected
    assert rejected["tune_old.ogg"]["status"] == "dup" and "variant" in rejected["tune_old.ogg"]["reason"]
    assert rejected["broken.ogg"]["status"] == "broken"
    assert rejected["silence.ogg"]["status"] == "silent"
    assert rejected["jingle.ogg"]["status"] == "short" and "too short" in rejected["jingle.ogg"]["reason"]
    assert "beep.ogg" not in local and "beep.ogg" not in rejected
    assert local["tune.ogg"]["licence"] == "CC0-1.0"  # Files: music/* paragraph
    assert local["song.mid"]["kind"] == "midi" and local["song.mid"]["duration_s"] >= 12
    assert local["D_TEST"]["kind"] == "midi" and 12 <= local["D_TEST"]["duration_s"] < 18  # + render tail
    assert local["D_TEST"]["licence"] == "GPL-2+"  # outside music/: the package default
    md5s = [r["pcm_md5"] for r in man]
    assert len(md5s) == len(set(md5s)), "no two kept pieces decode to the same audio"


def test_corpus_split_by_package(corpus):
    out, man = corpus["out"], corpus["man"]
    by_pkg = {}
    for r in man:
        by_pkg.setdefault(r["package"], set()).add(r["split"])
    assert all(len(s) == 1 for s in by_pkg.values()), "a package never straddles splits"
    tr = [json.loads(l)["path"] for l in open(os.path.join(out, "train.jsonl"))]
    va = [json.loads(l)["path"] for l in open(os.path.join(out, "validation.jsonl"))]
    assert sorted(tr + va) == sorted(r["output"] for r in man) and not set(tr) & set(va)
    assert tr and va, "with 2 packages and val-frac 0.3 each split gets one package"
    summ = json.load(open(os.path.join(out, "summary.json")))
    assert abs(summ["splits"]["train"]["hours"] - sum(r["duration_s"] for r in man if r["split"] == "train") / 3600) < 1e-3


def test_corpus_rerun_is_idempotent(corpus):
    out = corpus["out"]
    mt = {r["output"]: os.path.getmtime(os.path.join(out, r["output"])) for r in corpus["man"]}
    before = open(os.path.join(out, "manifest.jsonl")).read()
    assert bu.main(corpus["args"]) == 0
    assert open(os.path.join(out, "manifest.jsonl")).read() == before
    assert all(os.path.getmtime(os.path.join(out, p)) == t for p, t in mt.items()), "nothing re-decoded"


# ------------------------------------------------------------------------------------------------
# labelled set

needs_render = pytest.mark.skipif(
    not (os.path.exists(ml.SOURCES["fluidr3"]["path"]) and have("espeak-ng") and have("timidity")),
    reason="fluid-soundfont-gm, espeak-ng and timidity are required (tools/datasets/deps.txt)")


def wav_info(path):
    with wave.open(path) as w:
        return w.getframerate(), w.getnchannels(), w.getnframes()


def median_f0(path):
    with wave.open(path) as w:
        sr = w.getframerate()
        x = np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(float)
    f0 = []
    for i in range(0, len(x) - 2048, 1024):
        f = x[i:i + 2048] - x[i:i + 2048].mean()
        if np.sqrt((f ** 2).mean()) < 200:
            continue
        ac = np.correlate(f, f, "full")[2047:]
        lo, hi = sr // 400, sr // 60
        f0.append(sr / (lo + np.argmax(ac[lo:hi])))
    return float(np.median(f0))


def hand_clip(parts, bpm=150, tempo_class="fast"):
    spb = 60.0 / bpm
    nbars = int(np.ceil((ml.CROPS_PER_CLIP * ml.CROP / ml.SR + 0.3) / (spb * 4)))
    return dict(source="fluidr3", bpm=bpm, tempo_class=tempo_class, beats_per_bar=4, root=0, minor=False,
                kind="test", groove="rock", nbars=nbars, parts=parts, spb=spb)


def bar_notes(bars, pitch, per_beat=2):
    step = ml.PPQ // per_beat
    return [(b * 4 * ml.PPQ + i * step, step - 20, pitch + (i % 3), 100)
            for b in range(*bars) for i in range(4 * per_beat)]


@needs_render
def test_labels_follow_stem_activity(tmp_path):
    cfg = ml.SPLITS["train"]
    presets = {"fluidr3": ml.source_presets("fluidr3")}
    os.makedirs(tmp_path / "crops")
    probe = hand_clip([])
    nb = probe["nbars"]
    half = nb // 2
    parts = [
        dict(role="chords", program=0, channel=0, bars=(0, nb), notes=bar_notes((0, nb), 60, 1)),
        dict(role="melody", program=40, channel=0, bars=(half + 1, nb), notes=bar_notes((half + 1, nb), 76)),
        dict(role="melody", program=73, channel=0, bars=(0, 0), notes=[]),  # silent stem
        dict(role="voice", voice="m3", bars=(0, 2), notes=bar_notes((0, 2), 60, 1)),
    ]
    clip = hand_clip(parts)
    rend = ml.Renderers(str(tmp_path))
    try:
        rows = ml.make_clip("t", 0, cfg, presets, rend, str(tmp_path), str(tmp_path), clip=clip)
    finally:
        rend.close()
    assert len(rows) >= ml.CROPS_PER_CLIP - 2, "only crops where a stem starts/stops are dropped"
    crop_s = ml.CROP / ml.SR
    bar_s = 4 * clip["spb"]
    for r in rows:
        k, tags = r["meta"]["crop"], set(r["tags"])
        t0, t1 = k * crop_s, (k + 1) * crop_s
        assert wav_info(str(tmp_path / r["path"])) == (ml.SR, 1, ml.CROP)
        assert "piano" in tags and "flute" not in tags, "silent stem never labelled"
        assert ("fast" in tags) and "slow" not in tags
        if t1 <= (half + 1) * bar_s:
            assert "violin" not in tags and "strings" not in tags, (k, tags)
        if t0 >= (half + 1) * bar_s + 0.1:
            assert {"violin", "strings"} <= tags, (k, tags)
        if t1 <= 2 * bar_s:  # the voice sings in bars 0-1 only
            assert {"vocal", "singing", "male", "male vocal"} <= tags and "no vocal" not in tags, (k, tags)
            assert not tags & {"female", "woman"}
        if t0 >= 2 * bar_s + 1.5:  # after the phrase and its tail
            assert {"no vocal", "no vocals", "no voice"} <= tags and "vocal" not in tags, (k, tags)
        if "vocal" not in tags and "violin" not in tags:
            assert "solo" in tags, "a crop with only the piano is solo"
        else:
            assert "solo" not in tags


@needs_render
def test_voice_variants_male_female_pitch(tmp_path):
    notes = [(60 + i % 5, 1.0) for i in range(8)]
    f0 = {}
    for v in ("m3", "f2"):
        p = str(tmp_path / (v + ".wav"))
        assert ml.sing(v, notes, 60, 0.5, p)
        f0[v] = median_f0(p)
    assert f0["m3"] < 150 < f0["f2"], f0
    if have("text2wave"):  # festival singing: exact pitches, G3 = 98 Hz and A3 = 110 Hz
        p = str(tmp_path / "kal.wav")
        assert ml.sing("kal", [(55, 2.0), (57, 2.0)], 60, 0.5, p)  # G3, A3
        assert 90 < median_f0(p) < 120 and ml.voice_is_male("kal")


@needs_render
def test_generated_splits_manifests_and_sources(tmp_path):
    out = str(tmp_path)
    for split in ("train", "test"):
        ml.generate(split, 3, out, log=lambda *a: None)
    for split in ("train", "test"):
        d = os.path.join(out, split)
        rows = [json.loads(l) for l in open(os.path.join(d, "manifest.jsonl"))]
        meta = [json.loads(l) for l in open(os.path.join(d, "meta.jsonl"))]
        assert rows and len(rows) == len(meta)
        allowed = set(sum(ml.PROGRAM_TAGS.values(), [])) | set(ml.MALE + ml.FEMALE) | {
            "drums", "beat", "beats", "vocal", "vocals", "voice", "singing", "no vocal", "no vocals",
            "no voice", "solo", "fast", "slow"}
        for r, m in zip(rows, meta):
            assert set(r) == {"path", "tags"} and r["tags"] and set(r["tags"]) <= allowed
            assert wav_info(os.path.join(d, r["path"])) == (ml.SR, 1, ml.CROP)
            assert m["source"] in ml.SPLITS[split]["sources"]
            for a in m["active"]:
                if a.startswith("voice:"):
                    assert a.split(":")[1] in ml.SPLITS[split]["voices"]
    tr, te = ml.SPLITS["train"], ml.SPLITS["test"]
    assert not set(tr["sources"]) & set(te["sources"]) and not set(tr["voices"]) & set(te["voices"])
    assert not set(tr["grooves"]) & set(te["grooves"]) and not set(tr["kits"]) & set(te["kits"])
    # rerun: nothing regenerated, same manifest
    before = open(os.path.join(out, "train", "manifest.jsonl")).read()
    ml.generate("train", 3, out, log=lambda *a: None)
    assert open(os.path.join(out, "train", "manifest.jsonl")).read() == before


def test_test_sources_only_use_programs_they_have():
    cfg = ml.SPLITS["test"]
    if not all(os.path.exists(ml.SOURCES[s]["path"]) for s in cfg["sources"]):
        pytest.skip("test soundfonts not installed (tools/datasets/deps.txt)")
    presets = {s: ml.source_presets(s) for s in cfg["sources"]}
    assert (0, 52) not in presets["freepats"], "freepats has no choir: it must never be chosen"
    import random
    import tempfile
    if have("mma"):
        tmp = tempfile.mkdtemp()
        try:
            for i in range(4):
                clip = ml.compose_mma(random.Random(i), cfg, presets, i, "test", tmp)
                assert clip["groove"][4:] in ml.MMA_GROOVES["test"] and clip["parts"]
                for p in clip["parts"]:
                    if p["role"] == "drums":
                        assert p["program"] in cfg["kits"] or p["program"] == 0
                    elif p["role"] == "mma":
                        assert (0, p["program"]) in presets[clip["source"]] and p["notes"]
        finally:
            shutil.rmtree(tmp)
    assert not set(ml.MMA_GROOVES["train"]) & set(ml.MMA_GROOVES["test"])
    for i in range(60):
        clip = ml.compose(random.Random(i), cfg, presets, i)
        for p in clip["parts"]:
            if p["role"] == "drums":
                assert (128, p["program"]) in presets[clip["source"]]
            elif p["role"] != "voice":
                assert (0, p["program"]) in presets[clip["source"]], (clip["source"], p["program"])


def test_music_folder_and_name_rules():
    assert bu.dir_class("usr/share/games/nexuiz/data/music.pk3/sound/cdtracks/thunder.ogg") == "music"
    assert bu.dir_class("usr/share/games/supertux2/sounds/rain.wav") == "no"
    assert bu.dir_class("usr/share/games/frozen-bubble/snd/frozen-mainzik-1p.ogg") == "music"
    assert bu.dir_class("usr/share/games/hedgewars/Data/Sounds/voices/Singer/x.ogg") == "no"
    assert bu.dir_class("usr/share/games/zaz/mus1.ogg") == "music"
    assert bu.dir_class("usr/share/games/x/sounds/long_loop.ogg") == "other"  # kept only if >= 60 s
    assert bu.dir_class("usr/share/games/wizznic/packs/000_wizznic/themes/oldskool/snd/click.ogg") == "other"
    assert bu.dir_class("usr/share/pushover/themes/x.ogg") == "music"
    assert bu.dir_class("usr/share/games/fillets-ng/sound/music/en/ves-hs-papa.ogg") == "no"  # speech
    assert bu.dir_class("usr/share/games/fillets-ng/music/kufrik.ogg") == "music"
