"""Real nginx (Debian nginx-light) on loopback in front of the real clmrd, with the SHIPPED
deploy/nginx/clmrd.conf. The shipped file is changed only in its ports (the upstream address and
`listen`); the generated top-level nginx.conf only adds process-level paths (pid, logs, temp dirs)
and includes it. What is checked: `nginx -t`, the API through the proxy, 413 from nginx for bodies
over 100 MiB (Content-Length and chunked; the daemon never sees them), the /v1/admin/ allow-list
(127.0.0.2 refused, 127.0.0.1 forwarded), 429 from the rate limits, X-Request-Id end to end, gzip,
and the client address in the daemon's access log: the daemon runs with --trusted-proxies 127.0.0.1
(where nginx connects from), so it logs the test client's own source address from nginx's
X-Forwarded-For, and an X-Forwarded-For forged by the client does not change it.

Client source addresses: limit_req keys on the client address, so the rate-limit tests use their
own loopback source addresses (127.0.0.3/.4) and cannot starve the other tests' budget."""
import gzip
import http.client
import json
import os
import re
import select
import shutil
import socket
import subprocess
import sys
import time

import pytest
import requests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from api_helpers import CLMRD, ROOT, Daemon, free_port, make_audio  # noqa: E402

SHIPPED = os.path.join(ROOT, "deploy", "nginx", "clmrd.conf")
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
MiB = 1 << 20
LIMIT = 100 * MiB  # client_max_body_size 100m in the shipped file == clmrd's default max-upload-bytes
WRITE_KEY = None  # set by the stack fixture


def template(text, upstream_port, listen_port):
    """The shipped configuration with only its ports changed; each pattern must match exactly once
    so a reshaped shipped file fails here instead of being tested half-templated."""
    for pat, rep in ((r"server 127\.0\.0\.1:8080\b", "server 127.0.0.1:%d" % upstream_port),
                     (r"^(\s*)listen 80;$", r"\g<1>listen 127.0.0.1:%d;" % listen_port)):
        text, n = re.subn(pat, rep, text, flags=re.M)
        assert n == 1, "pattern %r matched %d times in %s" % (pat, n, SHIPPED)
    return text


