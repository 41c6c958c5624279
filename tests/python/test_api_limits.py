"""Limits and robustness of the real daemon: 413 (Content-Length and chunked), 503 + Retry-After
when the queue is full, concurrent uploads, SIGTERM draining in-flight work, slow uploads hitting
the request deadline, oversized headers."""
import concurrent.futures as cf
import signal
import socket
import subprocess
import time

import pytest
import requests

from api_helpers import error_of, make_audio


def test_413_content_length_and_chunked(daemon, audio):
    big = b"\0" * (2 * 1024 * 1024 + 1)  # the shared daemon allows 2 MiB
    r = requests.post(daemon.url("/v1/tag"), data=big)
    assert r.status_code == 413 and error_of(r) == "input_too_large"

    def chunks():
        for _ in range(40):
            yield b"\1" * 65536  # 2.5 MiB without a Content-Length
    r = requests.post(daemon.url("/v1/tag"), data=chunks())
    assert r.status_code == 413 and error_of(r) == "input_too_large"
    assert "passed the limit" in r.json()["error"]["message"]
    # just under the limit is accepted (and is not audio)
    r = requests.post(daemon.url("/v1/tag"), data=b"\0" * (2 * 1024 * 1024))
    assert r.status_code == 415
    # JSON search bodies have their own small limit
    r = requests.post(daemon.url("/v1/search"), data=b" " * (1024 * 1024 + 1))
    assert r.status_code == 413
    # the daemon is still healthy and an upload works
    assert requests.post(daemon.url("/v1/tag"), data=open(audio["flac"], "rb").read()).status_code == 200


def test_431_oversized_headers(daemon):
    r = requests.get(daemon.url("/healthz"), headers={"X-Big": "a" * 100000})
    assert r.status_code in (413, 431)
    assert requests.get(daemon.url("/healthz")).status_code == 200


def test_concurrent_uploads(make_daemon, audio):
    d = make_daemon("--workers", "2", "--queue-depth", "16")
    names = ["many%d" % i for i in range(8)]

    def up(n):
        with open(audio[n], "rb") as f:
            return requests.post(d.url("/v1/tracks"), files={"file": (n, f)}, data={"title": n}, timeout=120)
    with cf.ThreadPoolExecutor(8) as ex:
        rs = list(ex.map(up, names))
    assert [r.status_code for r in rs] == [201] * 8, [r.text for r in rs]
    listed = requests.get(d.url("/v1/tracks"), params={"limit": 100}).json()["tracks"]
    assert sorted(t["title"] for t in listed) == sorted(names)
    assert d.metric("clmrd_catalogue_tracks") == 8
    # the same bytes from 4 clients at once: one track, answers 201/200
    with cf.ThreadPoolExecutor(4) as ex:
        rs = list(ex.map(lambda _: up("wav"), range(4)))
    assert all(r.status_code in (200, 201) for r in rs) and any(r.status_code == 201 for r in rs)
    assert len({r.json()["id"] for r in rs}) == 1
    assert d.metric("clmrd_catalogue_tracks") == 9


@pytest.fixture(scope="module")
def slow_song(tmp_path_factory):
    """10 minutes of a tone at 22,050 Hz: a small FLAC that takes a while to decode and analyse.
    Identical concurrent uploads are all cache misses (results are cached when a job finishes)."""
    d = tmp_path_factory.mktemp("slow")
    return open(make_audio(d / "slow.flac", 600, 300, rate=22050), "rb").read()


# test_cache_hits_skip_a_full_inference_queue needs the one worker busy for many seconds. The tiny
# model's 8- and 12-channel layers run fast since issue 14 unless nCw16c is forced on them (oneDNN's
# reference kernel, ~1 s per layer here): CLMR_DNNL_BLOCKED_FROM=1 keeps those jobs as slow as they
# were (the other slow-song tests pass either way; with it, two of them exceed their 120 s client
# timeouts at load 20).
SLOW = {"CLMR_DNNL_BLOCKED_FROM": "1", "CLMRD_PRECISION": "fp32"}  # oneDNN reference kernel: a long busy worker


def test_503_when_queue_full(make_daemon, slow_song):
    d = make_daemon("--workers", "1", "--queue-depth", "1", "--retry-after-s", "7")
    bodies = [slow_song] * 6
    with cf.ThreadPoolExecutor(6) as ex:
        rs = list(ex.map(lambda b: requests.post(d.url("/v1/tag"), data=b, timeout=120), bodies))
    codes = sorted(r.status_code for r in rs)
    # one running + one queued at most: the others are refused at once
    assert codes.count(200) >= 1 and codes.count(503) >= 1, codes
    assert set(codes) <= {200, 503}
    for r in rs:
        if r.status_code == 503:
            assert r.headers["Retry-After"] == "7" and error_of(r) == "overloaded"
    assert d.metric("clmrd_queue_rejected_total") == codes.count(503)


