"""`clmrd ingest` against the real daemon over loopback: real folders of files made with ffmpeg (and
one file that is not audio), reruns that skip, an interrupted run that resumes, 503 + Retry-After
from a loopback proxy in front of the daemon (and from the daemon's own tiny queue), API keys, and
--watch picking up new files. Every wait has a deadline."""
import hashlib
import http.server
import os
import signal
import subprocess
import threading
import time

import pytest
import requests

from api_helpers import CLMRD, make_audio


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def ingest(*args, env=None, timeout=180):
    e = dict(os.environ)
    e.pop("CLMRD_API_KEY", None)
    e.pop("CLMRD_SERVER", None)
    e.update(env or {})
    return subprocess.run([CLMRD, "ingest", *args], capture_output=True, text=True, timeout=timeout,
                          env=e)


def catalogue_ids(d):
    ids, cursor = set(), None
    while True:
        r = requests.get(d.url("/v1/tracks"), params={"limit": 1000, **({"cursor": cursor} if cursor else {})},
                         timeout=30)
        assert r.status_code == 200, r.text
        body = r.json()
        ids |= {t["id"] for t in body["tracks"]}
        cursor = body.get("next_cursor")
        if not cursor:
            return ids


def uploads(d):
    """Tracks the daemon created (POST /v1/tracks answered 201)."""
    return d.metric("clmrd_http_requests_total", route="/v1/tracks", status="201")


def route_requests(d, route):
    """Requests the daemon answered on one route, all statuses (GET and POST alike)."""
    text = requests.get(d.url("/metrics"), timeout=10).text
    want = 'clmrd_http_requests_total{route="%s",' % route
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(want))


