"""The catalogue of issue 17 on the real daemon: metadata from the file (and form overrides),
PATCH corrections, acoustic duplicates (the same recording as WAV, FLAC and re-tagged MP3 made by
ffmpeg here, and a different recording that must not match), descriptors on signals with known
answers, GET /v1/tracks filters/sorting/counts, stored audio with Range, embeddings and the
streaming export."""
import csv
import hashlib
import io
import json
import math
import os
import subprocess
import wave

import numpy as np
import pytest
import requests

from api_helpers import error_of

SR = 44100


def write_wav(path, x, rate=SR, channels=1):
    """16-bit PCM WAV of float samples in [-1, 1] (channels interleaved when > 1)."""
    pcm = np.clip(np.round(x * 32767), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return str(path)


def melody(seed, seconds):
    """A tune: a seeded random pentatonic melody, 4 notes a second, three harmonics per note."""
    rng = np.random.default_rng(seed)
    pent = np.array([0, 2, 4, 7, 9, 12, 14, 16])
    note = SR // 4
    out = []
    t = np.arange(note) / SR
    env = np.exp(-t / 0.12)
    for _ in range(int(seconds * 4)):
        f = 220.0 * 2 ** (pent[rng.integers(0, 8)] / 12)
        out.append(0.3 * env * (np.sin(2 * np.pi * f * t) + 0.5 * np.sin(4 * np.pi * f * t)
                                + 0.25 * np.sin(6 * np.pi * f * t)))
    return np.concatenate(out)


def ffmpeg(*args):
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True)


def ingest(d, path, **meta):
    with open(path, "rb") as f:
        return requests.post(d.url("/v1/tracks"), files={"file": (os.path.basename(path), f)},
                             data=meta, timeout=120)


def sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("catalog")
    f = {}
    song = melody(1, 20)
    f["wav"] = write_wav(d / "song.wav", song)
    f["flac"] = str(d / "song.flac")
    ffmpeg("-i", f["wav"], "-metadata", "title=Song (FLAC)", f["flac"])
    f["mp3"] = str(d / "song.mp3")
    ffmpeg("-i", f["wav"], "-c:a", "libmp3lame", "-b:a", "128k", "-metadata", "title=Retagged",
           "-metadata", "artist=Someone Else", f["mp3"])
    f["other"] = write_wav(d / "other.wav", melody(2, 20))
    # tags in the file itself
    f["tagged"] = str(d / "tagged.mp3")
    ffmpeg("-i", write_wav(d / "t.wav", melody(3, 8)), "-c:a", "libmp3lame", "-id3v2_version", "3",
           "-metadata", "title=Night Drive", "-metadata", "artist=Ann Arbor", "-metadata",
           "album=Blue Roads", "-metadata", "date=1997", "-metadata", "genre=Synthwave",
           "-metadata", "track=4/10", f["tagged"])
    # a 120 BPM click track (2 kHz clicks over a faint noise floor) and a -20 dBFS 1 kHz tone
    n = 20 * SR
    rng = np.random.default_rng(5)
    clicks = 0.003 * (rng.random(n) - 0.5)
    k = np.arange(441)
    click = 0.8 * np.exp(-k / 80.0) * np.sin(2 * np.pi * 2000 * k / SR)
    for start in range(SR // 4, n - 441, SR // 2):
        clicks[start:start + 441] += click
    f["clicks"] = write_wav(d / "clicks.wav", clicks)
    tone = 0.1 * np.sin(2 * np.pi * 1000 * np.arange(15 * SR) / SR)
    f["tone"] = write_wav(d / "tone.wav", tone)
    return f


@pytest.fixture(scope="module")
def cat(tmp_path_factory, files):
    """One daemon with every file of `files` ingested once (in this order)."""
    from api_helpers import Daemon
    d = Daemon(tmp_path_factory.mktemp("catd") / "data", "--workers", "2", "--max-upload-bytes",
               "8M").start()
    tracks = {}
    for name in ("wav", "flac", "mp3", "other", "tagged", "clicks", "tone"):
        r = ingest(d, files[name], **({"title": "Clicks"} if name == "clicks" else {}))
        assert r.status_code == 201, (name, r.text)
        tracks[name] = r.json()
    d.tracks = tracks
    yield d
    assert d.stop() == 0, d.logs()


def test_metadata_from_the_file_and_overrides(cat, files):
    t = cat.tracks["tagged"]
    assert (t["title"], t["artist"], t["album"], t["genre"], t["year"], t["track_number"]) == \
        ("Night Drive", "Ann Arbor", "Blue Roads", "Synthwave", 1997, 4)
    # the form fields win over the file's tags (this file has a title tag)
    assert cat.tracks["clicks"]["title"] == "Clicks"
    assert cat.tracks["flac"]["title"] == "Song (FLAC)" and cat.tracks["wav"]["title"] is None


def test_form_fields_override_file_tags(make_daemon, files):
    d = make_daemon()
    r = ingest(d, files["tagged"], title="Mine", album="Other Album", year="2001",
               track_number="7")
    assert r.status_code == 201, r.text
    t = r.json()
    assert (t["title"], t["artist"], t["album"], t["year"], t["track_number"]) == \
        ("Mine", "Ann Arbor", "Other Album", 2001, 7)
    for field, value in (("year", "0"), ("year", "x"), ("track_number", "100000")):
        r = ingest(d, files["other"], **{field: value})
        assert r.status_code == 400 and field in r.json()["error"]["message"], (field, r.text)


def test_duplicates_are_linked(cat):
    t = cat.tracks
    wav = t["wav"]["id"]
    assert t["wav"]["duplicate_of"] is None
    assert t["flac"]["duplicate_of"] == wav
    assert t["mp3"]["duplicate_of"] == wav
    assert t["mp3"]["title"] == "Retagged"  # a duplicate keeps its own metadata
    assert t["other"]["duplicate_of"] is None
    assert t["clicks"]["duplicate_of"] is None and t["tone"]["duplicate_of"] is None


def test_similar_hides_own_duplicates_unless_asked(cat, files):
    t = cat.tracks
    wav, flac, mp3 = t["wav"]["id"], t["flac"]["id"], t["mp3"]["id"]
    r = requests.get(cat.url("/v1/tracks/%s/similar?k=10" % wav))
    assert r.status_code == 200, r.text
    ids = [h["id"] for h in r.json()["results"]]
    assert flac not in ids and mp3 not in ids and wav not in ids and ids
    r = requests.get(cat.url("/v1/tracks/%s/similar?k=10&include_duplicates=1" % wav))
    hits = {h["id"]: h["score"] for h in r.json()["results"]}
    assert flac in hits and mp3 in hits and hits[flac] > 0.95
    # from another track, the group of three appears once
    r = requests.get(cat.url("/v1/tracks/%s/similar?k=10" % t["other"]["id"]))
    ids = [h["id"] for h in r.json()["results"]]
    assert len([i for i in ids if i in (wav, flac, mp3)]) == 1
    # POST /v1/similar with the catalogued WAV's bytes: its group is left out too
    with open(files["wav"], "rb") as f:
        body = f.read()
    r = requests.post(cat.url("/v1/similar?k=10"), data=body, timeout=120)
    assert r.status_code == 200, r.text
    ids = [h["id"] for h in r.json()["results"]]
    assert ids and not {wav, flac, mp3} & set(ids)
    r = requests.post(cat.url("/v1/similar?k=10&include_duplicates=true"), data=body, timeout=120)
    assert {flac, mp3} <= {h["id"] for h in r.json()["results"]}
    r = requests.get(cat.url("/v1/tracks/%s/similar?include_duplicates=maybe" % wav))
    assert r.status_code == 400 and "include_duplicates" in r.json()["error"]["message"]
    # POST /v1/search with the track's own embedding: the group once, unless asked
    e = requests.get(cat.url("/v1/tracks/%s/embedding" % wav)).json()["embedding"]
    r = requests.post(cat.url("/v1/search"), json={"embedding": e, "k": 10})
    ids = [h["id"] for h in r.json()["results"]]
    assert len([i for i in ids if i in (wav, flac, mp3)]) == 1
    r = requests.post(cat.url("/v1/search"), json={"embedding": e, "k": 10,
                                                   "include_duplicates": True})
    ids = [h["id"] for h in r.json()["results"]]
    assert {wav, flac, mp3} <= set(ids)


def test_descriptors_known_answers(cat):
    c = cat.tracks["clicks"]["descriptors"]
    assert abs(c["bpm"] - 120) <= 1.5, c
    assert c["bpm_confidence"] > 1.0 and abs(c["onset_rate"] - 2.0) < 0.3, c
    tone = cat.tracks["tone"]["descriptors"]
    # a 1 kHz sine of peak 0.1 (-20 dBFS) reads -20 LUFS (dual mono) with a true peak of -20 dBTP
    assert abs(tone["loudness_lufs"] + 20) < 0.3, tone
    assert abs(tone["true_peak_dbtp"] + 20) < 0.3 and tone["loudness_range_lu"] < 0.5, tone
    g = requests.get(cat.url("/v1/tracks/" + cat.tracks["tone"]["id"])).json()
    assert g["descriptors"] == tone


def q(cat, query):
    r = requests.get(cat.url("/v1/tracks?" + query), timeout=30)
    assert r.status_code == 200, (query, r.text)
    return r.json()


def test_track_filters_sorting_and_counts(cat):
    t = cat.tracks
    everything = q(cat, "limit=1000")
    assert everything["total"] == 7 and len(everything["tracks"]) == 7
    first = everything["tracks"][0]
    assert len(first["top_tags"]) == 3 and first["model"]
    assert first["top_tags"][0]["score"] >= first["top_tags"][1]["score"]
    assert len(q(cat, "limit=1&top=5")["tracks"][0]["top_tags"]) == 5
    assert "top_tags" not in q(cat, "limit=1&top=0")["tracks"][0]
    r = q(cat, "bpm_min=110&bpm_max=130")
    assert t["clicks"]["id"] in [x["id"] for x in r["tracks"]]
    assert all(110 <= x["descriptors"]["bpm"] <= 130 for x in r["tracks"])
    r = q(cat, "loudness_min=-21&loudness_max=-19")
    assert [x["id"] for x in r["tracks"]] == [t["tone"]["id"]] and r["total"] == 1
    assert [x["id"] for x in q(cat, "artist=ann%20ARBOR")["tracks"]] == [t["tagged"]["id"]]
    assert [x["id"] for x in q(cat, "q=night%20dri")["tracks"]] == [t["tagged"]["id"]]
    assert [x["id"] for x in q(cat, "album=blue")["tracks"]] == [t["tagged"]["id"]]
    assert q(cat, "title=blue")["total"] == 0  # "Blue" is only in the album
    assert q(cat, "duration_min=19&duration_max=21")["total"] == 5
    assert q(cat, "duplicates=exclude")["total"] == 5
    assert q(cat, "duplicates=only")["total"] == 2
    assert q(cat, "created_since=%d" % (t["tone"]["created_at"] + 1))["total"] == 0
    assert q(cat, "created_since=%d" % t["tone"]["created_at"])["total"] >= 1
    # a tag with a minimum score, sorted by that score
    tag = first["top_tags"][0]["tag"]
    r = q(cat, "tag=%s&min_score=0&sort=-score&limit=1000" % tag)
    assert r["total"] == 7
    scores = [next(x for x in tr["top_tags"] if x["tag"] == tag)["score"]
              for tr in q(cat, "tag=%s&min_score=0&sort=-score&top=50" % tag)["tracks"]]
    assert scores == sorted(scores, reverse=True)
    cut = scores[2]
    assert q(cat, "tag=%s&min_score=%r" % (tag, cut))["total"] == len([s for s in scores if s >= cut])
    # sorting by bpm, both ways; tracks without a bpm come last
    up = [x["descriptors"]["bpm"] for x in q(cat, "sort=bpm")["tracks"]]
    known = [b for b in up if b is not None]
    assert known == sorted(known) and up[:len(known)] == known
    down = [x["descriptors"]["bpm"] for x in q(cat, "sort=-bpm")["tracks"]]
    assert [b for b in down if b is not None] == sorted(known, reverse=True)
    # offset pages through a sorted listing
    seen, cursor = [], None
    while True:
        page = q(cat, "sort=title&limit=3" + ("&cursor=" + cursor if cursor else ""))
        assert page["total"] == 7
        seen += [x["id"] for x in page["tracks"]]
        cursor = page.get("next_cursor")
        if not cursor:
            break
    assert len(seen) == 7 and len(set(seen)) == 7


@pytest.mark.parametrize("query,param", [
    ("bpm_min=fast", "bpm_min"), ("bpm_max=-1", "bpm_max"), ("loudness_min=abc", "loudness_min"),
    ("loudness_min=-10&loudness_max=-20", "loudness_min"), ("duration_max=x", "duration_max"),
    ("sort=colour", "sort"), ("sort=score", "sort"), ("sort=relevance", "sort"),
    ("tag=no-such-tag", "tag"), ("min_score=0.5", "min_score"), ("duplicates=maybe", "duplicates"),
    ("limit=0", "limit"), ("top=999", "top"), ("created_since=yesterday", "created_since"),
    ("cursor=zzz", "cursor"), ("q=%22%2A%28", "q"), ("artist=" + "a" * 1100, "artist"),
])
def test_bad_filters_are_400_naming_the_parameter(cat, query, param):
    r = requests.get(cat.url("/v1/tracks?" + query))
    assert r.status_code == 400 and error_of(r) == "invalid_argument", (query, r.text)
    assert "'%s'" % param in r.json()["error"]["message"], (query, r.text)


def test_patch_metadata(cat):
    tid = cat.tracks["other"]["id"]
    url = cat.url("/v1/tracks/" + tid)
    r = requests.patch(url, json={"title": "Fixed Title", "artist": "Real Band", "year": 2020,
                                  "genre": None, "track_number": 2})
    assert r.status_code == 200, r.text
    j = r.json()
    assert (j["title"], j["artist"], j["year"], j["genre"], j["track_number"]) == \
        ("Fixed Title", "Real Band", 2020, None, 2)
    assert requests.get(url).json()["title"] == "Fixed Title"
    assert [x["id"] for x in q(cat, "q=fixed")["tracks"]] == [tid]  # the search index follows
    r = requests.patch(url, json={"year": None})
    assert r.status_code == 200 and r.json()["year"] is None and r.json()["title"] == "Fixed Title"
    for body, word in (({"tempo": 5}, "tempo"), ({"year": "1999"}, "year"), ({"year": 0}, "year"),
                       ({"title": ""}, "title"), ({"title": 5}, "title"),
                       ({"track_number": 1.5}, "track_number"), ({}, "nothing"),
                       ({"duplicate_of": "abc"}, "duplicate_of"),
                       ({"duplicate_of": "0" * 64}, "duplicate_of"),
                       ({"duplicate_of": tid}, "duplicate_of")):
        r = requests.patch(url, json=body)
        assert r.status_code == 400 and word in r.json()["error"]["message"], (body, r.text)
    for raw in (b"", b"not json", b"[1]", b'{"title": "a", "title": "b"}'):
        r = requests.patch(url, data=raw, headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and error_of(r) == "invalid_json", (raw, r.text)
    r = requests.patch(cat.url("/v1/tracks/" + "0" * 64), json={"title": "x"})
    assert r.status_code == 404 and error_of(r) == "not_found"
    r = requests.patch(url, data=b"{" + b" " * (70 << 10) + b"}")
    assert r.status_code == 413


def test_patch_duplicate_links(make_daemon, files):
    d = make_daemon()
    ids = {}
    for name in ("wav", "flac", "mp3", "other"):
        r = ingest(d, files[name])
        assert r.status_code == 201, r.text
        ids[name] = r.json()["id"]
    # a false negative fixed by hand, then undone
    r = requests.patch(d.url("/v1/tracks/" + ids["other"]), json={"duplicate_of": ids["mp3"]})
    assert r.status_code == 200 and r.json()["duplicate_of"] == ids["wav"]  # linked to the root
    r = requests.patch(d.url("/v1/tracks/" + ids["other"]), json={"duplicate_of": None})
    assert r.status_code == 200 and r.json()["duplicate_of"] is None
    # deleting the root promotes the oldest duplicate
    assert requests.delete(d.url("/v1/tracks/" + ids["wav"])).status_code == 204
    g = {k: requests.get(d.url("/v1/tracks/" + ids[k])).json() for k in ("flac", "mp3")}
    assert g["flac"]["duplicate_of"] is None and g["mp3"]["duplicate_of"] == ids["flac"]


def test_stored_audio_with_ranges(cat):
    tid = cat.tracks["tone"]["id"]
    url = cat.url("/v1/tracks/%s/audio" % tid)
    full = requests.get(url)
    assert full.status_code == 200 and full.headers["Accept-Ranges"] == "bytes"
    assert full.headers["Content-Type"] == "audio/flac" and full.content[:4] == b"fLaC"
    pool = os.path.join(cat.data_dir, "pool", tid[:2], tid + ".flac")
    with open(pool, "rb") as f:
        assert f.read() == full.content
    size = len(full.content)
    r = requests.get(url, headers={"Range": "bytes=0-99"})
    assert r.status_code == 206 and r.content == full.content[:100]
    assert r.headers["Content-Range"] == "bytes 0-99/%d" % size
    r = requests.get(url, headers={"Range": "bytes=-10"})
    assert r.status_code == 206 and r.content == full.content[-10:]
    r = requests.get(url, headers={"Range": "bytes=%d-" % (size - 5)})
    assert r.status_code == 206 and r.content == full.content[-5:]
    r = requests.get(url, headers={"Range": "bytes=100-%d" % (size * 2)})
    assert r.status_code == 206 and r.content == full.content[100:]
    r = requests.get(url, headers={"Range": "bytes=%d-" % size})
    assert r.status_code == 416 and error_of(r) == "range_not_satisfiable"
    assert r.headers["Content-Range"] == "bytes */%d" % size
    r = requests.get(url, headers={"Range": "bytes=0-1,5-9"})  # several ranges: the whole file
    assert r.status_code == 200 and len(r.content) == size
    h = requests.head(url)
    assert h.status_code == 200 and int(h.headers["Content-Length"]) == size and not h.content
    # the decoder takes it back: same duration
    dec = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of",
                          "csv=p=0", "-"], input=full.content, capture_output=True, check=True)
    assert abs(float(dec.stdout) - cat.tracks["tone"]["duration_s"]) < 0.05
    assert requests.get(cat.url("/v1/tracks/%s/audio" % ("0" * 64))).status_code == 404


