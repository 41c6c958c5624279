"""The tag policy (clmr/tag_policy.h) end to end: a real model file with a "tag_policy" metadata
entry, the real daemon over loopback and the real CLI.

Untrusted tags are hidden from POST /v1/tag (fresh and cached answers), the ingest answer and
GET /v1/tracks/{id} unless ?all=1, every tag carries trusted/threshold/decision, decisions follow
the thresholds, /v1/tags lists the policy, a bad ?all= is a 400 naming it, a model without a policy
shows every tag with null decisions, and a malformed policy stops the daemon and the CLI from using
the model. The policy model is the tiny fixture with only its metadata changed
(tools/eval/tag_policy.write_with_metadata), so its scores must equal the fixture's exactly.
"""
import json
import os
import subprocess
import sys
import time

import pytest
import requests

from api_helpers import CLMRD, ROOT, TINY, error_of, free_port

sys.path.insert(0, os.path.join(ROOT, "tools", "eval"))
from tag_policy import write_with_metadata  # noqa: E402

POLICY = {"version": 1, "trust_rule": "test", "threshold_rule": "test", "tags": {
    "drums": {"trusted": True, "threshold": 0.0, "evidence": "always yes"},
    "guitar": {"trusted": True, "threshold": 1.0, "evidence": "never yes (scores < 1)"},
    "piano": {"trusted": True, "threshold": None, "evidence": "no threshold"},
    "no voice": {"trusted": False, "threshold": 0.5, "evidence": "untrusted"},
}}
TRUSTED = {"drums", "guitar", "piano"}


@pytest.fixture(scope="module")
def policy_model(tmp_path_factory):
    d = tmp_path_factory.mktemp("policy")
    path = str(d / "tiny-policy.safetensors")
    write_with_metadata(TINY, path, "tag_policy", json.dumps(POLICY))
    return path


@pytest.fixture(scope="module")
def pdaemon(tmp_path_factory, policy_model):
    from api_helpers import Daemon
    d = Daemon(tmp_path_factory.mktemp("pdata") / "data", "--model", policy_model, "--workers", "2").start()
    yield d
    assert d.stop() == 0, d.logs()


def post(d, path, filename, **params):
    with open(filename, "rb") as f:
        return requests.post(d.url(path), data=f.read(), params=params, timeout=60)


def check_entries(tags, trusted_only):
    for t in tags:
        assert set(t) == {"tag", "score", "trusted", "threshold", "decision"}, t
        assert t["trusted"] == (t["tag"] in TRUSTED)
        want_thr = POLICY["tags"].get(t["tag"], {}).get("threshold")
        assert t["threshold"] == want_thr
        assert t["decision"] == (None if want_thr is None else t["score"] >= want_thr)
    if trusted_only:
        assert {t["tag"] for t in tags} == TRUSTED


def test_tag_hides_untrusted_unless_all(pdaemon, daemon, audio):
    r = post(pdaemon, "/v1/tag", audio["wav"])
    assert r.status_code == 200, r.text
    body = r.json()
    check_entries(body["tags"], trusted_only=True)
    assert body["tags_hidden"] == 47
    by = {t["tag"]: t for t in body["tags"]}
    assert by["drums"]["decision"] is True and by["guitar"]["decision"] is False
    assert by["piano"]["decision"] is None
    cached = post(pdaemon, "/v1/tag", audio["wav"]).json()
    assert cached["cached"] is True and cached["tags"] == body["tags"] and cached["tags_hidden"] == 47
    full = post(pdaemon, "/v1/tag", audio["wav"], all=1).json()
    assert len(full["tags"]) == 50 and full["tags_hidden"] == 0
    check_entries(full["tags"], trusted_only=False)
    assert sum(not t["trusted"] for t in full["tags"]) == 47
    # same tensors: the policy changes what is shown, never the scores
    plain = post(daemon, "/v1/tag", audio["wav"]).json()
    assert {t["tag"]: t["score"] for t in plain["tags"]} == {t["tag"]: t["score"] for t in full["tags"]}
    top = post(pdaemon, "/v1/tag", audio["wav"], top=2).json()
    assert [t["tag"] for t in top["tags"]] == [t["tag"] for t in body["tags"]][:2]
    for bad in ("yes", "2"):
        r = post(pdaemon, "/v1/tag", audio["wav"], all=bad)
        assert r.status_code == 400 and error_of(r) == "invalid_argument" and "'all'" in r.json()["error"]["message"]


def test_model_without_policy_shows_everything(daemon, audio):
    body = post(daemon, "/v1/tag", audio["mp3"]).json()
    assert len(body["tags"]) == 50 and body["tags_hidden"] == 0
    assert all(t["trusted"] is True and t["threshold"] is None and t["decision"] is None for t in body["tags"])
    tags = requests.get(daemon.url("/v1/tags"), timeout=10).json()
    assert tags["has_tag_policy"] is False and all(e["trusted"] for e in tags["tag_policy"])


