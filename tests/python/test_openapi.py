"""docs/openapi.json: valid OpenAPI 3.0.3 by a real validator (@apidevtools/swagger-parser, from
the npm registry, installed by scripts/install-deps.sh into tests/tools/openapi), and the real
daemon's responses match its schemas: every status, field and type the daemon sends is documented.
Also the API polish of issue 17 over HTTP: unknown query parameters, CORS, /v1/search errors,
413/422 messages that name the setting, similarity in hits, per-chunk tag names, warnings."""
import json
import os
import shutil
import subprocess

import pytest
import requests

from api_helpers import make_audio
from openapi_check import DOC_PATH, ROOT, check_response, load_doc

TOOLS = os.path.join(ROOT, "tests", "tools", "openapi")


def validate(path):
    if not os.path.isdir(os.path.join(TOOLS, "node_modules", "@apidevtools", "swagger-parser")):
        pytest.fail("the OpenAPI validator is not installed: run scripts/install-deps.sh "
                    "(npm ci --prefix tests/tools/openapi)")
    node = shutil.which("node") or shutil.which("nodejs")
    assert node, "node is not installed: run scripts/install-deps.sh"
    return subprocess.run([node, os.path.join(TOOLS, "validate.js"), path], capture_output=True,
                          text=True, timeout=120)


def test_document_is_valid_openapi_3_0_3():
    r = validate(DOC_PATH)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith("valid: ") and "OpenAPI 3.0.3" in r.stdout


def test_the_validator_is_real(tmp_path):
    """The mistake the issue found (a description inside an octet-stream content entry) fails."""
    doc = load_doc()
    content = doc["paths"]["/v1/tag"]["post"]["requestBody"]["content"]["application/octet-stream"]
    content["description"] = "the audio file"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    r = validate(str(bad))
    assert r.returncode == 1 and "application~1octet-stream must NOT have additional properties" in r.stderr


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("oa")
    full = make_audio(d / "full.flac", 20.0, 440, extra=("-ac", "2"))
    with open(full, "rb") as f:
        head = f.read(40000)
    (d / "trunc.flac").write_bytes(head)
    return {"a": make_audio(d / "a.wav", 4.0, 300), "b": make_audio(d / "b.mp3", 3.0, 500),
            "c": make_audio(d / "c.ogg", 3.0, 700, extra=("-c:a", "libvorbis")),
            "trunc": str(d / "trunc.flac"), "long": make_audio(d / "long.flac", 70.0, 200, rate=8000)}


def body(path):
    with open(path, "rb") as f:
        return f.read()


def test_real_responses_match_the_document(daemon, files):
    doc = load_doc()
    seen, problems = [], []

    def call(method, path, **kw):
        r = requests.request(method, daemon.url(path), timeout=120, **kw)
        seen.append((method, path.split("?")[0], r.status_code))
        problems.extend(check_response(doc, method, path.split("?")[0], r))
        return r

    for p in ("/healthz", "/readyz", "/v1/config", "/v1/tags", "/v1/models", "/v1/openapi.json"):
        call("GET", p)
    t = call("POST", "/v1/tag?top=5&per_chunk=true&embedding=true", data=body(files["a"])).json()
    call("POST", "/v1/tag?top=5", data=body(files["a"]))  # cached
    call("POST", "/v1/tag", data=body(files["trunc"]))
    created = call("POST", "/v1/tracks", files={"file": body(files["b"])}, data={"title": "T", "artist": "A"})
    call("POST", "/v1/tracks?title=x", data=body(files["c"]))
    call("POST", "/v1/tracks", data=body(files["b"]))  # 200: already there
    tid = created.json()["id"]
    call("GET", "/v1/tracks?limit=1")
    call("GET", "/v1/tracks/" + tid)
    call("GET", "/v1/tracks/%s/similar?k=3" % tid)
    call("POST", "/v1/similar?k=2", data=body(files["a"]))
    call("POST", "/v1/search", json={"embedding": t["embedding"], "k": 2})
    # errors
    call("POST", "/v1/tag?tpo=5", data=body(files["a"]))               # 400 unknown parameter
    call("POST", "/v1/search")                                          # 400 empty body
    call("POST", "/v1/tag", data=b"<html>not audio</html>")             # 415
    call("POST", "/v1/tag", data=body(files["long"]))                   # 422 too long
    call("POST", "/v1/search", data=b"x" * (2 << 20))                   # 413
    call("GET", "/v1/tracks/" + "0" * 64)                               # 404
    call("DELETE", "/v1/tracks/nothex")                                 # 400
    call("DELETE", "/v1/tracks/" + tid)                                 # 204
    statuses = {s for _, _, s in seen}
    assert {200, 201, 204, 400, 404, 413, 415, 422} <= statuses, seen
    assert not problems, "\n".join(problems)