@pytest.fixture
def music(tmp_path):
    """A folder as a user has it: audio in several formats and sub-folders, one file that is not
    audio, a cover image and a hidden file (neither of which is taken)."""
    root = tmp_path / "music"
    (root / "album" / "cd2").mkdir(parents=True)
    good = [make_audio(root / "a.wav", 2.0, 300), make_audio(root / "album" / "b.flac", 2.0, 400),
            make_audio(root / "album" / "c.mp3", 2.0, 500),
            make_audio(root / "album" / "cd2" / "d.ogg", 2.0, 600, extra=("-c:a", "libvorbis"))]
    bad = root / "album" / "broken.flac"
    bad.write_bytes(b"this is not audio at all" * 10)
    (root / "cover.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    make_audio(root / ".hidden.wav", 1.0, 700)
    return root, good, str(bad)


def test_folder_ingest_then_rerun_skips_everything(make_daemon, music, tmp_path):
    d = make_daemon()
    root, good, bad = music
    state = str(tmp_path / "state.tsv")
    r = ingest("--server", d.base, "--state", state, "--jobs", "3", str(root))
    assert r.returncode == 1, r.stdout + r.stderr  # the bad file failed
    assert catalogue_ids(d) == {sha256(f) for f in good}
    summary = [line for line in r.stdout.splitlines() if line.startswith("ingest: ")]
    assert summary == ["ingest: 5 files: 4 uploaded, 0 already in the catalogue, 0 unchanged since the "
                       "last run, 1 failed" + summary[0].split("1 failed", 1)[1]], r.stdout
    # the failure is listed with the server's reason
    assert "failed %s: HTTP 415 not_audio" % bad in r.stdout
    assert uploads(d) == 5 - 1

    # Rerun: no request at all (nothing read again or uploaded); exit 0 (the bad file was
    # refused in the last run and is unchanged)
    before = (route_requests(d, "/v1/tracks"), route_requests(d, "/v1/tracks/{id}"))
    r2 = ingest("--server", d.base, "--state", state, str(root))
    assert r2.returncode == 0, r2.stdout + r2.stderr
    assert "0 uploaded, 0 already in the catalogue, 4 unchanged since the last run, 0 failed, " \
           "1 refused in an earlier run" in r2.stdout
    assert (route_requests(d, "/v1/tracks"), route_requests(d, "/v1/tracks/{id}")) == before

    # Without the state file: the server is asked by sha256 (one GET per file), and only the file
    # it does not hold (the bad one) is uploaded
    r3 = ingest("--server", d.base, "--state", str(tmp_path / "other.tsv"), str(root))
    assert r3.returncode == 1
    assert "0 uploaded, 4 already in the catalogue" in r3.stdout
    assert route_requests(d, "/v1/tracks/{id}") == before[1] + 5
    assert route_requests(d, "/v1/tracks") == before[0] + 1
    assert uploads(d) == 4

    # A changed file (new bytes, same path) is uploaded again as a new track
    make_audio(good[0], 2.5, 333)
    r4 = ingest("--server", d.base, "--state", state, str(root))
    assert "1 uploaded, 0 already in the catalogue, 3 unchanged" in r4.stdout, r4.stdout
    assert sha256(good[0]) in catalogue_ids(d)


def test_list_from_stdin_and_default_state_location(make_daemon, music, tmp_path):
    d = make_daemon()
    root, good, _ = music
    env = {"XDG_STATE_HOME": str(tmp_path / "xdg"), "CLMRD_SERVER": d.base}
    p = subprocess.run([CLMRD, "ingest", "--from", "-"], input="\n".join(good[:2]) + "\n",
                       capture_output=True, text=True, timeout=120, env={**os.environ, **env})
    assert p.returncode == 0, p.stdout + p.stderr
    assert catalogue_ids(d) == {sha256(f) for f in good[:2]}
    states = os.listdir(tmp_path / "xdg" / "clmrd")
    assert len(states) == 1 and states[0].startswith("ingest-") and states[0].endswith(".tsv")


def test_interrupted_run_resumes(make_daemon, tmp_path):
    d = make_daemon("--workers", "1")
    root = tmp_path / "many"
    root.mkdir()
    files = [make_audio(root / ("f%02d.wav" % i), 3.0, 150 + 37 * i, rate=22050) for i in range(14)]
    state = str(tmp_path / "state.tsv")
    p = subprocess.Popen([CLMRD, "ingest", "--server", d.base, "--state", state, "--jobs", "1", str(root)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = []
    deadline = time.time() + 120
    while time.time() < deadline:  # interrupt after two uploads
        line = p.stdout.readline()
        assert line, p.stderr.read()
        seen.append(line)
        if sum("uploaded" in s for s in seen) >= 2:
            break
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130, out + err
    assert "interrupted:" in out and "run the same command again to resume" in out
    before = catalogue_ids(d)
    assert 2 <= len(before) < len(files)

    # kill -9 part way through a second run: the journal keeps what was finished
    p = subprocess.Popen([CLMRD, "ingest", "--server", d.base, "--state", state, "--jobs", "1", str(root)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = []
    while time.time() < deadline:
        line = p.stdout.readline()
        assert line, p.stderr.read()
        if "uploaded" in line:
            break
    p.kill()
    p.wait(timeout=30)
    middle = catalogue_ids(d)
    assert len(middle) > len(before)

    r = ingest("--server", d.base, "--state", state, "--jobs", "2", str(root))
    assert r.returncode == 0, r.stdout + r.stderr
    assert catalogue_ids(d) == {sha256(f) for f in files}
    # only what was missing was uploaded; a file in flight at the kill may be found by sha256
    n_up = int(r.stdout.split("files: ", 1)[1].split(" uploaded")[0])
    assert n_up == len(files) - len(middle), r.stdout
    assert uploads(d) == len(files)


class _Proxy(http.server.ThreadingHTTPServer):
    daemon_threads = True


def start_proxy(upstream, overload=0, status=503, retry_after="1"):
    """A loopback proxy in front of the daemon that answers the first `overload` POSTs with
    `status` (+ Retry-After) and forwards everything else. Records (time, method, path, status,
    Authorization) of every request."""
    log, lock = [], threading.Lock()
    left = {"n": overload}

    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def _answer(self, code, body, headers=()):
            self.send_response(code)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _handle(self):
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n) if n else b""
            with lock:
                refuse = self.command == "POST" and left["n"] > 0
                if refuse:
                    left["n"] -= 1
            if refuse:
                code = status
                self._answer(code, b'{"error":{"code":"overloaded","message":"proxy says later"}}',
                             [("Content-Type", "application/json")] +
                             ([("Retry-After", retry_after)] if retry_after else []))
            else:
                fwd = {k: v for k, v in self.headers.items() if k.lower() in ("content-type", "authorization")}
                r = requests.request(self.command, upstream + self.path, data=body, headers=fwd, timeout=60)
                code = r.status_code
                self._answer(code, r.content, [("Content-Type", r.headers.get("Content-Type", "application/json"))])
            with lock:
                log.append((time.monotonic(), self.command, self.path, code, self.headers.get("Authorization")))

        do_GET = do_POST = _handle

    srv = _Proxy(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, "http://127.0.0.1:%d" % srv.server_address[1], log


KEY = "sekrit-key-0123456789abcdefghijklmnopqrstuv"


def test_503_retry_after_is_honoured_through_a_proxy(make_daemon, music, tmp_path):
    # Through a proxy a write needs a key (issue 12): the admin token counts as one.
    d = make_daemon(env={"CLMRD_ADMIN_TOKEN": KEY})
    root, good, bad = music
    os.unlink(bad)
    srv, url, log = start_proxy(d.base, overload=3, retry_after="1")
    try:
        r = ingest("--server", url, "--state", str(tmp_path / "s.tsv"), "--jobs", "2",
                   "--key", KEY, str(root))
    finally:
        srv.shutdown()
    assert r.returncode == 0, r.stdout + r.stderr
    assert catalogue_ids(d) == {sha256(f) for f in good}
    assert "3 overload answers retried" in r.stdout
    posts = [e for e in log if e[1] == "POST"]
    assert [e[3] for e in posts].count(503) == 3
    # every request carried the key; it never appears in the output
    assert all(e[4] == "Bearer " + KEY for e in log)
    assert "sekrit" not in r.stdout + r.stderr
    # each 503 was followed by the same worker's retry no sooner than Retry-After (1 s): with 2
    # workers, the first three 503s are answered before any retry, so the 4th POST is >= 1 s
    # after the first 503.
    first_503 = min(e[0] for e in posts if e[3] == 503)
    first_ok = min(e[0] for e in posts if e[3] in (200, 201))
    assert first_ok - first_503 >= 0.95


def test_gives_up_after_retries_and_reports(make_daemon, music, tmp_path):
    d = make_daemon()
    root, good, bad = music
    srv, url, log = start_proxy(d.base, overload=1000, retry_after="1")
    try:
        r = ingest("--server", url, "--state", str(tmp_path / "s.tsv"), "--retries", "1", good[0])
    finally:
        srv.shutdown()
    assert r.returncode == 1
    assert "failed %s: HTTP 503 overloaded: proxy says later" % good[0] in r.stdout
    assert len([e for e in log if e[1] == "POST"]) == 2  # one try + one retry


def test_bad_key_stops_the_run(make_daemon, music, tmp_path):
    d = make_daemon()
    root, good, bad = music
    srv, url, log = start_proxy(d.base, overload=1000, status=401, retry_after=None)
    try:
        r = ingest("--server", url, "--state", str(tmp_path / "s.tsv"), str(root),
                   env={"CLMRD_API_KEY": "wrong-key-456"})
    finally:
        srv.shutdown()
    assert r.returncode == 1
    assert "refused the API key" in r.stderr
    assert "wrong-key-456" not in r.stdout + r.stderr
    assert all(e[4] == "Bearer wrong-key-456" for e in log)
    assert len([e for e in log if e[1] == "POST"]) <= 2  # stopped, not one 401 per file


def test_tiny_queue_of_the_real_daemon(make_daemon, tmp_path):
    """One worker and a queue of one against 4 parallel uploads: the daemon sheds load with 503 +
    Retry-After, and every file still ends up in the catalogue."""
    d = make_daemon("--workers", "1", "--queue-depth", "1", "--retry-after-s", "1")
    root = tmp_path / "q"
    root.mkdir()
    files = [make_audio(root / ("q%d.flac" % i), 4.0, 220 + 53 * i, rate=22050) for i in range(8)]
    r = ingest("--server", d.base, "--state", str(tmp_path / "s.tsv"), "--jobs", "4", str(root))
    assert r.returncode == 0, r.stdout + r.stderr
    assert catalogue_ids(d) == {sha256(f) for f in files}
    shed = d.metric("clmrd_http_requests_total", route="/v1/tracks", status="503")
    assert ("%d overload answers retried" % shed in r.stdout) if shed else "retried" not in r.stdout


def test_watch_picks_up_new_files(make_daemon, tmp_path):
    d = make_daemon()
    root = tmp_path / "watched"
    root.mkdir()
    first = make_audio(root / "first.wav", 1.5, 440)
    p = subprocess.Popen([CLMRD, "ingest", "--server", d.base, "--state", str(tmp_path / "s.tsv"),
                          "--watch", str(root)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        def wait_for(sha, what):
            deadline = time.time() + 60
            while time.time() < deadline:
                if requests.get(d.url("/v1/tracks/" + sha), timeout=10).status_code == 200:
                    return
                assert p.poll() is None, p.stderr.read()
                time.sleep(0.1)
            pytest.fail("--watch did not ingest %s within 60 s" % what)

        wait_for(sha256(first), "the file present at start")
        # a new file written into the folder, and one in a new sub-folder
        tmp = make_audio(tmp_path / "staging.flac", 1.5, 550)
        os.rename(tmp, root / "moved-in.flac")
        (root / "new").mkdir()
        later = make_audio(root / "new" / "later.mp3", 1.5, 660)
        wait_for(sha256(str(root / "moved-in.flac")), "a file moved into the folder")
        wait_for(sha256(later), "a file written into a new sub-folder")
    finally:
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
    assert p.returncode == 0, out + err
    assert "3 uploaded" in out


def test_usage_errors_have_one_format(tmp_path):
    r = ingest("--bogus", "x")
    assert r.returncode == 2
    assert r.stderr.strip() == "clmrd ingest: --bogus: unknown option (see 'clmrd ingest --help')"
    r = ingest("--jobs")
    assert r.returncode == 2
    assert r.stderr.strip() == "clmrd ingest: --jobs: needs a value (see 'clmrd ingest --help')"
    r = ingest("--jobs", "0", "x")
    assert r.returncode == 2 and "clmrd ingest: --jobs: expected an integer in [1, 64]" in r.stderr
    r = ingest("--server", "ftp://x", str(tmp_path))
    assert r.returncode == 2 and "--server" in r.stderr
    h = ingest("--help")
    assert h.returncode == 0 and "Exit status:" in h.stdout


def test_progress_bar_on_a_terminal(make_daemon, music, tmp_path):
    """On a terminal (a pty here) the run draws one redrawn line with files/s, ETA and failures,
    and prints the failure above it; the summary follows."""
    import pty
    import select

    d = make_daemon()
    root, good, bad = music
    pid, fd = pty.fork()
    if pid == 0:  # the child: ingest with the pty as its terminal
        os.execv(CLMRD, [CLMRD, "ingest", "--server", d.base, "--state", str(tmp_path / "s.tsv"), str(root)])
    out = b""
    deadline = time.time() + 120
    while time.time() < deadline:
        r, _, _ = select.select([fd], [], [], 1.0)
        if r:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
    _, status = os.waitpid(pid, 0)
    text = out.decode(errors="replace")
    assert os.WEXITSTATUS(status) == 1, text
    assert "\r\x1b[K[" in text and " files/s  ETA " in text and " failed" in text, text
    bars = [seg for seg in text.split("\r\x1b[K") if seg.startswith("[")]
    assert any("5/5 files" in b and "1 failed" in b for b in bars), bars[-3:]
    assert "failed: %s: HTTP 415" % bad in text
    assert "ingest: 5 files: 4 uploaded" in text