def test_embedding(cat):
    tid = cat.tracks["other"]["id"]
    r = requests.get(cat.url("/v1/tracks/%s/embedding" % tid))
    assert r.status_code == 200, r.text
    j = r.json()
    assert j["id"] == tid and j["dim"] == len(j["embedding"]) > 0
    assert abs(math.sqrt(sum(v * v for v in j["embedding"])) - 1) < 1e-3
    # the same vector drives similarity: searching with it finds the track itself first
    hits = requests.post(cat.url("/v1/search"), json={"embedding": j["embedding"], "k": 1}).json()
    assert hits["results"][0]["id"] == tid and hits["results"][0]["score"] > 0.999
    r = requests.get(cat.url("/v1/tracks/%s/embedding?model=nope" % tid))
    assert r.status_code == 404 and "nope" in r.json()["error"]["message"]
    assert requests.get(cat.url("/v1/tracks/%s/embedding" % ("0" * 64))).status_code == 404


def test_export_jsonl_and_csv(cat):
    r = requests.get(cat.url("/v1/export?format=jsonl"), stream=True)
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/x-ndjson"
    assert "Content-Length" not in r.headers and r.headers.get("Transfer-Encoding") == "chunked"
    rows = [json.loads(line) for line in r.iter_lines() if line]
    assert len(rows) == 7
    ids = {x["id"] for x in rows}
    assert ids == {t["id"] for t in cat.tracks.values()}
    tagged = next(x for x in rows if x["id"] == cat.tracks["tagged"]["id"])
    assert tagged["album"] == "Blue Roads" and len(tagged["tags"]) == 50
    assert "embedding" not in tagged and tagged["descriptors"]["loudness_lufs"] is not None
    rows = [json.loads(line) for line in
            requests.get(cat.url("/v1/export?embeddings=1")).text.splitlines()]
    assert all(len(x["embedding"]) == 512 or len(x["embedding"]) > 0 for x in rows)
    r = requests.get(cat.url("/v1/export?format=csv&embeddings=true"))
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(r.text)))
    assert len(table) == 7
    row = next(x for x in table if x["id"] == cat.tracks["tone"]["id"])
    assert abs(float(row["loudness_lufs"]) + 20) < 0.3
    assert sum(1 for k in row if k.startswith("tag:")) == 50
    assert len(row["embedding"].split()) == len(rows[0]["embedding"])
    clicks = next(x for x in table if x["id"] == cat.tracks["clicks"]["id"])
    assert clicks["title"] == "Clicks"
    r = requests.get(cat.url("/v1/export?format=xml"))
    assert r.status_code == 400 and "'format'" in r.json()["error"]["message"]