def test_tracks_and_vocabulary_follow_the_policy(pdaemon, audio):
    r = post(pdaemon, "/v1/tracks", audio["flac"])
    assert r.status_code == 201, r.text
    check_entries(r.json()["tags"], trusted_only=True)
    tid = r.json()["id"]
    got = requests.get(pdaemon.url("/v1/tracks/" + tid), timeout=10).json()
    check_entries(got["tags"], trusted_only=True)
    assert got["tags_hidden"] == 47
    allt = requests.get(pdaemon.url("/v1/tracks/" + tid), params={"all": "true"}, timeout=10).json()
    assert len(allt["tags"]) == 50 and allt["tags_hidden"] == 0
    bad = requests.get(pdaemon.url("/v1/tracks/" + tid), params={"all": "maybe"}, timeout=10)
    assert bad.status_code == 400 and error_of(bad) == "invalid_argument"
    r = post(pdaemon, "/v1/tracks", audio["ogg"], all="maybe")
    assert r.status_code == 400 and error_of(r) == "invalid_argument"
    voc = requests.get(pdaemon.url("/v1/tags"), timeout=10).json()
    assert voc["has_tag_policy"] is True and len(voc["tag_policy"]) == 50
    pol = {e["tag"]: e for e in voc["tag_policy"]}
    assert {t for t, e in pol.items() if e["trusted"]} == TRUSTED
    assert pol["no voice"]["threshold"] == 0.5 and pol["vocal"]["threshold"] is None


def test_malformed_policy_is_refused(tmp_path, audio):
    bad = str(tmp_path / "bad.safetensors")
    write_with_metadata(TINY, bad, "tag_policy", json.dumps({"version": 1, "tags": {"gutiar": {"trusted": True}}}))
    r = subprocess.run([CLMRD, "tag", "--model", bad, audio["wav"]], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "gutiar" in r.stderr and "tag_policy" in r.stderr
    r = subprocess.run([CLMRD, "serve", "--model", bad, "--data-dir", str(tmp_path / "d"),
                        "--listen", "127.0.0.1:%d" % free_port()], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "gutiar" in (r.stdout + r.stderr)


def test_cli_tag_follows_the_policy(policy_model, audio):
    def run(*args):
        r = subprocess.run([CLMRD, "tag", "--model", policy_model, *args, audio["wav"]],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        return r.stdout
    o = json.loads(run("--json"))
    check_entries(o["tags"], trusted_only=True)
    assert o["tags_hidden"] == 47
    a = json.loads(run("--json", "--all"))
    assert len(a["tags"]) == 50 and a["tags_hidden"] == 0
    check_entries(a["tags"], trusted_only=False)
    text = run()
    assert "47 tags not trusted on real audio hidden" in text
    assert "no voice" not in text
    assert "(untrusted)" in run("--all", "--top", "50")


def test_fine_tuned_child_keeps_the_parents_policy(make_daemon, policy_model, tmp_path):
    """A fine-tuning job of a model with a policy writes a child with the same policy (the
    distillation keeps its tags close to the parent's): hidden tags stay hidden after activation."""
    from api_helpers import make_audio
    from test_api_admin import AUTH, admin_daemon, ingest, wait_job
    from tag_policy import read_header
    songs = [make_audio(tmp_path / ("s%d.wav" % i), 3.0 + 0.5 * (i % 3), 150 + 83 * i, rate=22050)
             for i in range(6)]
    d = admin_daemon(make_daemon, "--model", policy_model)
    ingest(d, songs)
    r = requests.post(d.url("/v1/admin/finetune"), json={"steps": 2, "batch_size": 2, "tracks": "all", "seed": 1},
                      headers=AUTH, timeout=10)
    assert r.status_code == 202, r.text
    job = wait_job(d, r.json()["job"]["id"])
    assert job["state"] == "succeeded", job
    child = os.path.join(d.data_dir, "models", "job-%d.safetensors" % job["id"])
    meta = read_header(child)[0]["__metadata__"]
    assert json.loads(meta["tag_policy"]) == POLICY and meta["parent_id"] != job["result_model_id"]
    r = requests.post(d.url("/v1/admin/models/%s/activate" % job["result_model_id"]), headers=AUTH, timeout=30)
    assert r.status_code in (200, 202), r.text
    deadline = time.time() + 60
    while requests.get(d.url("/v1/tags"), timeout=10).json()["model"] != job["result_model_id"]:
        assert time.time() < deadline, "the child model never became active"
        time.sleep(0.1)
    body = post(d, "/v1/tag", songs[0]).json()
    assert body["model"] == job["result_model_id"]
    check_entries(body["tags"], trusted_only=True)