def test_documented_query_parameters_are_the_accepted_ones(daemon, files):
    """For every operation: a parameter the document does not list is refused with 400 naming it
    and exactly the documented ones (the route table and the document agree)."""
    doc = load_doc()
    tid = requests.post(daemon.url("/v1/tracks"), data=body(files["a"]), timeout=120).json()["id"]
    checked = 0
    for tmpl, ops in doc["paths"].items():
        if tmpl.startswith("/v1/admin"):
            continue  # needs a token; the same table covers it (tested in test_api_admin)
        for method, op in ops.items():
            if method not in ("get", "post", "delete", "patch", "put"):
                continue
            documented = [p["name"] for p in op.get("parameters", []) if p.get("in") == "query"]
            path = tmpl.replace("{id}", tid)
            r = requests.request(method.upper(), daemon.url(path), params={"bogus_param": "1"},
                                 data=b"x" if method == "post" else None, timeout=60)
            assert r.status_code == 400, ("%s %s answered %d to an unknown query parameter: give the "
                                          "route its row in src/http/query.c (%s)"
                                          % (method.upper(), tmpl, r.status_code, r.text[:200]))
            err = r.json()["error"]
            assert err["code"] == "unknown_parameter" and "'bogus_param'" in err["message"]
            if documented:
                accepted = err["message"].split("accepted: ", 1)[1]
                assert accepted.split(", ") == documented, (tmpl, accepted, documented)
            else:
                assert "takes no query parameters" in err["message"]
            checked += 1
    assert checked >= 14


def test_post_search_refuses_k_in_the_query(daemon):
    r = requests.post(daemon.url("/v1/search?k=2"), json={"embedding": [1.0] * 16}, timeout=30)
    assert r.status_code == 400
    assert r.json()["error"]["message"] == \
        "unknown query parameter 'k': POST /v1/search takes no query parameters"
    r = requests.get(daemon.url("/v1/tracks?tpo=5"), timeout=30)
    assert r.status_code == 400 and "accepted: limit, cursor" in r.json()["error"]["message"]


def test_search_body_errors_are_clear(daemon):
    r = requests.post(daemon.url("/v1/search"), timeout=30)
    assert r.status_code == 400 and r.json()["error"]["code"] == "empty_body"
    assert '"embedding"' in r.json()["error"]["message"]
    r = requests.post(daemon.url("/v1/search"), data=b'{"embedding": [1,', timeout=30)
    assert r.status_code == 400 and r.json()["error"]["message"].startswith("the body is not valid JSON (line 1")
    r = requests.post(daemon.url("/v1/search"), data=b"[1, 2]", timeout=30)
    assert r.status_code == 400 and "must be a JSON object" in r.json()["error"]["message"]
    r = requests.post(daemon.url("/v1/search"), data=b"x" * (2 << 20), timeout=30)
    assert r.status_code == 413
    msg = r.json()["error"]["message"]
    assert "POST /v1/search" in msg and "'max-upload-bytes' does not apply" in msg


def test_upload_limits_name_their_settings(daemon, files):
    r = requests.post(daemon.url("/v1/tag"), data=body(files["long"]), timeout=120)
    assert r.status_code == 422 and "configuration key 'max-duration-s'" in r.json()["error"]["message"]
    r = requests.post(daemon.url("/v1/tag"), data=b"x" * (3 << 20), timeout=60)
    assert r.status_code == 413 and "configuration key 'max-upload-bytes'" in r.json()["error"]["message"]