def test_cache_hits_skip_a_full_inference_queue(make_daemon, slow_song, tmp_path):
    """A repeat upload is answered from the cache on the catalogue pool, never queued behind
    decodes: with the one worker busy and the queue full, it still gets 200 cached."""
    d = make_daemon("--workers", "1", "--queue-depth", "1", env=SLOW)
    short = open(make_audio(tmp_path / "short.wav", 3), "rb").read()
    first = requests.post(d.url("/v1/tag"), data=short, timeout=60)
    assert first.status_code == 200 and first.json()["cached"] is False
    with cf.ThreadPoolExecutor(2) as ex:
        futs = [ex.submit(requests.post, d.url("/v1/tag"), data=slow_song, timeout=120)
                for _ in range(2)]
        # Each slow job holds the worker for ~26 s on a quiet machine; on a loaded one the uploads
        # and the first decode can take much longer to get there, so the wait is generous (the
        # requests' own timeout is 120 s) and the last state seen is reported.
        deadline = time.time() + 90
        seen = None
        while seen != (1, 1):
            seen = (d.metric("clmrd_workers_busy"), d.metric("clmrd_queue_depth"))
            assert time.time() < deadline, \
                "the slow uploads never filled the worker and queue (last seen %r, done %r)" % (
                    seen, [f.done() for f in futs])
            time.sleep(0.005)
        again = requests.post(d.url("/v1/tag"), data=short, timeout=60)
        # the queue is still full: an uncached upload now is refused
        other = open(make_audio(tmp_path / "other.wav", 3, freq=880), "rb").read()
        refused = requests.post(d.url("/v1/tag"), data=other, timeout=60)
        busy = (d.metric("clmrd_workers_busy"), d.metric("clmrd_queue_depth"))
        [f.result() for f in futs]
    assert again.status_code == 200, again.text
    assert again.json()["cached"] is True and again.json()["tags"] == first.json()["tags"]
    if busy == (1, 1):  # the slow uploads were still there when the uncached one arrived
        assert refused.status_code == 503 and error_of(refused) == "overloaded"


def test_sigterm_drains_inflight(make_daemon, slow_song):
    d = make_daemon("--workers", "1", "--queue-depth", "4")
    bodies = [slow_song] * 2
    with cf.ThreadPoolExecutor(2) as ex:
        futs = [ex.submit(requests.post, d.url("/v1/tag"), data=b, timeout=120) for b in bodies]
        deadline = time.time() + 20
        # both requests accepted: one running, one waiting in the queue
        while (d.metric("clmrd_workers_busy"), d.metric("clmrd_queue_depth")) != (1, 1):
            assert time.time() < deadline, "the requests never reached the workers"
            time.sleep(0.005)
        t0 = time.time()
        proc = d.proc
        rc = d.stop()
        rs = [f.result() for f in futs]
    assert rc == 0, d.logs()
    assert [r.status_code for r in rs] == [200, 200], [r.text for r in rs]
    assert proc.returncode == 0 and time.time() - t0 < 60
    assert "draining" in d.logs()


def test_shutdown_grace_is_honoured(make_daemon, slow_song):
    """Issue 12: SIGTERM waits for in-flight requests for shutdown-grace-s, not a whole request
    deadline (121 s), so the drain fits the deploy files' grace periods. (An analysis already
    running on a worker still completes; decoding is bounded by the request deadline.)"""
    d = make_daemon("--workers", "1", env={"CLMRD_SHUTDOWN_GRACE_S": "0.5"})
    with cf.ThreadPoolExecutor(1) as ex:
        fut = ex.submit(requests.post, d.url("/v1/tag"), data=slow_song, timeout=300)
        deadline = time.time() + 30
        while d.metric("clmrd_workers_busy") != 1:
            assert time.time() < deadline, "the upload never reached the worker"
            time.sleep(0.005)
        d.proc.send_signal(signal.SIGTERM)
        deadline = time.time() + 30  # far less than the old 121 s wait
        while "still in flight after 0.5 s" not in d.logs() and d.proc.poll() is None:
            assert time.time() < deadline, d.logs()
            time.sleep(0.05)
        rc = d.proc.wait(300)
        try:
            fut.result()
        except requests.RequestException:
            pass
    log = d.logs()
    # abandoned after 0.5 s (exit 1), or finished within them on a fast machine (exit 0)
    assert (rc == 1 and "still in flight after 0.5 s" in log) or rc == 0, (rc, log)
    d.proc = None
    d.log.close()


