"""The admin API through the real daemon (tiny model, generated tracks): token checks, fine-tuning
jobs (completion with finite decreasing loss, 409, 422, cancel, restart), activation while tag
requests run, re-embedding and the search model switch, rollback. Jobs use 2 pairs per step on
the tiny model so each runs in seconds."""
import math
import os
import threading
import time

import pytest
import requests

from api_helpers import make_audio

TOKEN = "s3cret-admin-token-0123456789-Zq3kP9vX2m"
AUTH = {"Authorization": "Bearer " + TOKEN}


def admin_daemon(make_daemon, *args, **kw):
    env = dict(kw.pop("env", {}) or {})
    env["CLMRD_ADMIN_TOKEN"] = TOKEN
    return make_daemon("--finetune-min-tracks", "4", *args, env=env, **kw)


@pytest.fixture(scope="module")
def songs(tmp_path_factory):
    d = tmp_path_factory.mktemp("songs")
    return [make_audio(d / ("s%d.wav" % i), 3.0 + 0.5 * (i % 3), 150 + 83 * i, rate=22050)
            for i in range(6)]


def ingest(d, paths):
    for p in paths:
        with open(p, "rb") as f:
            # the admin token counts as an admin key, which may also write
            r = requests.post(d.url("/v1/tracks"), data=f.read(), headers=AUTH, timeout=60)
        assert r.status_code in (200, 201), r.text


