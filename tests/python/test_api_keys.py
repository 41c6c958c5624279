"""The access model (issue 12) through the real daemon: keyless writes only from local clients
while no key exists, scopes once keys exist (from `clmrd keys` and the admin API), revocation,
require-read-key, credentials in the query string, weak admin tokens refused at start-up, and
paths with empty, '.' or '..' segments refused with 400."""
import http.client
import os
import json
import subprocess
import time

import requests

from api_helpers import CLMRD, TINY, error_of, make_audio

TOKEN = "k3ys-admin-token-Zq3kP9vX2mW8nR4tY6uB1cD5"


def cli_key(data_dir, scope, name):
    r = subprocess.run([CLMRD, "keys", "create", "--scope", scope, "--name", name, "--data-dir",
                        str(data_dir), "--json"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def bearer(key):
    return {"Authorization": "Bearer " + key}


def wav_bytes(tmp_path, name, freq):
    with open(make_audio(tmp_path / name, 1.0, freq, rate=22050), "rb") as f:
        return f.read()


def test_no_key_writes_only_from_local_clients(make_daemon, tmp_path):
    d = make_daemon()
    body = wav_bytes(tmp_path, "a.wav", 310)
    # anything that says it came through a proxy is remote: no key, no write
    for hdr in ({"X-Forwarded-For": "203.0.113.9"}, {"Forwarded": "for=203.0.113.9"},
                {"X-Real-IP": "203.0.113.9"}):
        r = requests.post(d.url("/v1/tracks"), data=body, headers=hdr, timeout=60)
        assert r.status_code == 403 and error_of(r) == "forbidden", r.text
        assert "clmrd keys create" in r.json()["error"]["message"]
    assert requests.get(d.url("/v1/tracks"), timeout=10).json()["tracks"] == []
    # a local client (loopback, no proxy headers) may ingest and delete
    r = requests.post(d.url("/v1/tracks"), data=body, timeout=60)
    assert r.status_code == 201, r.text
    tid = r.json()["id"]
    r = requests.delete(d.url("/v1/tracks/" + tid), headers={"X-Forwarded-For": "203.0.113.9"},
                        timeout=10)
    assert r.status_code == 403
    assert requests.get(d.url("/v1/tracks/" + tid), timeout=10).status_code == 200
    # reads stay open, proxied or not
    r = requests.post(d.url("/v1/tag"), data=body, headers={"X-Forwarded-For": "203.0.113.9"},
                      timeout=60)
    assert r.status_code == 200
    assert requests.delete(d.url("/v1/tracks/" + tid), timeout=10).status_code == 204


def test_scopes_revocation_and_admin_api(make_daemon, tmp_path):
    data = tmp_path / "keys"
    w = cli_key(data, "write", "nightly-ingest")
    rd = cli_key(data, "read", "dashboard")
    adm = cli_key(data, "admin", "ops")
    assert w["key"].startswith("clmr_") and w["prefix"] == w["key"][:12]
    d = make_daemon(data_dir=data)
    body = wav_bytes(tmp_path, "b.wav", 420)
    # once keys exist, every write needs a write key, from loopback too
    r = requests.post(d.url("/v1/tracks"), data=body, timeout=60)
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
    r = requests.post(d.url("/v1/tracks"), data=body, headers=bearer(rd["key"]), timeout=60)
    assert r.status_code == 403 and error_of(r) == "insufficient_scope", r.text
    assert 'error="insufficient_scope"' in r.headers["WWW-Authenticate"]
    r = requests.post(d.url("/v1/tracks"), data=body, headers=bearer("clmr_" + "x" * 43), timeout=60)
    assert r.status_code == 401
    r = requests.post(d.url("/v1/tracks?api_key=" + w["key"]), data=body, timeout=60)
    assert r.status_code == 401  # never in the query string
    r = requests.post(d.url("/v1/tracks"), data=body, headers=bearer(w["key"]), timeout=60)
    assert r.status_code == 201, r.text
    tid = r.json()["id"]
    # reads: open without a key, and any valid key may read
    assert requests.get(d.url("/v1/tracks/" + tid), timeout=10).status_code == 200
    assert requests.get(d.url("/v1/tracks/" + tid), headers=bearer(rd["key"]), timeout=10).status_code == 200
    # a write key cannot use the admin API; the admin key can (no admin token configured)
    assert requests.get(d.url("/v1/admin/keys"), headers=bearer(w["key"]), timeout=10).status_code == 403
    r = requests.get(d.url("/v1/admin/keys"), headers=bearer(adm["key"]), timeout=10)
    assert r.status_code == 200
    listed = r.json()["keys"]
    assert {k["name"] for k in listed} == {"nightly-ingest", "dashboard", "ops"}
    assert all("key" not in k and "hash" not in k for k in listed)
    # a key made through the admin API works at once; revoking it through the API stops it at once
    r = requests.post(d.url("/v1/admin/keys"), json={"name": "api-made", "scope": "write"},
                      headers=bearer(adm["key"]), timeout=10)
    assert r.status_code == 201, r.text
    made = r.json()["key"]
    assert made["scope"] == "write" and made["key"].startswith("clmr_")
    r = requests.delete(d.url("/v1/tracks/" + tid), headers=bearer(made["key"]), timeout=10)
    assert r.status_code == 204
    r = requests.delete(d.url("/v1/admin/keys/%d" % made["id"]), headers=bearer(adm["key"]), timeout=10)
    assert r.status_code == 200 and r.json()["key"]["revoked_at"]
    r = requests.post(d.url("/v1/tracks"), data=body, headers=bearer(made["key"]), timeout=60)
    assert r.status_code == 401
    for bad in ({"name": "x"}, {"name": "x", "scope": "root"}, {"name": "", "scope": "read"}):
        r = requests.post(d.url("/v1/admin/keys"), json=bad, headers=bearer(adm["key"]), timeout=10)
        assert r.status_code == 400, (bad, r.text)
    assert requests.delete(d.url("/v1/admin/keys/999"), headers=bearer(adm["key"]),
                           timeout=10).status_code == 404
    # a key revoked with the CLI while the daemon runs stops working within the refresh period
    r = subprocess.run([CLMRD, "keys", "revoke", str(w["id"]), "--data-dir", str(data)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    deadline = time.time() + 20
    while True:
        r = requests.post(d.url("/v1/tracks"), data=body, headers=bearer(w["key"]), timeout=60)
        if r.status_code == 401:
            break
        assert time.time() < deadline, "the revoked key still works"
        time.sleep(0.1)
    # the CLI lists the revocation; keys never reach the log
    r = subprocess.run([CLMRD, "keys", "list", "--all", "--data-dir", str(data)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "nightly-ingest" in r.stdout and w["key"] not in r.stdout
    assert d.stop() == 0
    log = open(d.log_path, encoding="utf-8", errors="replace").read()
    for k in (w["key"], rd["key"], adm["key"], made["key"]):
        assert k not in log


def test_admin_token_is_an_admin_key(make_daemon, tmp_path):
    d = make_daemon(env={"CLMRD_ADMIN_TOKEN": TOKEN})
    body = wav_bytes(tmp_path, "c.wav", 530)
    assert requests.post(d.url("/v1/tracks"), data=body, timeout=60).status_code == 401
    r = requests.post(d.url("/v1/tracks"), data=body, headers=bearer(TOKEN), timeout=60)
    assert r.status_code == 201, r.text
    r = requests.post(d.url("/v1/admin/keys"), json={"name": "r", "scope": "read"},
                      headers=bearer(TOKEN), timeout=10)
    assert r.status_code == 201


def test_require_read_key(make_daemon, tmp_path):
    data = tmp_path / "rk"
    rd = cli_key(data, "read", "reader")
    d = make_daemon("--require-read-key", "1", data_dir=data)
    assert requests.get(d.url("/v1/tags"), timeout=10).status_code == 401
    assert requests.get(d.url("/v1/tags"), headers=bearer(rd["key"]), timeout=10).status_code == 200
    for public in ("/healthz", "/readyz", "/metrics", "/v1/openapi.json"):
        assert requests.get(d.url(public), timeout=10).status_code == 200, public


def test_weak_admin_tokens_refused_at_start(tmp_path):
    for tok in ("x", "short-token-123", "change-me-to-a-long-random-string", "a" * 40):
        r = subprocess.run([CLMRD, "serve", "--model", TINY, "--data-dir", str(tmp_path / "w"),
                            "--listen", "127.0.0.1:1"], env={"CLMRD_ADMIN_TOKEN": tok, "PATH": "/usr/bin:/bin"},
                           capture_output=True, text=True, timeout=60)
        assert r.returncode != 0, tok
        assert "admin-token" in r.stderr and "refused" in r.stderr, r.stderr
        if len(tok) > 3:
            assert tok not in r.stderr, r.stderr  # the refused secret is not echoed


def raw_status(d, path, method="GET"):
    c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=10)
    c.putrequest(method, path, skip_accept_encoding=True)
    c.putheader("Content-Length", "0")
    c.endheaders()
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, body


def test_paths_with_dot_segments_are_refused(daemon):
    for path in ("/v1/admin/../v1/tags", "//v1/tags", "/v1/./tags", "/v1/tags/", "/v1/%2e%2e/tags",
                 "/v1/tracks/%2E%2E/x", "/v1/admin%2f..%2fjobs", "/v1//admin/jobs", "/v1/tags/.",
                 "/v1/%252e%252e/tags", "/v1\\tags"):
        status, body = raw_status(daemon, path)
        assert status == 400, (path, status, body)
        assert json.loads(body)["error"]["code"] == "invalid_path", path
    status, _ = raw_status(daemon, "/v1/tags")
    assert status == 200


def test_storage_bounds_through_the_api(make_daemon, tmp_path):
    """Issue 12 item 9 end to end: the tag cache keeps at most tag-cache-max-rows results (the
    oldest is recomputed), and an ingest past max-pool-bytes answers 507 and leaves no file."""
    d = make_daemon("--tag-cache-max-rows", "2", "--max-pool-bytes", "1K")
    bodies = [wav_bytes(tmp_path, "c%d.wav" % i, 250 + 40 * i) for i in range(4)]
    for b in bodies:
        r = requests.post(d.url("/v1/tag"), data=b, timeout=60)
        assert r.status_code == 200 and r.json()["cached"] is False
    assert requests.post(d.url("/v1/tag"), data=bodies[3], timeout=60).json()["cached"] is True
    assert requests.post(d.url("/v1/tag"), data=bodies[0], timeout=60).json()["cached"] is False
    r = requests.post(d.url("/v1/tracks"), data=bodies[1], timeout=60)  # local client, no keys
    assert r.status_code == 507 and error_of(r) == "storage_full", r.text
    assert requests.get(d.url("/v1/tracks"), timeout=10).json()["tracks"] == []
    assert d.stop() == 0
    assert "max-pool-bytes" in open(d.log_path, encoding="utf-8", errors="replace").read()
    pool = os.path.join(d.data_dir, "pool")
    left = [f for _, _, fs in os.walk(pool) for f in fs]
    assert left == [], left