def top_level_conf(d, include):
    """Process-level settings only: where nginx keeps its pid, logs and temp files."""
    user = "user root;\n" if os.geteuid() == 0 else ""  # temp dirs live in root's 0700 pytest dir
    temps = "".join("    %s_temp_path %s;\n" % (t, os.path.join(d, t)) for t in
                    ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return ("%sworker_processes 1;\npid %s;\nerror_log %s info;\nevents { worker_connections 512; }\n"
            "http {\n    access_log %s;\n%s    include %s;\n}\n"
            % (user, os.path.join(d, "nginx.pid"), os.path.join(d, "error.log"),
               os.path.join(d, "access.log"), temps, include))


class Nginx:
    def __init__(self, d, upstream_port):
        self.dir = str(d)
        self.port = free_port()
        with open(SHIPPED) as f:
            shipped = f.read()
        self.site = os.path.join(self.dir, "clmrd.conf")
        with open(self.site, "w") as f:
            f.write(template(shipped, upstream_port, self.port))
        self.conf = os.path.join(self.dir, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write(top_level_conf(self.dir, self.site))
        self.proc = None

    def cmd(self, *args):
        # -e: the error log before the configuration is read (else /var/log/nginx/error.log).
        return [NGINX, "-p", self.dir, "-e", os.path.join(self.dir, "error.log"), "-c", self.conf, *args]

    def test_config(self):
        return subprocess.run(self.cmd("-t"), capture_output=True, text=True, timeout=30)

    def start(self):
        self.proc = subprocess.Popen(self.cmd("-g", "daemon off;"), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        deadline = time.time() + 10
        while time.time() < deadline:
            assert self.proc.poll() is None, self.proc.stderr.read().decode()
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("nginx did not listen on %d" % self.port)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()  # fast shutdown
            self.proc.wait(10)

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def error_log(self):
        with open(os.path.join(self.dir, "error.log")) as f:
            return f.read()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    if not os.path.exists(CLMRD):
        pytest.fail("clmrd binary not found at %s (set CLMRD_BUILD)" % CLMRD)
    if not os.path.exists(NGINX):
        pytest.fail("nginx not installed (scripts/install-deps.sh installs nginx-light)")
    base = tmp_path_factory.mktemp("nginx")
    # Proxied writes need a key (issue 12): one write key, made with the CLI before start.
    r = subprocess.run([CLMRD, "keys", "create", "--scope", "write", "--name", "nginx-test",
                        "--data-dir", str(base / "data")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    global WRITE_KEY
    WRITE_KEY = r.stdout.strip()
    # The daemon's own upload limit stays at its default (100M) so that it matches the proxy.
    # nginx reaches the upstream 127.0.0.1:PORT from 127.0.0.1: the one trusted proxy.
    d = Daemon(base / "data", "--workers", "2", "--trusted-proxies", "127.0.0.1").start()
    n = Nginx(base, d.port)
    r = n.test_config()
    assert r.returncode == 0, r.stderr
    n.start()
    yield d, n
    n.stop()
    assert d.stop() == 0, d.logs()


@pytest.fixture(scope="module")
def wav(tmp_path_factory):
    return make_audio(tmp_path_factory.mktemp("nginx-audio") / "a.wav", 4.0, 523)


def daemon_requests(d):
    """Requests the daemon has finished, read from the daemon directly (not via nginx); the
    /metrics scrapes themselves are left out (each one counts once it has been answered)."""
    text = requests.get(d.url("/metrics"), timeout=10).text
    return sum(float(line.split()[-1]) for line in text.splitlines()
               if line.startswith("clmrd_http_requests_total{") and 'route="/metrics"' not in line)


def daemon_log(d):
    """The daemon's whole log (Daemon.logs() keeps only the tail)."""
    with open(d.log_path, "rb") as f:
        return f.read().decode(errors="replace")


def eventually(pred, timeout=5.0):
    """clmrd writes its access line and counts the request only after the answer has been sent,
    so a client can read the answer before either is visible: poll briefly."""
    deadline = time.time() + timeout
    while not pred():
        if time.time() > deadline:
            return False
        time.sleep(0.02)
    return True


_marks = [0]


def settled_requests(d, n):
    """The daemon's finished-request count once a marker request sent through nginx has been
    logged: everything sent before it has been seen by then. Replaces a fixed settle time."""
    _marks[0] += 1
    rid = "settle-marker-%d" % _marks[0]
    assert requests.get(n.url("/healthz"), headers={"X-Request-Id": rid}, timeout=30).status_code == 200
    assert eventually(lambda: rid in daemon_log(d), timeout=30), rid
    assert eventually(lambda: daemon_requests(d) >= 1, timeout=30)
    return daemon_requests(d)


def conn(n, source="127.0.0.1", timeout=30):
    return http.client.HTTPConnection("127.0.0.1", n.port, timeout=timeout, source_address=(source, 0))


def test_nginx_t_passes_on_shipped_file(stack):
    _, n = stack
    r = n.test_config()
    assert r.returncode == 0, r.stderr
    assert "syntax is ok" in r.stderr and "test is successful" in r.stderr


def test_api_through_proxy(stack, wav):
    d, n = stack
    with open(wav, "rb") as f:
        body = f.read()
    r = requests.post(n.url("/v1/tag"), data=body, timeout=60)
    assert r.status_code == 200, r.text
    tagged = r.json()
    assert len(tagged["tags"]) > 0 and all(0 <= t["score"] <= 1 for t in tagged["tags"])
    direct = requests.post(d.url("/v1/tag"), data=body, timeout=60).json()
    assert direct["id"] == tagged["id"] and direct["tags"] == tagged["tags"]

    r = requests.post(n.url("/v1/tracks"), params={"title": "proxied"},
                      files={"file": ("a.wav", body, "audio/wav")},
                      headers={"Authorization": "Bearer " + WRITE_KEY}, timeout=60)
    assert r.status_code in (200, 201), r.text
    tid = r.json()["id"]
    g = requests.get(n.url("/v1/tracks/" + tid), timeout=10)
    assert g.status_code == 200 and g.json()["id"] == tid
    s = requests.get(n.url("/v1/tracks/%s/similar" % tid), params={"k": 3}, timeout=10)
    assert s.status_code == 200, s.text
    # an uploaded query through the proxy (multipart): the same song's nearest neighbour is itself
    s = requests.post(n.url("/v1/similar"), params={"k": 1}, files={"file": ("a.wav", body)}, timeout=60)
    assert s.status_code == 200, s.text
    assert tid in json.dumps(s.json())
    # errors keep the daemon's JSON body through the proxy
    e = requests.get(n.url("/v1/tracks/" + "0" * 64), timeout=10)
    assert e.status_code == 404 and "error" in e.json()
    assert requests.get(n.url("/readyz"), timeout=10).status_code == 200


def read_response(s, timeout=30):
    s.settimeout(timeout)
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    try:
        while len(rest) < int(headers.get("content-length", 0)):
            chunk = s.recv(65536)
            if not chunk:
                break
            rest += chunk
    except OSError:
        pass
    return status, headers, rest


def stream_oversized(n, chunked):
    """POST a body just over 100 MiB generated on the fly (never held in memory), stopping as soon
    as nginx answers; returns (status, headers, body, bytes_sent)."""
    total = LIMIT + MiB
    piece = b"\0" * MiB
    s = socket.create_connection(("127.0.0.1", n.port), timeout=30)
    try:
        head = "POST /v1/tag HTTP/1.1\r\nHost: x\r\nContent-Type: audio/wav\r\n"
        head += "Transfer-Encoding: chunked\r\n" if chunked else "Content-Length: %d\r\n" % total
        s.sendall((head + "\r\n").encode())
        sent = 0
        while sent < total:
            if select.select([s], [], [], 0)[0]:
                break  # nginx has answered (413) before the whole body
            data = (b"%x\r\n" % len(piece) + piece + b"\r\n") if chunked else piece
            try:
                s.sendall(data)
            except OSError:
                break
            sent += len(piece)
        else:
            if chunked:
                s.sendall(b"0\r\n\r\n")
        status, headers, body = read_response(s)
        return status, headers, body, sent
    finally:
        s.close()


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_oversized_upload_is_413_from_nginx(stack, chunked):
    d, n = stack
    before = settled_requests(d, n)
    status, headers, body, sent = stream_oversized(n, chunked)
    assert status == 413
    # nginx's own page (HTML), not the daemon's JSON error
    assert headers.get("server", "").startswith("nginx")
    assert b"413 Request Entity Too Large" in body
    if not chunked:
        assert sent <= 8 * MiB  # refused on the header, long before the body would have been read
    else:
        assert sent > LIMIT - 2 * MiB  # counted while streaming: refused once the limit passed
    # the daemon never saw it: the only request it finished since is the next marker, and no
    # 413 is in its log
    assert settled_requests(d, n) == before + 1
    assert "-> 413" not in daemon_log(d)
    assert "client intended to send too large" in n.error_log()


def test_admin_refused_for_non_allowed_address(stack):
    d, n = stack
    before = settled_requests(d, n)
    c = conn(n, "127.0.0.2")
    c.request("GET", "/v1/admin/jobs")
    r = c.getresponse()
    body = r.read()
    assert r.status == 403 and b"403 Forbidden" in body and r.getheader("Server", "").startswith("nginx")
    c.close()
    assert settled_requests(d, n) == before + 1  # only the marker: the daemon never saw it
    assert "access forbidden by rule" in n.error_log()
    # /metrics has the same allow-list
    c = conn(n, "127.0.0.2")
    c.request("GET", "/metrics")
    assert c.getresponse().status == 403
    c.close()
    # ordinary API calls from that address are fine
    c = conn(n, "127.0.0.2")
    c.request("GET", "/v1/tags")
    assert c.getresponse().status == 200
    c.close()


def test_admin_forwarded_for_allowed_address(stack):
    d, n = stack
    before = daemon_requests(d)
    c = conn(n, "127.0.0.1")
    c.request("GET", "/v1/admin/jobs", headers={"X-Request-Id": "admin-probe-1"})
    r = c.getresponse()
    body = r.read()
    c.close()
    # The daemon has no admin routes in this build: its JSON 404 proves the proxy forwarded it.
    assert r.status != 403
    assert json.loads(body)["error"]["code"]
    assert eventually(lambda: daemon_requests(d) == before + 1), daemon_requests(d) - before
    assert eventually(lambda: "admin-probe-1" in daemon_log(d))


def burst(n, source, method, path, count):
    """`count` bodiless requests pipelined on one keep-alive connection in a single write, so the
    limiter sees them within milliseconds however slow this machine is; the list of statuses."""
    req = ("%s %s HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n" % (method, path)).encode()
    last = ("%s %s HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            % (method, path)).encode()
    s = socket.create_connection(("127.0.0.1", n.port), timeout=30, source_address=(source, 0))
    try:
        s.sendall(req * (count - 1) + last)
        data = b""
        while True:
            chunk = s.recv(1 << 16)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    statuses = [int(x) for x in re.findall(rb"HTTP/1\.1 (\d{3}) ", data)]
    assert len(statuses) == count, (len(statuses), data[-500:])
    return statuses


def test_upload_rate_limit_answers_429(stack):
    d, n = stack
    before = daemon_requests(d)
    # 5 r/s with burst 10 (nodelay) on uploads: of 30 requests arriving together, 1 + 10 pass and
    # the rest get 429. An empty body is refused cheaply by the daemon (400), so only the limiter
    # is being exercised. A slow machine may refill a token or two while they arrive.
    statuses = burst(n, "127.0.0.3", "POST", "/v1/tag", 30)
    assert set(statuses) <= {400, 429}, statuses
    assert statuses[:11] == [400] * 11, statuses
    assert 11 <= statuses.count(400) <= 13 and statuses.count(429) >= 17, statuses
    # only the requests nginx let through reached the daemon
    assert eventually(lambda: daemon_requests(d) - before == statuses.count(400)), \
        (daemon_requests(d) - before, statuses.count(400))
    # another client address has its own budget
    assert burst(n, "127.0.0.1", "POST", "/v1/tag", 1) == [400]


def test_api_rate_limit_answers_429(stack):
    _, n = stack
    # 50 r/s with burst 100 on the rest of the API: of 200 requests arriving together, 101 pass
    statuses = burst(n, "127.0.0.4", "GET", "/healthz", 200)
    assert set(statuses) <= {200, 429}, statuses
    assert statuses[:101] == [200] * 101
    assert statuses.count(429) >= 80, statuses.count(429)


def test_request_id_passes_through(stack):
    d, n = stack
    r = requests.get(n.url("/v1/tags"), headers={"X-Request-Id": "deploy-test.42:x"}, timeout=10)
    assert r.status_code == 200
    assert r.headers["X-Request-Id"] == "deploy-test.42:x"  # exactly one header, the client's id
    assert eventually(lambda: "deploy-test.42:x" in daemon_log(d))
    # none sent: nginx's own $request_id (32 hex digits) reaches the daemon and comes back
    r = requests.get(n.url("/v1/models"), timeout=10)
    rid = r.headers["X-Request-Id"]
    assert re.fullmatch(r"[0-9a-f]{32}", rid), rid
    assert eventually(lambda: rid in daemon_log(d)), rid
    # an unsafe one is replaced, never logged
    r = requests.get(n.url("/v1/tags"), headers={"X-Request-Id": "bad id\twith spaces"}, timeout=10)
    rid = r.headers["X-Request-Id"]
    assert re.fullmatch(r"[0-9a-f]{32}", rid)
    assert eventually(lambda: rid in daemon_log(d)) and "bad id" not in daemon_log(d)
    # nginx's own answers carry one too
    c = conn(n, "127.0.0.2")
    c.request("GET", "/v1/admin/x", headers={"X-Request-Id": "refused-1"})
    r2 = c.getresponse()
    assert r2.status == 403 and r2.getheader("X-Request-Id") == "refused-1"
    c.close()


def access_msg(d, rid):
    """The daemon's access-log message for request id `rid` (JSON log lines)."""
    for line in daemon_log(d).splitlines():
        if line.startswith("{"):
            j = json.loads(line)
            if j.get("request_id") == rid and " -> " in j.get("msg", ""):
                return j["msg"]
    return None


def test_daemon_logs_the_client_behind_the_proxy(stack):
    d, n = stack
    # the test client's own source address, not nginx's 127.0.0.1
    c = conn(n, "127.0.0.6")
    c.request("GET", "/v1/tags", headers={"X-Request-Id": "client-addr-1"})
    assert c.getresponse().status == 200
    c.close()
    assert eventually(lambda: access_msg(d, "client-addr-1") is not None), daemon_log(d)[-2000:]
    msg = access_msg(d, "client-addr-1")
    assert "client=127.0.0.6 peer=127.0.0.1" in msg, msg
    # a client that sends its own X-Forwarded-For cannot pick its address: nginx appends the real
    # one, and the daemon takes the rightmost address that is not a trusted proxy
    c = conn(n, "127.0.0.7")
    c.request("GET", "/v1/tags", headers={"X-Request-Id": "client-addr-2",
                                          "X-Forwarded-For": "198.51.100.66, 127.0.0.1"})
    assert c.getresponse().status == 200
    c.close()
    assert eventually(lambda: access_msg(d, "client-addr-2") is not None)
    msg = access_msg(d, "client-addr-2")
    assert "client=127.0.0.7 peer=127.0.0.1" in msg and "198.51.100.66" not in msg, msg
    # the daemon reached directly (no proxy) logs the peer itself, header or not
    r = requests.get(d.url("/v1/tags"), headers={"X-Request-Id": "client-addr-3"}, timeout=10)
    assert r.status_code == 200
    assert eventually(lambda: access_msg(d, "client-addr-3") is not None)
    assert access_msg(d, "client-addr-3").endswith("client=127.0.0.1")


def test_gzip_for_large_json(stack):
    d, n = stack
    direct = requests.get(d.url("/v1/openapi.json"), timeout=10)
    assert direct.status_code == 200 and len(direct.content) > 1024
    c = conn(n)
    c.request("GET", "/v1/openapi.json", headers={"Accept-Encoding": "gzip"})
    r = c.getresponse()
    raw = r.read()
    c.close()
    assert r.status == 200
    assert r.getheader("Content-Encoding") == "gzip"
    plain = gzip.decompress(raw)
    assert plain == direct.content
    assert len(raw) < len(plain) / 2
    # without Accept-Encoding the body is unchanged
    c = conn(n)
    c.request("GET", "/v1/openapi.json")
    r = c.getresponse()
    assert r.getheader("Content-Encoding") is None and r.read() == direct.content
    c.close()


def test_admin_without_slash_and_config_are_allow_listed(stack):
    _, n = stack
    for path in ("/v1/admin", "/v1/admin/jobs", "/v1/config", "/v1/tags/../admin/jobs"):
        c = conn(n, "127.0.0.2")
        c.putrequest("GET", path, skip_accept_encoding=True)
        c.endheaders()
        r = c.getresponse()
        body = r.read()
        c.close()
        assert r.status == 403 and b"403 Forbidden" in body, (path, r.status, body[:200])
    c = conn(n, "127.0.0.1")
    c.request("GET", "/v1/config")
    r = c.getresponse()
    assert r.status == 200 and "listen" in json.loads(r.read())
    c.close()


def test_dot_segments_reach_the_daemon_as_400(stack):
    # nginx picks the location from the normalised path (/v1/tags) but forwards the raw one:
    # the daemon refuses it instead of routing it somewhere else.
    _, n = stack
    for path in ("/v1/admin/../v1/tags", "/v1//tags", "/v1/%2e%2e/v1/tags"):
        c = conn(n, "127.0.0.2")
        c.putrequest("GET", path, skip_accept_encoding=True)
        c.endheaders()
        r = c.getresponse()
        body = r.read()
        c.close()
        assert r.status == 400, (path, r.status, body[:200])
        assert json.loads(body)["error"]["code"] == "invalid_path", body


def test_keyless_daemon_refuses_proxied_writes(tmp_path, wav):
    """The default with no key at all: through the shipped proxy, a client (loopback or not) can
    neither ingest nor delete; the same daemon reached directly on loopback can."""
    d = Daemon(tmp_path / "data", "--workers", "1", "--trusted-proxies", "127.0.0.1").start()
    n = Nginx(tmp_path, d.port)
    try:
        assert n.test_config().returncode == 0
        n.start()
        with open(wav, "rb") as f:
            body = f.read()
        for source in ("127.0.0.2", "127.0.0.1"):
            c = conn(n, source)
            c.request("POST", "/v1/tracks", body=body, headers={"Content-Type": "audio/wav"})
            r = c.getresponse()
            err = json.loads(r.read())
            c.close()
            assert r.status == 403 and err["error"]["code"] == "forbidden", (source, r.status, err)
        assert requests.get(d.url("/v1/tracks"), timeout=10).json()["tracks"] == []
        r = requests.post(d.url("/v1/tracks"), data=body, timeout=60)  # direct, loopback
        assert r.status_code == 201, r.text
        tid = r.json()["id"]
        c = conn(n, "127.0.0.2")
        c.request("DELETE", "/v1/tracks/" + tid)
        r = c.getresponse()
        r.read()
        c.close()
        assert r.status == 403
        assert requests.get(d.url("/v1/tracks/" + tid), timeout=10).status_code == 200
        # reads through the proxy still work
        c = conn(n, "127.0.0.2")
        c.request("GET", "/v1/tracks/" + tid)
        r = c.getresponse()
        r.read()
        c.close()
        assert r.status == 200
    finally:
        n.stop()
        assert d.stop() == 0, d.logs()
