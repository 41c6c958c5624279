"""The WHOLE bad-audio corpus (tests/badaudio/expected.json: the committed files and the big
generated ones: decompression bombs, 50 MB cover art) replayed through the real daemon, plus the
malformed-HTTP cases not covered by the other API tests.

DESIGN: nothing is hard-coded per file. expected.json names the decoder error of every file; the
HTTP status it must get is read from the service's own table in src/http/errors.c (through the
names in include/clmr/error.h), so a test failure means the daemon and its documented mapping
disagree. The daemon runs with the default decode limits (900 s, 100 MB) that expected.json
assumes, and its peak RSS (VmHWM) is checked against a stated bound after the replay.
"""
import math
import os
import re
import sys
import time

import pytest
import requests

from api_helpers import ROOT, error_of

sys.path.insert(0, os.path.join(ROOT, "tests", "badaudio"))
from corpus import cases  # noqa: E402

DEADLINE_S = 60  # the daemon's --request-timeout-s for this module; every answer must come before
# Peak RSS bound for the whole replay. What it is made of: the 50 MB cover-art body held while it
# is received and decoded (~50 MB, plus the custom AVIOContext reading it in place), one decoded
# track per worker at most (max-duration-s 900 x 22,050 x 4 B = 79 MB, 2 workers), the tiny
# model, FFmpeg and SQLite caches. Measured about 200-260 MB; 400 MiB leaves room for allocator
# slack but fails if a bomb's samples or a second copy of a body were kept. Since issue 14 each
# worker's inference context is built for a full batch before /readyz (no request pays for it):
# an idle daemon with 2 workers on the tiny model now peaks at 163 MB instead of 32 MB (VmHWM,
# measured), and the replay at 413 MB; the bound moves up by that 130 MB.
RSS_BOUND_KB = 530 * 1024


def status_table():
    """{error machine name: HTTP status} from include/clmr/error.h and src/http/errors.c."""
    with open(os.path.join(ROOT, "include", "clmr", "error.h")) as f:
        names = dict(re.findall(r'X\((\w+),\s*-?\d+,\s*"(\w+)"', f.read()))
    with open(os.path.join(ROOT, "src", "http", "errors.c")) as f:
        rows = dict(re.findall(r"\{CLMR_E(\w+),\s*(\d+)\}", f.read()))
    assert len(rows) > 20, "cannot parse the status table of src/http/errors.c"
    return {names[k]: int(v) for k, v in rows.items()}


def vm_hwm_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM for pid %d" % pid)


@pytest.fixture(scope="module")
def replay_daemon(tmp_path_factory):
    from api_helpers import Daemon
    d = Daemon(tmp_path_factory.mktemp("badaudio") / "data", "--workers", "2",
               "--request-timeout-s", str(DEADLINE_S)).start()
    yield d
    assert d.stop() == 0, d.logs()


