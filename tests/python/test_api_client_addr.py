"""The client address in the access log, on the real daemon over loopback: X-Forwarded-For is
believed only from peers in --trusted-proxies (rightmost-untrusted walk), ignored otherwise, and a
malformed or oversized header falls back to the peer without reaching the log. Also: several
X-Forwarded-For header lines (sent on a raw socket, since HTTP libraries merge them) are read as
one list, and a bad --trusted-proxies stops start-up with exit status 2 naming the bad entry."""
import http.client
import json
import os
import socket
import subprocess
import time

import requests

from api_helpers import CLMRD, TINY


def access_line(d, rid, timeout=5.0):
    """The access-log message of request `rid` (written just after the answer: poll briefly)."""
    deadline = time.time() + timeout
    while True:
        with open(d.log_path, "rb") as f:
            for raw in f.read().decode(errors="replace").splitlines():
                if not raw.startswith("{"):
                    continue
                j = json.loads(raw)
                if j.get("request_id") == rid and " -> " in j.get("msg", ""):
                    return j["msg"]
        if time.time() > deadline:
            raise AssertionError("no access line for %s in:\n%s" % (rid, d.logs()))
        time.sleep(0.02)


def get(d, rid, xff=None, source="127.0.0.1"):
    """GET /healthz from a chosen loopback source address (http.client can pick one, requests
    cannot); returns the access-log message."""
    headers = {"X-Request-Id": rid}
    if xff is not None:
        headers["X-Forwarded-For"] = xff
    c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=10, source_address=(source, 0))
    c.request("GET", "/healthz", headers=headers)
    r = c.getresponse()
    r.read()
    c.close()
    assert r.status == 200
    return access_line(d, rid)


def raw_get(d, rid, header_lines, source="127.0.0.1"):
    """GET /healthz with header lines sent exactly as given (duplicates kept)."""
    s = socket.create_connection(("127.0.0.1", d.port), timeout=10, source_address=(source, 0))
    try:
        req = "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Request-Id: %s\r\n" % rid
        req += "".join(h + "\r\n" for h in header_lines) + "Connection: close\r\n\r\n"
        s.sendall(req.encode("latin-1"))
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    assert data.startswith(b"HTTP/1.1 200"), data[:200]
    return access_line(d, rid)


def test_header_ignored_without_trusted_proxies(make_daemon):
    d = make_daemon()
    msg = get(d, "noproxy-1", "203.0.113.7")
    assert msg.endswith("client=127.0.0.1"), msg
    assert "203.0.113.7" not in msg and "peer=" not in msg
    # the setting is visible (and empty) in /v1/config
    assert requests.get(d.url("/v1/config"), timeout=10).json()["trusted-proxies"] == ""


def test_trusted_proxy_names_the_client(make_daemon):
    d = make_daemon("--trusted-proxies", "127.0.0.1")
    msg = get(d, "proxied-1", "203.0.113.7")
    assert "client=203.0.113.7 peer=127.0.0.1" in msg, msg
    # a forged left part is never believed: the rightmost untrusted address is the client
    msg = get(d, "forged-1", "1.2.3.4, 203.0.113.9")
    assert "client=203.0.113.9 peer=127.0.0.1" in msg and "1.2.3.4" not in msg, msg
    # IPv6 clients behind an IPv4 proxy, printed canonically
    msg = get(d, "proxied-v6", "2001:DB8:0:0::7")
    assert "client=2001:db8::7 peer=127.0.0.1" in msg, msg
    # no header: the peer, logged once
    msg = get(d, "direct-1")
    assert msg.endswith("client=127.0.0.1"), msg
    assert requests.get(d.url("/v1/config"), timeout=10).json()["trusted-proxies"] == "127.0.0.1"


def test_untrusted_peer_cannot_forge(make_daemon):
    # only 127.0.0.2 is a proxy; the same header from 127.0.0.1 is ignored
    d = make_daemon("--trusted-proxies", "127.0.0.2")
    msg = get(d, "untrusted-1", "203.0.113.7", source="127.0.0.1")
    assert msg.endswith("client=127.0.0.1") and "203.0.113.7" not in msg, msg
    msg = get(d, "trusted-2", "203.0.113.7", source="127.0.0.2")
    assert "client=203.0.113.7 peer=127.0.0.2" in msg, msg


def test_walk_skips_trusted_hops_and_reads_every_header_line(make_daemon):
    d = make_daemon("--trusted-proxies", "127.0.0.0/8, 10.0.0.0/8")
    msg = get(d, "hops-1", "1.2.3.4, 203.0.113.9, 10.1.2.3, 10.4.5.6")
    assert "client=203.0.113.9 peer=127.0.0.1" in msg, msg
    # several X-Forwarded-For lines: libmicrohttpd keeps them all, in order, and they are one list
    msg = raw_get(d, "lines-1", ["X-Forwarded-For: 1.2.3.4", "X-Forwarded-For: 203.0.113.5"])
    assert "client=203.0.113.5 peer=127.0.0.1" in msg, msg
    msg = raw_get(d, "lines-2", ["X-Forwarded-For: 203.0.113.6", "x-forwarded-for: 10.0.0.1"])
    assert "client=203.0.113.6 peer=127.0.0.1" in msg, msg


def test_malformed_or_huge_header_falls_back_to_the_peer(make_daemon):
    d = make_daemon("--trusted-proxies", "127.0.0.1")
    for i, bad in enumerate(("unknown", "203.0.113.7:4711", "[2001:db8::1]", "203.0.113.7,",
                             "<script>alert(1)</script>", "1.2.3.4, evil\tx")):
        msg = get(d, "bad-%d" % i, bad)
        assert msg.endswith("client=127.0.0.1 [bad X-Forwarded-For]"), (bad, msg)
    # 40 KB of garbage (under libmicrohttpd's 64 KiB connection memory): bounded work, the peer,
    # and none of it in the log
    junk = "Z" * 40000
    msg = get(d, "huge-1", junk)
    assert msg.endswith("client=127.0.0.1 [bad X-Forwarded-For]"), msg[:300]
    # a long forged prefix in front of a good rightmost entry is harmless
    msg = get(d, "huge-2", junk + ", 203.0.113.9")
    assert "client=203.0.113.9 peer=127.0.0.1" in msg, msg[:300]
    with open(d.log_path, "rb") as f:
        log = f.read().decode(errors="replace")
    assert "ZZZZ" not in log and "<script>" not in log and "4711" not in log
    assert requests.get(d.url("/healthz"), timeout=10).status_code == 200  # still serving


def test_bad_trusted_proxies_is_refused_at_start(tmp_path):
    for args, env, bad in ((["--trusted-proxies", "127.0.0.1,nginx"], {}, "'nginx'"),
                           ([], {"CLMRD_TRUSTED_PROXIES": "10.1.0.0/8"}, "10.0.0.0/8"),
                           (["--trusted-proxies=::/129"], {}, "'::/129'")):
        r = subprocess.run([CLMRD, "serve", "--model", TINY, "--data-dir", str(tmp_path / "d"),
                            "--listen", "127.0.0.1:1", *args], capture_output=True, text=True,
                           timeout=30, env={**os.environ, **env})
        assert r.returncode == 2, (args, env, r.returncode, r.stderr)
        assert "trusted-proxies" in r.stderr and bad in r.stderr, r.stderr
