"""The catalogue on the real daemon: ingest, read, list with cursors, delete, similarity by id, by
upload and by embedding, persistence across a restart."""
import glob
import hashlib
import math
import os

import requests

from api_helpers import error_of


def ingest(daemon, filename, **meta):
    with open(filename, "rb") as f:
        return requests.post(daemon.url("/v1/tracks"), files={"file": (os.path.basename(filename), f)},
                             data=meta, timeout=60)


def pool_files(daemon):
    return sorted(glob.glob(os.path.join(daemon.data_dir, "pool", "*", "*.flac")))


def test_ingest_get_delete(make_daemon, audio):
    d = make_daemon()
    r = ingest(d, audio["wav"], title="Sine A", artist="Test", external_id="ext-1")
    assert r.status_code == 201, r.text
    t = r.json()
    sha = hashlib.sha256(open(audio["wav"], "rb").read()).hexdigest()
    assert t["id"] == sha and r.headers["Location"] == "/v1/tracks/" + sha
    assert (t["title"], t["artist"], t["external_id"]) == ("Sine A", "Test", "ext-1")
    assert abs(t["duration_s"] - 6.0) < 0.05 and len(t["tags"]) == 50
    # the 22,050 Hz mono FLAC is in the pool
    files = pool_files(d)
    assert len(files) == 1 and sha in files[0]
    # again: 200, metadata of the first upload kept
    r2 = ingest(d, audio["wav"], title="Other")
    assert r2.status_code == 200 and r2.json()["title"] == "Sine A"
    g = requests.get(d.url("/v1/tracks/" + sha.upper()))  # ids are case-insensitive
    assert g.status_code == 200 and g.json()["tags"] == t["tags"]
    # metadata through the query string too
    r3 = requests.post(d.url("/v1/tracks"), params={"title": "Q", "artist": "Z"},
                       data=open(audio["mp3"], "rb").read())
    assert r3.status_code == 201 and r3.json()["title"] == "Q" and r3.json()["artist"] == "Z"
    assert d.metric("clmrd_catalogue_tracks") == 2
    # delete removes the row, the audio and the index entry
    assert requests.delete(d.url("/v1/tracks/" + sha)).status_code == 204
    assert requests.get(d.url("/v1/tracks/" + sha)).status_code == 404
    assert requests.delete(d.url("/v1/tracks/" + sha)).status_code == 404
    assert requests.get(d.url("/v1/tracks/%s/similar" % sha)).status_code == 404
    assert all(sha not in f for f in pool_files(d)) and len(pool_files(d)) == 1
    assert d.metric("clmrd_catalogue_tracks") == 1


def test_bad_ids_and_metadata(daemon, audio):
    for bad in ("xyz", "a" * 63, "g" * 64, "a" * 65):
        r = requests.get(daemon.url("/v1/tracks/" + bad))
        assert r.status_code == 400 and error_of(r) == "invalid_id", bad
    r = requests.get(daemon.url("/v1/tracks/" + "b" * 64))
    assert r.status_code == 404 and error_of(r) == "not_found"
    r = ingest(daemon, audio["flac"], title="x" * 2000)
    assert r.status_code == 400
    r = requests.post(daemon.url("/v1/tracks"), files={"file": ("a", open(audio["flac"], "rb")),
                                                       "title": ("t", b"\xff\xfe bad utf8")})
    assert r.status_code == 400


