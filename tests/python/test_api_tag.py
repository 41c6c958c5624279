"""POST /v1/tag on the real daemon: raw and multipart uploads in several formats, query options,
the (sha256, model) cache, and every client error status."""
import hashlib
import math

import requests

from api_helpers import error_of


def post_raw(daemon, path, filename, ctype="application/octet-stream", **params):
    with open(filename, "rb") as f:
        return requests.post(daemon.url(path), data=f.read(), params=params,
                             headers={"Content-Type": ctype}, timeout=60)


def test_tag_raw_formats(daemon, audio):
    for kind in ("wav", "mp3", "flac", "ogg"):
        r = post_raw(daemon, "/v1/tag", audio[kind], ctype="audio/whatever")
        assert r.status_code == 200, (kind, r.text)
        body = r.json()
        data = open(audio[kind], "rb").read()
        assert body["id"] == hashlib.sha256(data).hexdigest()
        assert len(body["tags"]) == 50
        scores = [t["score"] for t in body["tags"]]
        assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
        assert body["chunks"] >= 1 and body["duration_s"] > 0
        assert "embedding" not in body and "per_chunk" not in body


def test_tag_multipart_matches_raw(daemon, audio):
    raw = post_raw(daemon, "/v1/tag", audio["mp3"]).json()
    with open(audio["mp3"], "rb") as f:
        r = requests.post(daemon.url("/v1/tag"), files={"file": ("song.mp3", f, "audio/mpeg")},
                          data={"title": "ignored for /v1/tag"}, timeout=60)
    assert r.status_code == 200, r.text
    mp = r.json()
    assert mp["id"] == raw["id"] and mp["tags"] == raw["tags"]


def test_tag_options(daemon, audio):
    full = post_raw(daemon, "/v1/tag", audio["wav"]).json()
    top = post_raw(daemon, "/v1/tag", audio["wav"], top=5).json()
    assert top["tags"] == full["tags"][:5]
    thr = full["tags"][10]["score"]
    t = post_raw(daemon, "/v1/tag", audio["wav"], threshold=thr).json()
    assert t["tags"] and all(x["score"] >= thr for x in t["tags"])
    assert len(t["tags"]) == sum(1 for x in full["tags"] if x["score"] >= thr)
    e = post_raw(daemon, "/v1/tag", audio["wav"], embedding="true").json()
    norm = math.sqrt(sum(v * v for v in e["embedding"]))
    assert abs(norm - 1.0) < 1e-4
    pc = post_raw(daemon, "/v1/tag", audio["wav"], per_chunk="true").json()
    assert pc["cached"] is False  # per-chunk scores are never served from the cache
    assert len(pc["per_chunk"]) == pc["chunks"] == 2  # 6 s = 132,300 samples = 2 chunks
    assert pc["per_chunk"][1]["start_s"] > 2.6
    # the track scores are the mean of the chunk scores (model tag order)
    names = requests.get(daemon.url("/v1/tags")).json()["tags"]
    by_name = {x["tag"]: x["score"] for x in full["tags"]}
    for i, name in enumerate(names):
        mean = sum(c["scores"][i] for c in pc["per_chunk"]) / len(pc["per_chunk"])
        assert abs(mean - by_name[name]) < 1e-5


def test_cache_hit_skips_decoding(daemon, audio):
    before_hits = daemon.metric("clmrd_cache_hits_total")
    before_dec = daemon.metric("clmrd_decode_seconds_count")
    first = post_raw(daemon, "/v1/tag", audio["ogg"])
    again = post_raw(daemon, "/v1/tag", audio["ogg"])
    assert first.status_code == again.status_code == 200
    assert again.json()["cached"] is True
    assert again.json()["tags"] == first.json()["tags"]
    assert daemon.metric("clmrd_cache_hits_total") >= before_hits + 1
    # at most one decode for the two requests (the first may itself be a cache hit)
    assert daemon.metric("clmrd_decode_seconds_count") <= before_dec + 1
    emb = post_raw(daemon, "/v1/tag", audio["ogg"], embedding="true").json()
    assert emb["cached"] is True and len(emb["embedding"]) > 0


def test_bad_parameters_400(daemon, audio):
    for params in ({"top": 0}, {"top": 51}, {"top": "x"}, {"threshold": 2}, {"threshold": "nan"},
                   {"per_chunk": "maybe"}, {"embedding": "yes please"}, {"top": "9" * 40}):
        r = post_raw(daemon, "/v1/tag", audio["flac"], **params)
        assert r.status_code == 400, (params, r.text)
        assert error_of(r) == "invalid_argument"


def test_empty_and_malformed_bodies_400(daemon, audio):
    r = requests.post(daemon.url("/v1/tag"), data=b"")
    assert r.status_code == 400 and error_of(r) == "empty_input"
    r = requests.post(daemon.url("/v1/tag"), data=b"--x\r\nbroken",
                      headers={"Content-Type": "multipart/form-data; boundary=x"})
    assert r.status_code == 400 and error_of(r) == "invalid_multipart"
    r = requests.post(daemon.url("/v1/tag"), files={"notfile": ("a.wav", b"RIFF")})
    assert r.status_code == 400 and "file" in r.json()["error"]["message"]
    r = requests.post(daemon.url("/v1/tag"), data=b"x", headers={"Content-Type": "multipart/form-data"})
    assert r.status_code == 400


def test_not_audio_415(daemon, tmp_path):
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 20
    html = b"<!doctype html><html><body>" + b"hello " * 500 + b"</body></html>"
    elf = b"\x7fELF\x02\x01\x01" + b"\0" * 2000
    m3u8 = b"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n"
    for blob in (png, html, elf, m3u8, b"\0"):
        r = requests.post(daemon.url("/v1/tag"), data=blob, headers={"Content-Type": "audio/mpeg"})
        assert r.status_code == 415, (blob[:10], r.status_code, r.text)
        assert error_of(r) in ("not_audio", "format_refused", "no_audio_stream",
                               "unsupported_codec", "corrupt_audio")


def test_truncated_audio_never_5xx(daemon, audio):
    data = open(audio["mp3"], "rb").read()
    for frac in (0.01, 0.1, 0.5, 0.99):
        r = requests.post(daemon.url("/v1/tag"), data=data[: int(len(data) * frac)])
        assert r.status_code in (200, 415, 422), (frac, r.status_code, r.text)


def test_unusable_audio_422(daemon, audio):
    r = post_raw(daemon, "/v1/tag", audio["long"])  # 70 s, the daemon allows 60 s
    assert r.status_code == 422, r.text
    assert error_of(r) == "audio_too_long"


def test_short_clip_is_padded(daemon, audio):
    r = post_raw(daemon, "/v1/tag", audio["short"])
    assert r.status_code == 200, r.text
    assert r.json()["chunks"] == 1