def test_field_meanings(daemon, files):
    a = requests.post(daemon.url("/v1/tracks"), data=body(files["a"]), timeout=120).json()
    requests.post(daemon.url("/v1/tracks"), data=body(files["b"]), timeout=120)
    hits = requests.get(daemon.url("/v1/tracks/%s/similar?k=5" % a["id"]), timeout=30).json()["results"]
    assert hits and all(-1 - 1e-6 <= h["similarity"] <= 1 + 1e-6 and h["score"] == h["similarity"] for h in hits)
    models = requests.get(daemon.url("/v1/models"), timeout=30).json()
    t = requests.post(daemon.url("/v1/tag?top=3&per_chunk=1"), data=body(files["c"]) + b"", timeout=120).json()
    assert t["model"] == models["active"]  # an id, as in the CLI's JSON
    for c in t["per_chunk"]:
        assert len(c["tags"]) == 3 and {"tag", "score"} <= set(c["tags"][0])
        assert [x["score"] for x in c["tags"]] == pytest.approx(sorted(c["scores"], reverse=True)[:3], abs=1e-6)


def test_truncated_upload_warns(daemon, files, tmp_path):
    # bytes no earlier test sent: warnings come with a fresh decode, not from the cache
    r = requests.post(daemon.url("/v1/tag"), data=body(files["trunc"])[:36000], timeout=120)
    assert r.status_code == 200, r.text
    w = {x["code"]: x["message"] for x in r.json()["warnings"]}
    assert "truncated" in w and "of the 20.0 s the container declares" in w["truncated"]
    fresh = make_audio(tmp_path / "fresh.flac", 5.0, 1234)
    ok = requests.post(daemon.url("/v1/tag"), data=body(fresh), timeout=120).json()
    assert ok["cached"] is False and ok["warnings"] == []
    again = requests.post(daemon.url("/v1/tag"), data=body(fresh), timeout=120).json()
    assert again["cached"] is True and "warnings" not in again  # documented: fresh decodes only


def test_cors(make_daemon):
    d = make_daemon("--cors-origins", "http://localhost:3000, https://app.example")
    pre = requests.options(d.url("/v1/tag"), headers={"Origin": "https://app.example",
                                                      "Access-Control-Request-Method": "POST",
                                                      "Access-Control-Request-Headers": "content-type"}, timeout=30)
    assert pre.status_code == 204
    assert pre.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert "POST" in pre.headers["Access-Control-Allow-Methods"]
    assert "Authorization" in pre.headers["Access-Control-Allow-Headers"]
    assert pre.headers["Vary"] == "Origin"
    r = requests.get(d.url("/v1/tags"), headers={"Origin": "http://localhost:3000"}, timeout=30)
    assert r.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
    assert "X-Request-Id" in r.headers["Access-Control-Expose-Headers"]
    # other origins: no CORS headers, and the preflight is refused with the key to set
    r = requests.get(d.url("/v1/tags"), headers={"Origin": "http://evil.example"}, timeout=30)
    assert r.status_code == 200 and "Access-Control-Allow-Origin" not in r.headers
    pre = requests.options(d.url("/v1/tag"), headers={"Origin": "http://evil.example",
                                                      "Access-Control-Request-Method": "POST"}, timeout=30)
    assert pre.status_code == 403 and pre.json()["error"]["code"] == "cors_origin_refused"
    assert "cors-origins" in pre.json()["error"]["message"]
    assert requests.get(d.url("/v1/config"), timeout=10).json()["cors-origins"] == \
        "http://localhost:3000, https://app.example"


def test_cors_off_by_default_and_bad_origins_refused_at_start(daemon, make_daemon):
    pre = requests.options(daemon.url("/v1/tag"), headers={"Origin": "http://localhost:3000",
                                                           "Access-Control-Request-Method": "POST"}, timeout=30)
    assert pre.status_code == 403 and "cross-origin requests are off" in pre.json()["error"]["message"]
    r = requests.get(daemon.url("/healthz"), headers={"Origin": "http://localhost:3000"}, timeout=30)
    assert "Access-Control-Allow-Origin" not in r.headers
    d = make_daemon("--cors-origins", "localhost:3000/app", start=False)
    with pytest.raises(RuntimeError, match="configuration key 'cors-origins': 'localhost:3000/app' is not an origin"):
        d.start(timeout=30)
    d.proc = None
    d.log.close()