def test_list_pagination(make_daemon, audio):
    d = make_daemon()
    ids = []
    for i in range(5):
        r = ingest(d, audio["many%d" % i], title="t%d" % i)
        assert r.status_code == 201
        ids.append(r.json()["id"])
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = requests.get(d.url("/v1/tracks"), params=params).json()
        seen += [t["id"] for t in page["tracks"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
        # a delete between pages never makes the walk repeat or skip a surviving track
        if pages == 1:
            assert requests.delete(d.url("/v1/tracks/" + ids[0])).status_code == 204
    assert seen[:2] == ids[:2] and seen[2:] == ids[2:] and pages == 3
    all_ = requests.get(d.url("/v1/tracks"), params={"limit": 1000}).json()
    assert [t["id"] for t in all_["tracks"]] == ids[1:] and all_["next_cursor"] is None
    for bad in ({"limit": 0}, {"limit": 1001}, {"limit": "ten"}, {"cursor": "not-a-cursor"},
                {"cursor": "x" * 300}):
        r = requests.get(d.url("/v1/tracks"), params=bad)
        assert r.status_code == 400, bad


def test_similarity(make_daemon, audio):
    d = make_daemon()
    ids = [ingest(d, audio["many%d" % i]).json()["id"] for i in range(6)]
    q = ids[0]
    r = requests.get(d.url("/v1/tracks/%s/similar" % q), params={"k": 3})
    assert r.status_code == 200
    res = r.json()["results"]
    assert len(res) == 3 and q not in [x["id"] for x in res]
    scores = [x["score"] for x in res]
    assert scores == sorted(scores, reverse=True) and all(-1.0001 <= s <= 1.0001 for s in scores)
    # brute force over the stored embeddings gives the same order
    embs = {}
    for i, t in enumerate(ids):
        e = requests.post(d.url("/v1/tag"), params={"embedding": "true"},
                          data=open(audio["many%d" % i], "rb").read()).json()
        embs[t] = e["embedding"]
    def cos(a, b):
        return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))
    # brute force: the returned scores are the 3 best, and each is that track's true cosine
    # (near-ties between similar tones may legitimately swap ids, so compare scores)
    brute = sorted(((cos(embs[q], embs[t]), t) for t in ids if t != q), reverse=True)
    want = [t for _, t in brute[:3]]
    for x, (best, _) in zip(res, brute):
        assert abs(x["score"] - best) < 1e-4
        assert abs(x["score"] - cos(embs[q], embs[x["id"]])) < 1e-4
    # k bounds
    assert requests.get(d.url("/v1/tracks/%s/similar" % q), params={"k": 0}).status_code == 400
    assert requests.get(d.url("/v1/tracks/%s/similar" % q), params={"k": 101}).status_code == 400
    big = requests.get(d.url("/v1/tracks/%s/similar" % q), params={"k": 100}).json()["results"]
    assert len(big) == 5
    # POST /v1/similar with an uploaded song that is in the catalogue: itself excluded
    r = requests.post(d.url("/v1/similar"), params={"k": 2}, data=open(audio["many0"], "rb").read())
    assert r.status_code == 200
    assert [x["score"] for x in r.json()["results"]] == [x["score"] for x in res[:2]]
    # ... and one that is not: nothing gets stored
    r = requests.post(d.url("/v1/similar"), params={"k": 6}, data=open(audio["wav"], "rb").read())
    assert r.status_code == 200 and len(r.json()["results"]) == 6
    assert len(requests.get(d.url("/v1/tracks")).json()["tracks"]) == 6
    # POST /v1/search with an embedding
    r = requests.post(d.url("/v1/search"), json={"embedding": embs[q], "k": 4})
    assert r.status_code == 200
    res = r.json()["results"]
    assert res[0]["id"] == q and abs(res[0]["score"] - 1.0) < 1e-4 and len(res) == 4
    dim = len(embs[q])
    for bad in ({"embedding": embs[q][:-1]}, {"embedding": embs[q] + [0.0]}, {"embedding": [0.0] * dim},
                {"embedding": embs[q], "k": 0}, {"embedding": embs[q], "k": 1000},
                {"embedding": ["a"] * dim}, {"k": 3}, [1, 2]):
        r = requests.post(d.url("/v1/search"), json=bad)
        assert r.status_code == 400, bad
        error_of(r)
    for raw in (b"{", b"", '{"embedding":[%s]}' % ",".join(["NaN"] * dim),
                '{"embedding":[%s]}' % ",".join(["1e999"] * dim)):
        r = requests.post(d.url("/v1/search"), data=raw, headers={"Content-Type": "application/json"})
        assert r.status_code == 400, raw[:30]


def test_persistence_across_restart(make_daemon, audio, tmp_path):
    data = tmp_path / "persist"
    d = make_daemon(data_dir=data)
    a = ingest(d, audio["many1"], title="keep me").json()["id"]
    b = ingest(d, audio["many2"]).json()["id"]
    requests.post(d.url("/v1/tag"), data=open(audio["many3"], "rb").read())
    assert d.stop() == 0
    d2 = make_daemon(data_dir=data)
    g = requests.get(d2.url("/v1/tracks/" + a))
    assert g.status_code == 200 and g.json()["title"] == "keep me"
    assert d2.metric("clmrd_catalogue_tracks") == 2  # the index was rebuilt from SQLite
    sim = requests.get(d2.url("/v1/tracks/%s/similar" % a)).json()["results"]
    assert [x["id"] for x in sim] == [b]
    r = requests.post(d2.url("/v1/tag"), data=open(audio["many3"], "rb").read())
    assert r.json()["cached"] is True
