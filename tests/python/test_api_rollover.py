"""Model roll-over through the real daemon (issue 12):
- a relative data directory (the default is ./data): a fine-tuning job's model can be activated,
  fine-tuned again, and stays active across a restart;
- an in-flight upload finishes on the model it started with: its first bytes arrive, a new model
  is activated, then the rest of the body arrives; the answer still names the old model."""
import json
import os
import socket
import struct
import time

import requests

from api_helpers import TINY, Daemon, make_audio

TOKEN = "r0llover-admin-token-Zq3kP9vX2mW8nR4tY6uB1cD5"
AUTH = {"Authorization": "Bearer " + TOKEN}


def admin(data_dir, *args, cwd=None):
    return Daemon(data_dir, "--finetune-min-tracks", "4", *args, env={"CLMRD_ADMIN_TOKEN": TOKEN},
                  cwd=cwd).start()


def wait_for(pred, what, timeout=120):
    deadline = time.time() + timeout
    while True:
        v = pred()
        if v:
            return v
        assert time.time() < deadline, what
        time.sleep(0.05)


def job_done(d, jid):
    j = requests.get(d.url("/v1/admin/jobs/%d" % jid), headers=AUTH, timeout=10).json()["job"]
    return j if j["state"] in ("succeeded", "failed", "cancelled") else None


def search_switched(d, model_id):
    m = requests.get(d.url("/v1/models"), timeout=10).json()
    return m if m["search"] == model_id and m["reembedding"]["state"] == "complete" else None


def finetune(d):
    r = requests.post(d.url("/v1/admin/finetune"), json={"steps": 2, "batch_size": 2, "tracks": "all"},
                      headers=AUTH, timeout=10)
    assert r.status_code == 202, r.text
    j = wait_for(lambda: job_done(d, r.json()["job"]["id"]), "job did not finish")
    assert j["state"] == "succeeded", j
    return j["result_model_id"]


def test_relative_data_dir_job_activate_restart(tmp_path):
    songs = [make_audio(tmp_path / ("s%d.wav" % i), 2.0, 170 + 90 * i, rate=22050) for i in range(4)]
    work = tmp_path / "work"
    work.mkdir()
    d = admin("./data", cwd=str(work))
    try:
        for p in songs:
            with open(p, "rb") as f:
                r = requests.post(d.url("/v1/tracks"), data=f.read(), headers=AUTH, timeout=60)
            assert r.status_code == 201, r.text
        new_id = finetune(d)
        r = requests.post(d.url("/v1/admin/models/%s/activate" % new_id), headers=AUTH, timeout=60)
        assert r.status_code == 200, r.text  # was 503 model_io: "./data/./data/models/..."
        wait_for(lambda: search_switched(d, new_id), "search did not switch")
        # fine-tuning the fine-tuned model (its file is found through the data directory)
        child = finetune(d)
        models = requests.get(d.url("/v1/models"), timeout=10).json()["models"]
        assert [m for m in models if m["id"] == child][0]["parent_id"] == new_id
        assert d.stop() == 0
        assert os.path.exists(work / "data" / "models" / "job-1.safetensors")
        d = admin("./data", cwd=str(work))
        m = requests.get(d.url("/v1/models"), timeout=10).json()
        assert m["active"] == new_id and m["search"] == new_id, m  # the activation survived
    finally:
        assert d.stop() == 0, d.logs()


def variant_of_tiny(path):
    """The tiny model with another description: a second valid model (another content id)."""
    with open(TINY, "rb") as f:
        b = f.read()
    n = struct.unpack("<Q", b[:8])[0]
    hdr = json.loads(b[8:8 + n])
    hdr["__metadata__"]["description"] = "a second tiny model for the roll-over tests"
    h = json.dumps(hdr, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b[8 + n:])
    return str(path)


def inflight(d):
    for line in requests.get(d.url("/metrics"), timeout=10).text.splitlines():
        if line.startswith("clmrd_inflight_requests "):
            return float(line.split()[1])
    return 0


def test_inflight_upload_keeps_its_model(tmp_path):
    variant = variant_of_tiny(tmp_path / "variant.safetensors")
    data = tmp_path / "data"
    # register the variant (it becomes "retired" when the tiny model starts next)
    d = Daemon(data, "--model", variant, env={"CLMRD_ADMIN_TOKEN": TOKEN}).start()
    variant_id = requests.get(d.url("/v1/models"), timeout=10).json()["active"]
    assert d.stop() == 0
    d = Daemon(data, "--workers", "1", env={"CLMRD_ADMIN_TOKEN": TOKEN}).start()
    try:
        base_id = requests.get(d.url("/v1/models"), timeout=10).json()["active"]
        assert base_id != variant_id
        with open(make_audio(tmp_path / "q.wav", 2.0, 440, rate=22050), "rb") as f:
            body = f.read()
        s = socket.create_connection(("127.0.0.1", d.port), timeout=60)
        s.sendall(("POST /v1/tag?per_chunk=true HTTP/1.1\r\nHost: x\r\nContent-Type: audio/wav\r\n"
                   "Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)).encode() + body[:1000])
        # the request has arrived (it counts as in flight besides this /metrics scrape)
        wait_for(lambda: inflight(d) >= 2, "the partial upload never arrived", timeout=30)
        r = requests.post(d.url("/v1/admin/models/%s/rollback-to" % variant_id), headers=AUTH, timeout=60)
        assert r.status_code == 200 and r.json()["active"] == variant_id, r.text
        s.sendall(body[1000:])
        resp = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            resp += chunk
        s.close()
        head, _, payload = resp.partition(b"\r\n\r\n")
        assert b" 200 " in head.split(b"\r\n")[0], resp[:300]
        assert json.loads(payload)["model"] == base_id  # was the newer model
        # a request that arrives after the activation uses the new model
        r = requests.post(d.url("/v1/tag?per_chunk=true"), data=body, timeout=60)
        assert r.status_code == 200 and r.json()["model"] == variant_id
    finally:
        assert d.stop() == 0, d.logs()