def test_whole_corpus_gets_its_documented_answer(replay_daemon, tmp_path_factory):
    d = replay_daemon
    statuses = status_table()
    all_cases = cases(big_dir=tmp_path_factory.mktemp("big"))
    assert len(all_cases) >= 80 and any(c.get("generated") for c in all_cases)
    wrong, slow = [], []
    for c in all_cases:
        with open(c["path"], "rb") as f:
            body = f.read()
        t0 = time.time()
        r = requests.post(d.url("/v1/tag"), data=body, headers={"Content-Type": c["mime"]},
                          timeout=DEADLINE_S + 30)
        dt = time.time() - t0
        if dt > DEADLINE_S:
            slow.append((c["name"], round(dt, 1)))
        if c["expect"] == "ok":
            if r.status_code != 200:
                wrong.append((c["name"], r.status_code, r.text[:200]))
                continue
            j = r.json()
            assert all(math.isfinite(t["score"]) for t in j["tags"]), c["name"]
            lo, hi = c.get("duration_s", (0, float("inf")))
            if not lo - 1e-3 <= j["duration_s"] <= hi + 1e-3:
                wrong.append((c["name"], "duration", j["duration_s"], lo, hi))
        else:
            want = statuses[c["expect"]]
            assert 400 <= want < 500, (c["name"], c["expect"], want)  # the table says client error
            got = error_of(r) if r.status_code != 200 else None
            if (r.status_code, got) != (want, c["expect"]):
                wrong.append((c["name"], r.status_code, got, "want", want, c["expect"]))
    assert not wrong, wrong
    assert not slow, slow
    assert requests.get(d.url("/readyz")).status_code == 200
    for st in ("500", "502", "503", "504"):
        assert d.metric("clmrd_http_requests_total", route="/v1/tag", status=st) == 0, st
    hwm = vm_hwm_kb(d.proc.pid)
    print("bad-audio replay: %d files, daemon VmHWM %d MiB" % (len(all_cases), hwm // 1024))
    if not sanitized_binary():  # ASan's shadow memory and quarantine (~530 MiB here) are not ours
        assert hwm < RSS_BOUND_KB, "peak RSS %d KiB over the %d KiB bound" % (hwm, RSS_BOUND_KB)


def sanitized_binary():
    import subprocess
    from api_helpers import CLMRD
    out = subprocess.run(["ldd", CLMRD], capture_output=True, text=True).stdout
    return "libasan" in out or "libtsan" in out


# ----------------------------------------------------------------- malformed HTTP (not covered
# elsewhere: 413/431 in test_api_limits.py, 405/404 routes in test_api_service.py, ids, limit
# 0/1001, k 0/101/1000 and short/long/NaN embeddings in test_api_tracks.py)


def raw_http(d, request_bytes, timeout=10):
    """Send bytes as-is (no client-side path normalisation) and return (status, body)."""
    import socket
    s = socket.create_connection(("127.0.0.1", d.port), timeout=timeout)
    try:
        s.sendall(request_bytes)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


def test_path_tricks(replay_daemon):
    d = replay_daemon
    tid = "a" * 64
    for path in ("/v1/../v1/tags", "/v1/%2e%2e/v1/tags", "/v1/tracks/%2e%2e/%2e%2e/etc/passwd",
                 "/v1/tracks/../../../etc/passwd", "//v1/tags", "/v1//tags", "/v1/tags/",
                 "/v1/tracks/" + tid + "/similar/..", "/v1/tracks/" + "a" * 5000,
                 "/v1/tracks/" + tid + "%00", "/v1/tracks/%ff%fe", "/%00", "/v1/tags;x=1",
                 "/V1/TAGS", "/v1/tags%2f..%2f..%2fconfig"):
        st, body = raw_http(d, b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        # either the route is answered exactly as the canonical one would be, or a clean 4xx JSON
        assert st in (200, 400, 404, 414), (path, st, body[:200])
        if st != 200:
            import json
            err = json.loads(body) if body else None
            assert err is None or set(err) == {"error"}, (path, body[:200])
        else:
            assert b"passwd" not in path.encode() and b"root:" not in body, path
    # the daemon never served a file from the disk
    st, body = raw_http(d, b"GET /v1/tracks/..%2f..%2f..%2fetc%2fpasswd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert st in (400, 404) and b"root:" not in body


def test_bad_json_bodies(replay_daemon):
    d = replay_daemon
    dim = 512
    for raw in (b"null", b"[]", b"\"x\"", b"42", b"{\"embedding\": {}}", b"{\"embedding\": null}",
                b"{\"embedding\": \"1,2,3\"}", b"{\"embedding\":[" + b"[" * 5000 + b"]" * 5000 + b"]}",
                b"\xff\xfe{}", b"{\"embedding\":[1,2,3],}", b"{\"k\":1}{\"k\":2}",
                b"{\"embedding\":[" + b",".join([b"1"] * dim) + b"],\"k\":\"10\"}",
                b"{\"embedding\":[" + b",".join([b"1"] * dim) + b"],\"k\":10.5}",
                b"{\"embedding\":[" + b",".join([b"1"] * dim) + b"],\"k\":1e300}",
                b"{\"embedding\":[" + b",".join([b"1"] * dim) + b"],\"k\":-1}",
                b"{\"embedding\":[" + b",".join([b"1"] * dim) + b"],\"k\":99999999999999999999999}",
                b"{\"embedding\":[" + b",".join([b"1"] * (dim - 1)) + b",\"x\"]}",
                b"{\"embedding\":[" + b",".join([b"1"] * (dim - 1)) + b",null]}",
                b"{\"embedding\":[" + b",".join([b"1"] * (dim - 1)) + b",true]}",
                b"{\"embedding\":[" + b",".join([b"1"] * (dim - 1)) + b",-Infinity]}",
                b"{\"embedding\":[" + b",".join([b"1"] * (dim * 100)) + b"]}",
                b"{\"embedding\":[" + b",".join([b"1e-320"] * dim) + b"]}"):
        r = requests.post(d.url("/v1/search"), data=raw, headers={"Content-Type": "application/json"})
        assert r.status_code == 400, (raw[:60], r.status_code, r.text[:200])
        assert error_of(r) in ("invalid_json", "invalid_argument"), raw[:60]


def test_huge_numeric_parameters(replay_daemon, tmp_path):
    d = replay_daemon
    tid = "a" * 64
    # (an empty value means "use the default", and strtol's "+5" / " 5" are 5: both harmless)
    huge = ("99999999999999999999999999", "4294967297", "-4294967295", "-1", "1e9", "0x10", "1.5",
            "5abc", "NaN", "inf")
    for v in huge:
        for method, path, key in (("GET", "/v1/tracks", "limit"), ("GET", "/v1/tracks/%s/similar" % tid, "k"),
                                  ("POST", "/v1/similar", "k"), ("POST", "/v1/tag", "top"),
                                  ("POST", "/v1/tag", "threshold")):
            r = requests.request(method, d.url(path), params={key: v}, data=b"x" if method == "POST" else None)
            assert r.status_code == 400, (path, key, v, r.status_code, r.text[:200])
            assert error_of(r) == "invalid_argument", (path, key, v)


def test_invalid_utf8_metadata_in_query(replay_daemon):
    d = replay_daemon
    wav = os.path.join(ROOT, "tests", "badaudio", "corpus", "whole.wav")
    body = open(wav, "rb").read()
    for field in ("title", "artist", "external_id"):
        for bad in ("%ff%fe", "%c0%af", "%ed%a0%80", "ok%80", "%f4%90%80%80"):  # overlong, surrogate, > U+10FFFF
            st, resp = raw_http(d, ("POST /v1/tracks?%s=%s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                                    "Content-Length: %d\r\n\r\n" % (field, bad, len(body))).encode() + body)
            assert st == 400, (field, bad, st, resp[:200])
    # A %00 inside a value would cut the C string short silently (it used to store title "a"):
    # refused, for metadata, cursors and numbers alike.
    for q in ("title=a%00b", "artist=%00", "external_id=x%00y"):
        st, resp = raw_http(d, ("POST /v1/tracks?%s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                                "Content-Length: %d\r\n\r\n" % (q, len(body))).encode() + body)
        assert st == 400, (q, st, resp[:200])
    for q in ("/v1/tracks?limit=5%00junk", "/v1/tracks?cursor=c1%000000000000000000"):
        st, resp = raw_http(d, ("GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % q).encode())
        assert st == 400, (q, st, resp[:200])
