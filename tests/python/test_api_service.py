"""Service endpoints of the real daemon: health, readiness, metrics, OpenAPI, config, tags, models,
request ids, unknown routes and methods."""
import json
import os
import re
import time

import requests

from api_helpers import ROOT, TINY, error_of


def test_healthz_readyz(daemon):
    r = requests.get(daemon.url("/healthz"))
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    r = requests.get(daemon.url("/readyz"))
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ready" and len(body["model"]) == 16 and body["schema_version"] >= 1


def test_tags_and_models(daemon):
    tags = requests.get(daemon.url("/v1/tags")).json()
    assert len(tags["tags"]) == 50 and len(set(tags["tags"])) == 50
    models = requests.get(daemon.url("/v1/models")).json()
    assert models["active"] == tags["model"]
    active = [m for m in models["models"] if m["id"] == models["active"]]
    assert len(active) == 1 and active[0]["loaded"] is True and active[0]["status"] == "active"
    assert active[0]["n_tags"] == 50 and active[0]["embedding_dim"] > 0


def test_config_has_every_key_and_no_secret(make_daemon, tmp_path):
    token = tmp_path / "token"
    token.write_text("s3cret-token-value-Zq3kP9vX2mW8nR4tY6uB\n")
    d = make_daemon("--admin-token-file", str(token), "--queue-depth", "5")
    cfg = requests.get(d.url("/v1/config")).json()
    for key in ("listen", "data-dir", "model", "workers", "inference-threads", "queue-depth",
                "max-upload-bytes", "max-duration-s", "request-timeout-s", "connection-timeout-s",
                "connection-limit", "connection-memory-limit", "log-format", "log-level"):
        assert key in cfg, key
    assert cfg["queue-depth"] == 5 and cfg["max-upload-bytes"] == 100 * 1024 * 1024
    assert cfg["admin-token-file"] == "(set)"
    assert str(token) not in json.dumps(cfg) and "s3cret" not in json.dumps(cfg)


def test_openapi_matches_routes(daemon):
    r = requests.get(daemon.url("/v1/openapi.json"))
    assert r.status_code == 200
    served = r.json()
    with open(os.path.join(ROOT, "docs", "openapi.json")) as f:
        assert served == json.load(f)
    assert served["openapi"].startswith("3.")
    fake_id = "0" * 64
    for path, ops in served["paths"].items():
        url = path.replace("{id}", fake_id)
        for method in ops:
            if method == "parameters":
                continue
            # Every documented operation exists: never "no route" (404 with not_found for the
            # route) and never 405. Bodies are left empty, so uploads answer 400.
            r = requests.request(method.upper(), daemon.url(url), timeout=30)
            assert r.status_code != 405, (method, path)
            if r.status_code == 404:
                assert "no route" not in r.json()["error"]["message"], (method, path)
    # ...and every route the code answers is documented (probe list from the code's table).
    for path in ("/healthz", "/readyz", "/metrics", "/v1/openapi.json", "/v1/config", "/v1/tags",
                 "/v1/models", "/v1/tag", "/v1/tracks", "/v1/tracks/{id}",
                 "/v1/tracks/{id}/similar", "/v1/similar", "/v1/search", "/v1/tracks/{id}/audio",
                 "/v1/tracks/{id}/embedding", "/v1/export"):
        assert path in served["paths"], path


def test_unknown_route_and_method(daemon):
    r = requests.get(daemon.url("/v1/nope"))
    assert r.status_code == 404 and error_of(r) == "not_found"
    r = requests.get(daemon.url("/v1/tracks/" + "a" * 64 + "/other"))
    assert r.status_code == 404
    for method, path, allow in (("PUT", "/v1/tag", "POST"), ("GET", "/v1/search", "POST"),
                                ("DELETE", "/v1/tracks", "GET, HEAD, POST"),
                                ("POST", "/healthz", "GET, HEAD"),
                                ("POST", "/v1/tracks/" + "a" * 64, "GET, HEAD, PATCH, DELETE")):
        r = requests.request(method, daemon.url(path))
        assert r.status_code == 405, (method, path)
        assert r.headers["Allow"] == allow
        assert error_of(r) == "method_not_allowed"


def test_request_id(daemon):
    r = requests.get(daemon.url("/healthz"), headers={"X-Request-Id": "abc-123.x"})
    assert r.headers["X-Request-Id"] == "abc-123.x"
    r = requests.get(daemon.url("/healthz"), headers={"X-Request-Id": "bad id\twith spaces"})
    rid = r.headers["X-Request-Id"]
    assert rid != "bad id\twith spaces" and re.fullmatch(r"[0-9a-f]{16}", rid)
    r2 = requests.get(daemon.url("/healthz"))
    assert r2.headers["X-Request-Id"] != rid
    # the request id is on the access log line
    requests.get(daemon.url("/v1/tags"), headers={"X-Request-Id": "trace-me-42"})
    # the access line is written once the answer has been sent: poll for it (with a deadline)
    deadline = time.time() + 30
    while "trace-me-42" not in daemon.logs():
        assert time.time() < deadline, daemon.logs()
        time.sleep(0.02)


def test_metrics(daemon):
    requests.get(daemon.url("/v1/tags"))
    requests.get(daemon.url("/v1/nope"))
    text = requests.get(daemon.url("/metrics")).text
    for name in ("clmrd_http_requests_total", "clmrd_http_request_duration_seconds_bucket",
                 "clmrd_queue_depth", "clmrd_decode_seconds_sum", "clmrd_inference_seconds_sum",
                 "clmrd_cache_hits_total", "clmrd_catalogue_tracks"):
        assert name in text, name
    assert daemon.metric("clmrd_http_requests_total", route="/v1/tags", status="200") >= 1
    assert daemon.metric("clmrd_http_requests_total", route="unknown", status="404") >= 1


def test_json_logs_and_secrets(make_daemon, tmp_path):
    d = make_daemon("--log-format", "json", "--log-level", "debug")
    requests.get(d.url("/v1/tags?token=hunter2"), headers={"Authorization": "Bearer hunter2",
                                                            "X-Request-Id": "json-line"})
    requests.get(d.url("/healthz"))
    lines = [json.loads(l) for l in d.logs().splitlines() if l.startswith("{")]
    assert lines and all({"ts", "level", "msg"} <= set(l) for l in lines)
    assert any(l.get("request_id") == "json-line" for l in lines)
    assert "hunter2" not in d.logs()


def test_bad_configuration_names_the_key(tmp_path):
    import subprocess
    from api_helpers import CLMRD
    for args, key in ((["--workers", "0"], "workers"), (["--listen", "nohost"], "listen"),
                      (["--log-format", "xml"], "log-format"), (["--max-upload-bytes", "1"], "max-upload-bytes"),
                      (["--model", str(tmp_path / "missing.safetensors")], "model")):
        r = subprocess.run([CLMRD, "serve", "--model", TINY, "--data-dir", str(tmp_path / "d"), *args],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode != 0, args
        assert key in r.stderr, (args, r.stderr)
    env = dict(os.environ, CLMRD_QUEUE_DEPTH="-4")
    r = subprocess.run([CLMRD, "serve", "--model", TINY], capture_output=True, text=True, env=env, timeout=30)
    assert r.returncode == 2 and "CLMRD_QUEUE_DEPTH" in r.stderr and "queue-depth" in r.stderr
    r = subprocess.run([CLMRD, "serve", "--help"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and "--max-upload-bytes" in r.stdout and "CLMRD_LISTEN" in r.stdout