def test_slow_upload_hits_request_deadline(make_daemon):
    d = make_daemon("--request-timeout-s", "1.5", "--connection-timeout-s", "30")
    s = socket.create_connection(("127.0.0.1", d.port))
    s.sendall(b"POST /v1/tag HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
    t0 = time.time()
    closed = False
    try:
        for _ in range(40):  # one byte every 0.1 s: never idle, never finished
            s.sendall(b"x")
            time.sleep(0.1)
    except OSError:
        closed = True
    if not closed:
        s.settimeout(5)
        try:
            closed = s.recv(1) == b""
        except OSError:
            closed = True
    s.close()
    assert closed and time.time() - t0 < 10
    assert d.metric("clmrd_http_requests_total", route="/v1/tag", status="408") == 1


def test_idle_connection_timeout(make_daemon):
    d = make_daemon("--connection-timeout-s", "1")
    s = socket.create_connection(("127.0.0.1", d.port))
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # headers never finished
    s.settimeout(10)
    t0 = time.time()
    try:
        data = s.recv(100)
    except OSError:
        data = b""
    s.close()
    assert data == b"" and time.time() - t0 < 8


def test_deadline_while_queued_or_decoding(make_daemon, slow_song, tmp_path):
    # four DIFFERENT songs (a tag differs, the audio is the same): no cache hit can shortcut the
    # queue, so the last starts after at least three full analyses, far past its 0.5 s deadline
    src = tmp_path / "src.flac"
    src.write_bytes(slow_song)
    bodies = []
    for i in range(4):
        out = tmp_path / ("v%d.flac" % i)
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(src), "-c", "copy", "-metadata",
                        "title=v%d" % i, str(out)], check=True)
        bodies.append(out.read_bytes())
    assert len({hash(b) for b in bodies}) == 4
    d = make_daemon("--workers", "1", "--queue-depth", "4", "--request-timeout-s", "0.5",
                    env=SLOW)
    with cf.ThreadPoolExecutor(4) as ex:
        rs = list(ex.map(lambda b: requests.post(d.url("/v1/tag"), data=b, timeout=60), bodies))
    codes = [r.status_code for r in rs]
    assert set(codes) <= {200, 503}, [r.text for r in rs]
    late = [r for r in rs if r.status_code == 503]
    assert late, codes
    for r in late:
        assert error_of(r) == "deadline_exceeded" and "Retry-After" in r.headers
    # no wall-clock bound here (a loaded CI machine is slow); requests' 60 s timeout catches a hang


def test_507_when_storage_full_and_recovery(make_daemon, tmp_path):
    """The data directory on a 3 MiB tmpfs with a 768 KiB ballast file: ingest until the disk is
    full (507 storage_full, nothing else), deletes also answer 507 while SQLite cannot grow its WAL,
    then the operator frees space (the ballast) and ingest and delete work again without a restart.
    Needs root for the mount (the CI runs as root); skipped, visibly, otherwise."""
    import os
    import subprocess
    mnt = tmp_path / "small"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs (needs root)")
    try:
        ballast = mnt / "ballast"
        ballast.write_bytes(b"\0" * (768 * 1024))
        d = make_daemon(data_dir=mnt / "data")
        ids, full = [], None
        for i in range(60):
            f = make_audio(tmp_path / ("fill%d.flac" % i), 20, 150 + 37 * i, rate=22050)
            r = requests.post(d.url("/v1/tracks"), data=open(f, "rb").read(), timeout=60)
            if r.status_code == 201:
                ids.append(r.json()["id"])
                continue
            full = r
            break
        assert full is not None, "the 3 MiB disk never filled"
        assert full.status_code == 507 and error_of(full) == "storage_full", full.text
        assert ids and requests.get(d.url("/healthz")).status_code == 200
        assert requests.get(d.url("/v1/tracks/" + ids[0])).status_code == 200
        r = requests.delete(d.url("/v1/tracks/" + ids[0]))
        assert r.status_code in (204, 507), r.text
        ballast.unlink()  # the operator frees space
        r = requests.post(d.url("/v1/tracks"), data=open(f, "rb").read(), timeout=60)
        assert r.status_code == 201, r.text
        for t in ids[1:3]:
            assert requests.delete(d.url("/v1/tracks/" + t)).status_code == 204
        assert d.stop() == 0, d.logs()
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_buffered_bytes_budget(make_daemon):
    """Bodies held in memory across all connections are capped: a second large upload while the
    first is still arriving gets 503 + Retry-After, and is accepted once the first is gone."""
    d = make_daemon("--max-upload-bytes", "1M", "--max-buffered-bytes", "1M", "--retry-after-s", "3")
    s = socket.create_connection(("127.0.0.1", d.port))
    s.sendall(b"POST /v1/tag HTTP/1.1\r\nHost: x\r\nContent-Length: 900000\r\n\r\n" + b"\0" * 450000)
    deadline = time.time() + 10
    r = None
    while time.time() < deadline:  # until the daemon has buffered the first half
        r = requests.post(d.url("/v1/tag"), data=b"\0" * 800000)
        if r.status_code == 503:
            break
        time.sleep(0.05)
    assert r.status_code == 503 and error_of(r) == "overloaded" and r.headers["Retry-After"] == "3"
    s.close()
    # The first upload's bytes are released when the daemon sees the connection end, which on
    # a loaded machine can take a while: wait for that (with a deadline), never a fixed time.
    deadline = time.time() + 30
    while True:
        r = requests.post(d.url("/v1/tag"), data=b"\0" * 800000)
        if r.status_code != 503 or time.time() > deadline:
            break
        time.sleep(0.05)
    assert r.status_code == 415, r.text  # accepted and read: zeros are not audio
    import subprocess
    from api_helpers import CLMRD, TINY
    bad = subprocess.run([CLMRD, "serve", "--model", TINY, "--max-upload-bytes", "2M",
                          "--max-buffered-bytes", "1M"], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "max-buffered-bytes" in bad.stderr
