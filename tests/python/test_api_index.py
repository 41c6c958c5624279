"""The approximate similarity backend (`index = hnsw`, FAISS) on the real daemon: /similar and
/search answers equal the exact daemon's (a 10-track catalogue is searched exhaustively by the
graph, and every returned score is re-scored against the exact rows), deletes are never returned,
tracks ingested after the build are found, the index is rebuilt at start-up, and a bad value is
refused naming the key."""
import os
import subprocess
import time

import requests

from api_helpers import CLMRD, TINY


def ingest(d, path):
    with open(path, "rb") as f:
        r = requests.post(d.url("/v1/tracks"), files={"file": (os.path.basename(path), f)}, timeout=60)
    assert r.status_code in (200, 201), r.text
    return r.json()["id"]


def wait_backend(d, name, timeout=120):
    """Waits (with a deadline: the build runs in the background) until searches use `name`."""
    end = time.time() + timeout
    while time.time() < end:
        if d.metric("clmrd_index_backend", backend=name) == 1:
            return
        time.sleep(0.1)
    raise AssertionError("index backend %s not in use after %ss:\n%s" % (name, timeout, d.logs()))


def similar(d, tid, k=20):
    r = requests.get(d.url("/v1/tracks/%s/similar" % tid), params={"k": k})
    assert r.status_code == 200, r.text
    return r.json()["results"]


def same(a, b):
    """Equal result lists: same scores in order (1e-6: both are the same fp32 dot product), same ids
    except where two scores tie."""
    assert len(a) == len(b), (a, b)
    for x, y in zip(a, b):
        assert abs(x["score"] - y["score"]) < 1e-6, (a, b)
    assert sorted(x["id"] for x in a) == sorted(x["id"] for x in b)


def test_hnsw_daemon_matches_exact(make_daemon, audio, tmp_path):
    names = ["many%d" % i for i in range(8)] + ["wav", "mp3"]
    ex = make_daemon("--index", "exact")
    hn = make_daemon("--index", "hnsw", data_dir=tmp_path / "hnsw")
    assert requests.get(hn.url("/v1/config")).json()["index"] == "hnsw"
    ids = [ingest(ex, audio[n]) for n in names[:8]]
    assert [ingest(hn, audio[n]) for n in names[:8]] == ids
    wait_backend(hn, "hnsw")
    assert hn.metric("clmrd_index_build_pending") == 0
    assert ex.metric("clmrd_index_backend", backend="exact") == 1
    for t in ids:
        same(similar(hn, t), similar(ex, t))
    # /v1/search with an embedding, and /v1/similar with an upload
    emb = requests.post(hn.url("/v1/tag"), params={"embedding": "true"},
                        data=open(audio["wav"], "rb").read()).json()["embedding"]
    a = requests.post(hn.url("/v1/search"), json={"embedding": emb, "k": 5}).json()["results"]
    b = requests.post(ex.url("/v1/search"), json={"embedding": emb, "k": 5}).json()["results"]
    same(a, b)
    a = requests.post(hn.url("/v1/similar"), params={"k": 4}, data=open(audio["many3"], "rb").read())
    b = requests.post(ex.url("/v1/similar"), params={"k": 4}, data=open(audio["many3"], "rb").read())
    assert a.status_code == b.status_code == 200
    same(a.json()["results"], b.json()["results"])

    # deletes: gone from every answer at once
    for d in (hn, ex):
        for t in ids[:3]:
            assert requests.delete(d.url("/v1/tracks/" + t)).status_code == 204
    for t in ids[3:]:
        res = similar(hn, t)
        assert not {x["id"] for x in res} & set(ids[:3])
        same(res, similar(ex, t))
    assert requests.get(hn.url("/v1/tracks/%s/similar" % ids[0])).status_code == 404
    # ingest after the build: found by the approximate index (as its own best match by embedding)
    new = [ingest(d, audio[n]) for n in names[8:] for d in (hn, ex)][::2]
    assert hn.metric("clmrd_catalogue_tracks") == 7
    for t in ids[3:] + new:
        same(similar(hn, t), similar(ex, t))
    emb = requests.post(hn.url("/v1/tag"), params={"embedding": "true"},
                        data=open(audio["mp3"], "rb").read()).json()["embedding"]
    top = requests.post(hn.url("/v1/search"), json={"embedding": emb, "k": 1}).json()["results"]
    assert top[0]["id"] == new[1] and abs(top[0]["score"] - 1.0) < 1e-4
    assert hn.metric("clmrd_index_backend", backend="hnsw") == 1

    # restart: rebuilt from SQLite in the background, same answers
    want = {t: similar(ex, t) for t in ids[3:] + new}
    assert hn.stop() == 0
    hn2 = make_daemon("--index", "hnsw", data_dir=tmp_path / "hnsw")
    wait_backend(hn2, "hnsw")
    assert hn2.metric("clmrd_catalogue_tracks") == 7
    for t, res in want.items():
        same(similar(hn2, t), res)


def test_auto_stays_exact_for_a_small_catalogue(make_daemon, audio):
    d = make_daemon(env={"CLMRD_INDEX": "auto"})
    assert requests.get(d.url("/v1/config")).json()["index"] == "auto"
    for i in range(3):
        ingest(d, audio["many%d" % i])
    assert d.metric("clmrd_index_backend", backend="exact") == 1
    assert d.metric("clmrd_index_build_pending") == 0


def test_bad_index_value_names_the_key(tmp_path):
    r = subprocess.run([CLMRD, "serve", "--model", TINY, "--data-dir", str(tmp_path / "d"),
                        "--index", "faiss"], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "index" in r.stderr and "hnsw" in r.stderr, r.stderr