def wait_job(d, job_id, states=("succeeded", "failed", "cancelled"), timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        j = requests.get(d.url("/v1/admin/jobs/%d" % job_id), headers=AUTH, timeout=10).json()["job"]
        if j["state"] in states:
            return j
        time.sleep(0.1)
    raise AssertionError("job %d did not reach %s: %s" % (job_id, states, j))


def wait_search_switch(d, model_id, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        m = requests.get(d.url("/v1/models"), timeout=10).json()
        # search never moves to the new model before its embeddings are complete
        if m["reembedding"]["state"] == "running":
            assert m["search"] != model_id, m
        if m["search"] == model_id and m["reembedding"]["state"] == "complete":
            return m
        time.sleep(0.1)
    raise AssertionError("search did not switch to %s: %s" % (model_id, m))


def test_admin_disabled_without_token(make_daemon):
    d = make_daemon()
    for method, path in [("GET", "/v1/admin/jobs"), ("POST", "/v1/admin/finetune")]:
        r = requests.request(method, d.url(path), headers=AUTH, timeout=10)
        assert r.status_code == 404, r.text


def test_auth_failures_and_no_token_in_logs(make_daemon):
    d = admin_daemon(make_daemon)
    r = requests.get(d.url("/v1/admin/jobs"), timeout=10)
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    assert r.headers.get("WWW-Authenticate", "").startswith("Bearer")
    r = requests.get(d.url("/v1/admin/jobs"), headers={"Authorization": "Bearer wrong"}, timeout=10)
    assert r.status_code == 401
    r = requests.get(d.url("/v1/admin/jobs"), headers={"Authorization": "Basic " + TOKEN}, timeout=10)
    assert r.status_code == 401
    # a prefix of the right token is wrong too (length is part of the comparison)
    r = requests.get(d.url("/v1/admin/jobs"), headers={"Authorization": "Bearer " + TOKEN[:-1]},
                     timeout=10)
    assert r.status_code == 401
    # in the query string: refused even with the right header
    r = requests.get(d.url("/v1/admin/jobs?token=" + TOKEN), headers=AUTH, timeout=10)
    assert r.status_code == 401
    r = requests.get(d.url("/v1/admin/jobs?access_token=" + TOKEN), timeout=10)
    assert r.status_code == 401
    r = requests.get(d.url("/v1/admin/jobs"), headers=AUTH, timeout=10)
    assert r.status_code == 200 and r.json() == {"jobs": []}
    assert requests.get(d.url("/v1/config"), timeout=10).json()["admin-token"] == "(set)"
    d.stop()
    assert TOKEN not in open(d.log_path, encoding="utf-8", errors="replace").read()


def test_token_file(make_daemon, tmp_path):
    tf = tmp_path / "tok"
    tf.write_text("filetoken123-Zq3kP9vX2mW8nR4tY6uB1cD5\n")
    d = make_daemon("--admin-token-file", str(tf))
    assert requests.get(d.url("/v1/admin/jobs"), headers={"Authorization": "Bearer filetoken123-Zq3kP9vX2mW8nR4tY6uB1cD5"},
                        timeout=10).status_code == 200
    assert requests.get(d.url("/v1/admin/jobs"), headers=AUTH, timeout=10).status_code == 401


def test_validation_and_too_little_audio(make_daemon, songs):
    d = admin_daemon(make_daemon)
    for body, field in [({"steps": 0}, "steps"), ({"batch_size": "x"}, "batch_size"),
                        ({"learning_rate": -1}, "learning_rate"), ({"tracks": "some"}, "tracks"),
                        ({"bogus": 1}, "bogus")]:
        r = requests.post(d.url("/v1/admin/finetune"), json=body, headers=AUTH, timeout=10)
        assert r.status_code == 400, r.text
        assert field in r.json()["error"]["message"]
    r = requests.post(d.url("/v1/admin/finetune"), data=b"{not json", headers=AUTH, timeout=10)
    assert r.status_code == 400
    ingest(d, songs[:2])
    r = requests.post(d.url("/v1/admin/finetune"), json={"tracks": "all"}, headers=AUTH, timeout=10)
    assert r.status_code == 422, r.text
    assert "2 more tracks needed" in r.json()["error"]["message"]


def test_job_runs_activation_reembedding_and_rollback(make_daemon, songs, tmp_path):
    labels = tmp_path / "labels.jsonl"
    labels.write_text("".join('{"path": "%s", "tags": ["%s"]}\n' % (p, "guitar" if i < 3 else "rock")
                              for i, p in enumerate(songs)))
    # fp32: the loss-trend check below is one seeded 6-step trajectory at batch 2, measured in
    # fp32; in mixed bf16 (train-precision auto on a bf16 CPU) that short trajectory differs and
    # its halves came out equal (1.909 vs 1.903). The other job tests here run with the default.
    d = admin_daemon(make_daemon, "--finetune-eval-labels", str(labels), "--train-precision",
                     "fp32")
    ingest(d, songs)
    base = requests.get(d.url("/v1/models"), timeout=10).json()["active"]
    # one job at a time: 409 while a (long) job runs
    r = requests.post(d.url("/v1/admin/finetune"), json={"steps": 100000, "batch_size": 2,
                                                         "tracks": "all"}, headers=AUTH, timeout=10)
    assert r.status_code == 202, r.text
    long_id = r.json()["job"]["id"]
    r2 = requests.post(d.url("/v1/admin/finetune"), json={"tracks": "all"}, headers=AUTH, timeout=10)
    assert r2.status_code == 409, r2.text
    assert requests.delete(d.url("/v1/admin/jobs/%d" % long_id), headers=AUTH,
                           timeout=10).status_code == 202
    assert wait_job(d, long_id)["state"] == "cancelled"
    r = requests.post(d.url("/v1/admin/finetune"),
                      json={"steps": 6, "batch_size": 2, "learning_rate": 1e-3, "tracks": "all",
                            "seed": 3, "checkpoint_every": 2},
                      headers=AUTH, timeout=10)
    assert r.status_code == 202, r.text
    job = r.json()["job"]
    assert job["state"] in ("queued", "running") and job["steps"] == 6
    j = wait_job(d, job["id"])
    assert j["state"] == "succeeded", j
    assert j["step"] == 6 and j["result_model_id"]
    losses = j["losses"]
    assert len(losses) == 6
    total = [x["loss"] for x in losses]
    assert all(math.isfinite(x) for x in total)
    assert all(math.isfinite(x["contrastive"]) and math.isfinite(x["distillation"]) for x in losses)
    assert all(x["distillation"] >= 0 for x in losses)
    # decreasing: the mean of the last half is below the mean of the first half
    assert sum(total[3:]) / 3 < sum(total[:3]) / 3, total
    assert os.path.exists(os.path.join(d.data_dir, "jobs", str(job["id"]), "checkpoint.ckpt"))
    new_id = j["result_model_id"]
    models = requests.get(d.url("/v1/models"), timeout=10).json()
    entry = [m for m in models["models"] if m["id"] == new_id][0]
    assert entry["status"] == "candidate" and entry["parent_id"] == base
    meta = entry["metadata"]
    assert meta["parent"] == base and meta["steps"] == 6
    for k in ("tag_drift", "top5_overlap", "retrieval_top1", "parent_retrieval_top1"):
        assert math.isfinite(meta["metrics"][k])
    assert 0 <= meta["metrics"]["tag_drift"] <= 1
    assert isinstance(meta["gate"]["pass"], bool)
    # the labelled evaluation set: ROC-AUC / PR-AUC of both models, in [0, 1]
    for k in ("roc_auc", "pr_auc", "parent_roc_auc", "parent_pr_auc"):
        assert 0 <= meta["metrics"][k] <= 1, meta
    assert isinstance(meta["gate"]["roc_auc_ok"], bool)
    assert os.path.exists(os.path.join(d.data_dir, "models", "job-%d.safetensors" % job["id"]))

    # activation while tag requests run: none fails
    errors, done, answered = [], threading.Event(), []

    def tagger(path):
        with open(path, "rb") as f:
            data = f.read()
        n = 0
        while not done.is_set() or n < 3:
            # a fresh upload each time (distinct bytes) so the cache does not answer
            # per_chunk answers are never cached: every request runs inference
            r = requests.post(d.url("/v1/tag?per_chunk=true"), data=data, timeout=60)
            if r.status_code != 200:
                errors.append((r.status_code, r.text))
            answered.append(1)
            n += 1

    def wait_answers(k, timeout=60):
        deadline = time.time() + timeout
        while len(answered) < k:
            assert time.time() < deadline, "the tag requests did not get answers"
            time.sleep(0.02)

    threads = [threading.Thread(target=tagger, args=(p,)) for p in songs[:2]]
    for t in threads:
        t.start()
    wait_answers(2)  # both taggers are running before the activation
    r = requests.post(d.url("/v1/admin/models/%s/activate" % new_id), headers=AUTH, timeout=30)
    assert r.status_code == 200, r.text
    st = r.json()
    assert st["active"] == new_id and st["reembedding"]["model"] == new_id
    if st["reembedding"]["state"] == "running":
        assert st["search"] == base, st
    wait_answers(len(answered) + 4)  # requests keep succeeding across the switch
    done.set()
    for t in threads:
        t.join()
    assert errors == []
    m = wait_search_switch(d, new_id)
    assert m["reembedding"]["done"] == m["reembedding"]["total"] == len(songs)
    # tags now come from the new model, and search answers with it
    with open(songs[0], "rb") as f:
        r = requests.post(d.url("/v1/tag"), data=f.read(), timeout=60)
    assert r.json()["model"] == new_id
    tid = r.json()["id"]
    r = requests.get(d.url("/v1/tracks/%s/similar?k=3" % tid), timeout=10)
    assert r.status_code == 200 and r.json()["model"] == new_id, r.text
    assert len(r.json()["results"]) == 3

    # the activation survives a restart
    assert d.stop() == 0
    d = admin_daemon(make_daemon, data_dir=d.data_dir)
    m = requests.get(d.url("/v1/models"), timeout=10).json()
    assert m["active"] == new_id and m["search"] == new_id, m
    r = requests.get(d.url("/v1/tracks/%s/similar?k=3" % tid), timeout=10)
    assert r.status_code == 200 and r.json()["model"] == new_id

    # rollback to the base model
    r = requests.post(d.url("/v1/admin/models/%s/rollback-to" % new_id), headers=AUTH, timeout=30)
    assert r.status_code == 409  # the new model is active, not retired
    r = requests.post(d.url("/v1/admin/models/%s/rollback-to" % base), headers=AUTH, timeout=30)
    assert r.status_code == 200, r.text
    m = wait_search_switch(d, base)
    assert m["active"] == base
    r = requests.get(d.url("/v1/tracks/%s/similar?k=3" % tid), timeout=10)
    assert r.json()["model"] == base
    r = requests.post(d.url("/v1/admin/models/nosuchmodel/activate"), headers=AUTH, timeout=10)
    assert r.status_code == 404


def test_cancel_keeps_checkpoint(make_daemon, songs):
    d = admin_daemon(make_daemon)
    ingest(d, songs)
    r = requests.post(d.url("/v1/admin/finetune"),
                      json={"steps": 100000, "batch_size": 2, "tracks": "all", "checkpoint_every": 1000},
                      headers=AUTH, timeout=10)
    job = r.json()["job"]
    wait_job(d, job["id"], states=("running",))
    deadline = time.time() + 60
    while requests.get(d.url("/v1/admin/jobs/%d" % job["id"]), headers=AUTH,
                       timeout=10).json()["job"]["step"] < 1:
        assert time.time() < deadline
        time.sleep(0.05)
    r = requests.delete(d.url("/v1/admin/jobs/%d" % job["id"]), headers=AUTH, timeout=10)
    assert r.status_code == 202, r.text
    j = wait_job(d, job["id"])
    assert j["state"] == "cancelled" and j["result_model_id"] is None
    assert 1 <= j["step"] < 100000
    assert os.path.getsize(os.path.join(d.data_dir, "jobs", str(job["id"]), "checkpoint.ckpt")) > 0
    r = requests.delete(d.url("/v1/admin/jobs/%d" % job["id"]), headers=AUTH, timeout=10)
    assert r.status_code == 409
    assert requests.get(d.url("/v1/admin/jobs/999"), headers=AUTH, timeout=10).status_code == 404
    # the slot is free again
    r = requests.post(d.url("/v1/admin/finetune"), json={"steps": 1, "batch_size": 2, "tracks": "all"},
                      headers=AUTH, timeout=10)
    assert r.status_code == 202
    assert wait_job(d, r.json()["job"]["id"])["state"] == "succeeded"


def test_restart_during_job_marks_it_failed(make_daemon, songs, tmp_path):
    data = tmp_path / "restart"
    d = admin_daemon(make_daemon, data_dir=data)
    ingest(d, songs)
    r = requests.post(d.url("/v1/admin/finetune"),
                      json={"steps": 100000, "batch_size": 2, "tracks": "all"}, headers=AUTH, timeout=10)
    jid = r.json()["job"]["id"]
    wait_job(d, jid, states=("running",))
    d.proc.kill()  # a crash: no chance to record anything
    d.proc.wait()
    d.proc = None
    d.log.close()
    d2 = admin_daemon(make_daemon, data_dir=data)
    j = requests.get(d2.url("/v1/admin/jobs/%d" % jid), headers=AUTH, timeout=10).json()["job"]
    assert j["state"] == "failed" and "restart" in j["error"]
    # SIGTERM during a job: clean exit 0, the job recorded as failed (not running)
    r = requests.post(d2.url("/v1/admin/finetune"),
                      json={"steps": 100000, "batch_size": 2, "tracks": "all"}, headers=AUTH, timeout=10)
    jid2 = r.json()["job"]["id"]
    wait_job(d2, jid2, states=("running",))
    assert d2.stop() == 0
    d3 = admin_daemon(make_daemon, data_dir=data)
    j = requests.get(d3.url("/v1/admin/jobs/%d" % jid2), headers=AUTH, timeout=10).json()["job"]
    assert j["state"] == "failed" and "shutdown" in j["error"], j
